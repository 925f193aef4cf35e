#!/usr/bin/env bash
# launch_tpu.sh: TPU-VM pod lifecycle and sweeps for warmth-sim, through gcloud.
#
# A full pod sweep from zero (every worker of the pod runs the same command; the program calls
# jax.distributed.initialize(), which finds the pod topology by itself):
#
#   export TPU_NAME=warmth-v4 TPU_ZONE=us-central2-b TPU_TYPE=v4-32 \
#          TPU_PROJECT=my-project TPU_BUCKET=gs://my-bucket
#   ./launch_tpu.sh create                # the pod; for a queued resource export QUEUED=1 (so
#                                         # status and delete match), SPOT=1 for spot capacity
#   ./launch_tpu.sh status                # wait for state READY (ACTIVE for a queued resource)
#   ./launch_tpu.sh setup                 # ship `git archive HEAD`, make a venv, pip install -e '.[tpu]'
#   ./launch_tpu.sh sweep --run=sweep1    # experiments/configs/sweep.py on every worker, writing
#                                         # results and checkpoints to the bucket directly
#   ./launch_tpu.sh logs --run=sweep1     # follow worker 0 (Ctrl-C stops following, not the run)
#   gcloud storage ls gs://my-bucket/warmth-sim/sweep1/   # metrics.csv, plots/, report.html
#   ./launch_tpu.sh delete                # stop paying
#
# Config overrides go after --:  ./launch_tpu.sh run --config=experiments/configs/demo.py \
#   --workdir=demo1 -- --config.a.b=V. Rerunning with the same --workdir resumes that run.
# Add --dry-run (or DRY_RUN=1) to any of these to print the commands instead of running them.
# `./launch_tpu.sh help` lists every subcommand, flag and environment variable.
set -euo pipefail

readonly PROG=launch_tpu.sh
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly REPO_ROOT
readonly REMOTE_DIR=warmth-sim          # on every worker, relative to the home directory
readonly DEFAULT_VERSION=tpu-ubuntu2204-base
readonly DEFAULT_SWEEP_CONFIG=experiments/configs/sweep.py
readonly DRY_PREFIX='[dry-run]'
# pgrep/pkill -f pattern for the experiment, quoted for the remote shell: anchored at the start of
# the command line, so neither the remote shell running pgrep (whose command line holds the
# pattern and the launch command) nor anything outside ~/warmth-sim/.venv is ever a hit.
readonly EXPERIMENT_PATTERN="\"^\$HOME/$REMOTE_DIR/[.]venv/bin/python[0-9.]* -m experiments[.]main\""

usage() {
  cat <<EOF
Usage: $PROG SUBCOMMAND [flags] [-- extra args for experiments.main]

Subcommands:
  create   create the TPU VM (gcloud compute tpus tpu-vm create), or with --queued a queued
           resource (gcloud compute tpus queued-resources create); --spot asks for spot capacity
  setup    ship the code (git archive of HEAD: tracked, committed files only) to all workers,
           unpack it into ~/$REMOTE_DIR, make a venv and pip install -e '.[tpu]'
  run      start python -m experiments.main on all workers under nohup, with
           --workdir=gs://BUCKET/WORKDIR --config.runtime.distributed=True [extra args]
           (results and checkpoints are written to the bucket directly); each worker logs to
           ~/$REMOTE_DIR/logs/RUN.log
  sweep    run with --config defaulting to $DEFAULT_SWEEP_CONFIG
  logs     follow a worker's log (worker 0 unless --worker=N; the latest run unless --run=RUN)
  status   describe the TPU VM (or the queued resource with --queued)
  stop     stop the experiment processes on all workers
  delete   delete the TPU VM (or the queued resource and its node with --queued), --quiet
  help     show this message

Flags (a flag wins over its environment variable):
  --name=NAME        TPU_NAME      TPU VM (and queued resource) name             [all but help]
  --zone=ZONE        TPU_ZONE      e.g. us-central2-b                            [all but help]
  --type=TYPE        TPU_TYPE      accelerator type, e.g. v4-32, v5litepod-16    [create]
  --project=PROJECT  TPU_PROJECT   Google Cloud project (default: gcloud's configured project)
  --version=VERSION  TPU_VERSION   TPU runtime software version (default: $DEFAULT_VERSION;
                                   v5e wants v2-alpha-tpuv5-lite, v5p v2-alpha-tpuv5,
                                   v6e v2-alpha-tpuv6e)
  --queued           QUEUED=1      use a queued resource (create, status, delete)
  --spot             SPOT=1        spot capacity (create)
  --bucket=BUCKET    TPU_BUCKET    gs:// bucket holding the workdirs, written to
                                   directly by every worker                      [run, sweep]
  --config=PATH[:ARG]              experiment config                             [run]
  --workdir=PATH                   workdir under the bucket, or a full gs:// URL
                                   (default: $REMOTE_DIR/RUN; reusing one resumes the run)
  --run=RUN          TPU_RUN       run name, names the log file (default: the workdir's last
                                   component, else CONFIG-YYYYmmdd-HHMMSS)
  --worker=N                       worker whose log to follow (default: 0)   [logs]
  --env=KEY=VALUE                  extra environment for the experiment, repeatable [run, sweep]
  --python=PYTHON    TPU_PYTHON    interpreter for the workers' venv (default: python3.11;
                                   installed with apt when missing)             [setup]
  --dry-run          DRY_RUN=1     print the commands ($DRY_PREFIX ...), run nothing
  -h, --help                       show this message

Everything after -- is passed to experiments.main unchanged (e.g. --config.train.steps=100).
The experiment runs with JAX_PLATFORMS=tpu and PYTHONUNBUFFERED=1.
EOF
}

die() {
  echo "$PROG: $*" >&2
  exit 1
}

usage_error() {
  echo "$PROG: $*" >&2
  echo >&2
  usage >&2
  exit 2
}

truthy() {
  case "${1,,}" in
    1 | true | yes | on) return 0 ;;
    *) return 1 ;;
  esac
}

# Shell-quotes its arguments into one line that bash reads back as the same words: plain words
# stay as they are, anything else goes in single quotes (' itself becomes '\''), like Python's
# shlex.quote (easier to read than printf %q, and POSIX); words holding a line break use printf %q.
quote() {
  local out='' arg q="'" esc="'\\''"
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      out+="${out:+ }$arg"
    elif [[ $arg == *[$'\n\r']* ]]; then
      out+="${out:+ }$(printf '%q' "$arg")"  # $'...\n...' keeps one command on one line
    else
      out+="${out:+ }'${arg//$q/$esc}'"
    fi
  done
  printf '%s' "$out"
}

# Runs a command, or under --dry-run prints it (quoted, one line) and runs nothing.
run_cmd() {
  if [[ $dry_run == 1 ]]; then
    printf '%s %s\n' "$DRY_PREFIX" "$(quote "$@")"
  else
    "$@"
  fi
}

gcloud_tpu() {
  local args=(gcloud compute tpus "$@")
  [[ -n $project ]] && args+=("--project=$project")
  run_cmd "${args[@]}"
}

# Fails with one message naming every missing setting, before anything runs.
require() {
  local missing=() spec flag var
  for spec in "$@"; do
    flag=${spec%%:*}
    var=${spec#*:}
    if [[ -z ${!var} ]]; then
      case "$flag" in
        name) missing+=("--name (or TPU_NAME)") ;;
        zone) missing+=("--zone (or TPU_ZONE)") ;;
        type) missing+=("--type (or TPU_TYPE)") ;;
        bucket) missing+=("--bucket (or TPU_BUCKET)") ;;
        config) missing+=("--config") ;;
        *) missing+=("--$flag") ;;
      esac
    fi
  done
  ((${#missing[@]} == 0)) && return 0
  if ((${#missing[@]} == 1)); then
    die "${missing[0]} is required for '$command'"
  fi
  local list=${missing[0]} i
  for ((i = 1; i < ${#missing[@]} - 1; i++)); do
    list+=", ${missing[i]}"
  done
  die "$list and ${missing[-1]} are required for '$command'"
}

need_gcloud() {
  [[ $dry_run == 1 ]] && return 0
  command -v gcloud >/dev/null 2>&1 ||
    die "gcloud not found on PATH; install the Google Cloud SDK (https://cloud.google.com/sdk/docs/install)"
}

# ---------------------------------------------------------------------------------------------
# Subcommands

cmd_create() {
  require name:name zone:zone type:type
  need_gcloud
  local args
  if [[ $queued == 1 ]]; then
    args=(queued-resources create "$name" "--node-id=$name" "--zone=$zone"
      "--accelerator-type=$type" "--runtime-version=$version")
  else
    args=(tpu-vm create "$name" "--zone=$zone" "--accelerator-type=$type" "--version=$version")
  fi
  [[ $spot == 1 ]] && args+=(--spot)
  gcloud_tpu "${args[@]}"
}

cmd_setup() {
  require name:name zone:zone
  git -C "$REPO_ROOT" rev-parse --git-dir >/dev/null 2>&1 ||
    die "'setup' ships 'git archive HEAD', but $REPO_ROOT is not a git checkout"
  local sha
  sha=$(git -C "$REPO_ROOT" rev-parse --verify HEAD 2>/dev/null) ||
    die "'setup' ships 'git archive HEAD', but the repository has no commit yet"
  need_gcloud
  if [[ -n $(git -C "$REPO_ROOT" status --porcelain --untracked-files=no) ]]; then
    echo "$PROG: warning: uncommitted changes stay behind; shipping commit $sha only" >&2
  fi
  echo "$PROG: shipping commit $sha" >&2

  local tmp tarball
  tmp=$(mktemp -d)
  # shellcheck disable=SC2064  # expand $tmp now: it is local to this function
  trap "rm -rf -- $(printf '%q' "$tmp")" EXIT
  tarball="$tmp/$REMOTE_DIR.tar.gz"
  run_cmd git -C "$REPO_ROOT" archive --format=tar.gz -o "$tarball" "$sha"

  local py_install=''
  if [[ $python =~ ^python3\.[0-9]+$ ]]; then
    py_install="command -v $python >/dev/null 2>&1 || { sudo -n apt-get -o DPkg::Lock::Timeout=600 update -q && sudo -n apt-get -o DPkg::Lock::Timeout=600 install -y -q $python $python-venv; }"
  fi
  local remote=(
    "set -euo pipefail"
    "mkdir -p $REMOTE_DIR"
    # Replace the code, keep the venv (fast re-setup) and the logs.
    "find $REMOTE_DIR -mindepth 1 -maxdepth 1 ! -name .venv ! -name logs -exec rm -rf {} +"
    "tar -xzf $REMOTE_DIR.tar.gz -C $REMOTE_DIR"
    "rm -f $REMOTE_DIR.tar.gz"
    "cd $REMOTE_DIR"
    "mkdir -p logs"
  )
  [[ -n $py_install ]] && remote+=("$py_install")
  remote+=(
    "{ [ -x .venv/bin/python ] || $(quote "$python") -m venv .venv; }"
    ".venv/bin/pip install -q -U pip"
    ".venv/bin/pip install -q -e \".[tpu]\""
    "echo \"worker \$(hostname): ready at $sha\""
  )
  local joined
  joined=$(printf '%s; ' "${remote[@]}")
  gcloud_tpu tpu-vm scp --recurse --worker=all "--zone=$zone" "$tarball" "$name:$REMOTE_DIR.tar.gz"
  gcloud_tpu tpu-vm ssh "$name" --worker=all "--zone=$zone" "--command=${joined%; }"
}

# Prints a name safe for a file: letters, digits, '.', '_' and '-'.
sanitize() {
  local s=${1//[^A-Za-z0-9._-]/-}
  s=${s#[.-]}
  printf '%s' "${s:-run}"
}

cmd_run() {
  if [[ $workdir == gs://* ]]; then
    require name:name zone:zone config:config
  else
    require name:name zone:zone config:config bucket:bucket
  fi
  [[ -z $run_name && -n $workdir ]] && run_name=$(sanitize "$(basename "$workdir")")
  if [[ -z $run_name ]]; then
    local stem=${config%%:*}
    stem=$(basename "$stem" .py)
    [[ $config == *:* ]] && stem+="-${config#*:}"
    run_name=$(sanitize "$stem")-$(date -u +%Y%m%d-%H%M%S)
  fi
  [[ $run_name =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] ||
    die "--run must be letters, digits, '.', '_' or '-' (it names the log file), got '$run_name'"
  # experiments.main writes to a gs:// workdir itself, so every worker gets gs://BUCKET/REL.
  local workdir_bucket rel
  if [[ $workdir == gs://* ]]; then
    rel=${workdir#gs://}
    rel=${rel%/}
    workdir_bucket=${rel%%/*}
    [[ $rel == */* ]] && rel=${rel#*/} || rel=''
  else
    workdir_bucket=$bucket
    rel=${workdir:-$REMOTE_DIR/$run_name}
    rel=${rel#/}
    rel=${rel%/}
  fi
  [[ $workdir_bucket =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] ||
    die "the bucket must be a bucket name (letters, digits, '.', '_', '-'), got '$workdir_bucket'"
  local workdir_url="gs://$workdir_bucket${rel:+/$rel}"
  local kv
  for kv in "${env_vars[@]}"; do
    [[ $kv =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env wants KEY=VALUE, got '$kv'"
  done
  need_gcloud

  local cfg_file=${config%%:*}
  if ! git -C "$REPO_ROOT" cat-file -e "HEAD:$cfg_file" 2>/dev/null; then
    echo "$PROG: warning: $cfg_file is not in the committed HEAD; the workers only have what 'setup' shipped" >&2
  fi

  local log="logs/$run_name.log" pid="logs/$run_name.pid"
  local experiment
  # The interpreter goes by its full path: EXPERIMENT_PATTERN (stop) finds the process by it.
  experiment="$(quote env JAX_PLATFORMS=tpu PYTHONUNBUFFERED=1 "${env_vars[@]}")"
  experiment+=" \"\$HOME\"/$REMOTE_DIR/.venv/bin/python "
  experiment+="$(quote -m experiments.main "--config=$config" "--workdir=$workdir_url" \
    --config.runtime.distributed=True "${extra_args[@]}")"
  local remote=(
    "cd $REMOTE_DIR"
    "mkdir -p logs"
    "if pgrep -f $EXPERIMENT_PATTERN >/dev/null; then echo \"worker \$(hostname): an experiment is already running; run $PROG stop first\" >&2; exit 1; fi"
    "nohup $experiment >> $(quote "$log") 2>&1 < /dev/null & echo \$! > $(quote "$pid")"
    "ln -sfn $(quote "$run_name.log") logs/latest.log"
    "echo \"worker \$(hostname): started $run_name (pid \$(cat $(quote "$pid"))), log ~/$REMOTE_DIR/$log\""
  )
  local joined
  joined=$(printf '%s; ' "${remote[@]}")
  echo "$PROG: run $run_name, workdir $workdir_url" >&2
  gcloud_tpu tpu-vm ssh "$name" --worker=all "--zone=$zone" "--command=${joined%; }"
  echo "$PROG: follow it with: $PROG logs --run=$run_name" >&2
}

cmd_sweep() {
  [[ -n $config ]] || config=$DEFAULT_SWEEP_CONFIG
  cmd_run
}

cmd_logs() {
  require name:name zone:zone
  [[ $worker =~ ^[0-9]+$ ]] || die "--worker must be a worker number (0, 1, ...), got '$worker'"
  if [[ -n $run_name && ! $run_name =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]]; then
    die "--run must be letters, digits, '.', '_' or '-', got '$run_name'"
  fi
  need_gcloud
  local log="$REMOTE_DIR/logs/${run_name:-latest}.log"
  gcloud_tpu tpu-vm ssh "$name" "--worker=$worker" "--zone=$zone" \
    "--command=tail -n 200 -F $(quote "$log")"
}

cmd_status() {
  require name:name zone:zone
  need_gcloud
  if [[ $queued == 1 ]]; then
    gcloud_tpu queued-resources describe "$name" "--zone=$zone"
  else
    gcloud_tpu tpu-vm describe "$name" "--zone=$zone"
  fi
}

cmd_stop() {
  require name:name zone:zone
  need_gcloud
  local pattern=$EXPERIMENT_PATTERN
  # TERM first (lets the run finish a checkpoint write), KILL what is left after 30 s, then
  # free the TPU lock file that a killed process leaves behind.
  local remote=(
    "pkill -TERM -f $pattern || true"
    "for _ in \$(seq 30); do pgrep -f $pattern >/dev/null || break; sleep 1; done"
    "pkill -KILL -f $pattern || true"
    "sleep 1"
    "if ! pgrep -f $pattern >/dev/null; then sudo -n rm -f /tmp/libtpu_lockfile 2>/dev/null || rm -f /tmp/libtpu_lockfile 2>/dev/null || true; fi"
    "echo \"worker \$(hostname): stopped\""
  )
  local joined
  joined=$(printf '%s; ' "${remote[@]}")
  gcloud_tpu tpu-vm ssh "$name" --worker=all "--zone=$zone" "--command=${joined%; }"
}

cmd_delete() {
  require name:name zone:zone
  need_gcloud
  if [[ $queued == 1 ]]; then
    # --force also deletes the node the queued resource provisioned.
    gcloud_tpu queued-resources delete "$name" "--zone=$zone" --force --quiet
  else
    gcloud_tpu tpu-vm delete "$name" "--zone=$zone" --quiet
  fi
}

# ---------------------------------------------------------------------------------------------
# Arguments

name=${TPU_NAME:-}
zone=${TPU_ZONE:-}
type=${TPU_TYPE:-}
project=${TPU_PROJECT:-}
bucket=${TPU_BUCKET:-}
version=${TPU_VERSION:-$DEFAULT_VERSION}
python=${TPU_PYTHON:-python3.11}
run_name=${TPU_RUN:-}
config=''
workdir=''
worker=0
queued=0
spot=0
dry_run=0
truthy "${QUEUED:-0}" && queued=1
truthy "${SPOT:-0}" && spot=1
truthy "${DRY_RUN:-0}" && dry_run=1
env_vars=()
extra_args=()
command=''

# Value of a flag given as --flag=value or --flag value; `shift_by` says how many words it used.
flag_value() {
  local flag=$1
  shift
  if [[ $1 == *=* ]]; then
    value=${1#*=}
    shift_by=1
  elif (($# >= 2)); then
    value=$2
    shift_by=2
  else
    usage_error "$flag needs a value"
  fi
}

while (($#)); do
  value=''
  shift_by=1
  case "$1" in
    --) shift; extra_args=("$@"); break ;;
    -h | --help | help) command=help ;;
    --name | --name=*) flag_value --name "$@"; name=$value ;;
    --zone | --zone=*) flag_value --zone "$@"; zone=$value ;;
    --type | --type=*) flag_value --type "$@"; type=$value ;;
    --project | --project=*) flag_value --project "$@"; project=$value ;;
    --bucket | --bucket=*) flag_value --bucket "$@"; bucket=$value ;;
    --version | --version=*) flag_value --version "$@"; version=$value ;;
    --config | --config=*) flag_value --config "$@"; config=$value ;;
    --workdir | --workdir=*) flag_value --workdir "$@"; workdir=$value ;;
    --run | --run=*) flag_value --run "$@"; run_name=$value ;;
    --worker | --worker=*) flag_value --worker "$@"; worker=$value ;;
    --env | --env=*) flag_value --env "$@"; env_vars+=("$value") ;;
    --python | --python=*) flag_value --python "$@"; python=$value ;;
    --queued) queued=1 ;;
    --spot) spot=1 ;;
    --dry-run) dry_run=1 ;;
    -*) usage_error "unknown flag '$1'" ;;
    *)
      [[ $command == help ]] && { shift; continue; }
      [[ -z $command ]] || usage_error "unexpected argument '$1' (extra args for experiments.main go after --)"
      command=$1
      ;;
  esac
  shift "$shift_by"
done

bucket=${bucket#gs://}
bucket=${bucket%/}

case "$command" in
  help) usage; exit 0 ;;
  '') usage_error "no subcommand given" ;;
  create | setup | run | sweep | logs | status | stop | delete) ;;
  *) usage_error "unknown subcommand '$command'" ;;
esac

if ((${#extra_args[@]})) && [[ $command != run && $command != sweep ]]; then
  usage_error "extra args after -- only go with 'run' or 'sweep'"
fi

"cmd_$command"
