"""launch_tpu.sh against a fake gcloud: the calls each subcommand issues, its errors, --dry-run.

The fake gcloud logs its argv (one JSON list per line). With FAKE_POD_HOME set it also plays a
one-worker pod: scp copies into that directory and ssh runs the command there with bash, so the
remote scripts (unpack, venv, nohup launch, tail, stop) are exercised too. Nothing reaches Google.
"""

import json
import os
from pathlib import Path
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest
import shell_checks
import tiny_runs

REPO = Path(tiny_runs.ROOT)
SCRIPT = REPO / "launch_tpu.sh"
# Settings a developer may have exported; every test starts without them.
SETTINGS_ENV = (
  "TPU_NAME",
  "TPU_ZONE",
  "TPU_TYPE",
  "TPU_PROJECT",
  "TPU_BUCKET",
  "TPU_VERSION",
  "TPU_RUN",
  "TPU_PYTHON",
  "QUEUED",
  "SPOT",
  "DRY_RUN",
)
POD = {
  "TPU_NAME": "pod-a",
  "TPU_ZONE": "us-central2-b",
  "TPU_TYPE": "v4-32",
  "TPU_PROJECT": "proj-x",
  "TPU_BUCKET": "gs://bkt",
}
SUBCOMMANDS = ("create", "setup", "run", "sweep", "logs", "status", "stop", "delete")
# Traces of the gcsfuse mount the script used before experiments.main wrote to gs:// itself.
MOUNT_TRACES = ("gcsfuse", "mountpoint", "fusermount", "~/gcs", "$HOME/gcs", '"$HOME"/gcs')

FAKE_GCLOUD = r"""#!{python}
import json, os, shutil, subprocess, sys
args = sys.argv[1:]
with open(os.environ["FAKE_GCLOUD_LOG"], "a") as f:
    f.write(json.dumps(args) + "\n")
if os.environ.get("FAKE_GCLOUD_RC"):
    sys.exit(int(os.environ["FAKE_GCLOUD_RC"]))
home = os.environ.get("FAKE_POD_HOME")
if home and args[:3] == ["compute", "tpus", "tpu-vm"] and args[3] == "scp":
    src, dest = [a for a in args[4:] if not a.startswith("--")]
    shutil.copy(src, os.path.join(home, dest.split(":", 1)[1]))
elif home and args[:3] == ["compute", "tpus", "tpu-vm"] and args[3] == "ssh":
    command = [a for a in args if a.startswith("--command=")][0][len("--command="):]
    env = dict(os.environ, HOME=home, PATH=os.environ["FAKE_POD_PATH"] + ":" + os.environ["PATH"])
    try:
        rc = subprocess.run(["bash", "-c", command], cwd=home, env=env,
                            timeout=float(os.environ.get("FAKE_SSH_TIMEOUT", "60"))).returncode
    except subprocess.TimeoutExpired:  # `tail -F` until the user presses Ctrl-C
        rc = 0
    sys.exit(rc)
"""


class FakeGcloud:
  def __init__(self, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(FAKE_GCLOUD.format(python=sys.executable))
    gcloud.chmod(0o755)
    self.log = tmp_path / "gcloud.log"
    self.env = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
    self.env.update(
      PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", FAKE_GCLOUD_LOG=str(self.log)
    )

  def run(self, *args, script=SCRIPT, timeout=60, **env):
    return subprocess.run(
      ["bash", str(script), *args],
      env={**self.env, **env},
      capture_output=True,
      text=True,
      timeout=timeout,
    )

  def calls(self):
    if not self.log.exists():
      return []
    return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def gcloud(tmp_path):
  return FakeGcloud(tmp_path)


def ok(result):
  assert result.returncode == 0, f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"
  return result


def remote_command(call):
  """The --command=... of an ssh call, split into shell words."""
  [command] = [a[len("--command=") :] for a in call if a.startswith("--command=")]
  return command, shlex.split(command)


def assert_no_mount(*texts):
  for text in texts:
    for trace in MOUNT_TRACES:
      assert trace not in text, (trace, text)


# --------------------------------------------------------------------------------------------
# Static checks


def test_shellcheck_clean():
  shell_checks.assert_clean(SCRIPT)


def test_script_is_executable_and_parses():
  assert os.access(SCRIPT, os.X_OK)
  subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
  staged = subprocess.run(
    ["git", "-C", str(REPO), "ls-files", "-s", "launch_tpu.sh"], capture_output=True, text=True
  ).stdout
  if staged:
    assert staged.startswith("100755"), staged


@pytest.mark.parametrize("flag", ["help", "--help", "-h"])
def test_help_lists_subcommands_and_settings(gcloud, flag):
  out = ok(gcloud.run(flag)).stdout
  for word in (
    *SUBCOMMANDS,
    "TPU_NAME",
    "TPU_ZONE",
    "TPU_TYPE",
    "TPU_PROJECT",
    "TPU_BUCKET",
    "TPU_VERSION",
    "QUEUED",
    "DRY_RUN",
    "--dry-run",
    "--spot",
    "--config",
    "--workdir",
  ):
    assert word in out
  assert gcloud.calls() == []


# --------------------------------------------------------------------------------------------
# Each subcommand against the fake gcloud


def test_create_tpu_vm(gcloud):
  ok(gcloud.run("create", **POD))
  assert gcloud.calls() == [
    [
      "compute",
      "tpus",
      "tpu-vm",
      "create",
      "pod-a",
      "--zone=us-central2-b",
      "--accelerator-type=v4-32",
      "--version=tpu-ubuntu2204-base",
      "--project=proj-x",
    ]
  ]


def test_create_flags_beat_env_in_both_forms(gcloud):
  ok(
    gcloud.run(
      "create",
      "--name",
      "pod-b",
      "--zone=europe-west4-a",
      "--type",
      "v5litepod-16",
      "--version=v2-alpha-tpuv5-lite",
      "--spot",
      **POD,
    )
  )
  [call] = gcloud.calls()
  assert call[:5] == ["compute", "tpus", "tpu-vm", "create", "pod-b"]
  for arg in (
    "--zone=europe-west4-a",
    "--accelerator-type=v5litepod-16",
    "--version=v2-alpha-tpuv5-lite",
    "--spot",
    "--project=proj-x",
  ):
    assert arg in call


def test_create_without_project_leaves_gcloud_default(gcloud):
  ok(gcloud.run("create", **{**POD, "TPU_PROJECT": ""}))
  [call] = gcloud.calls()
  assert not any(a.startswith("--project") for a in call)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_create_queued_resource(gcloud, how):
  if how == "flag":
    ok(gcloud.run("create", "--queued", "--spot", **POD))
  else:
    ok(gcloud.run("create", **POD, QUEUED="1", SPOT="1", TPU_VERSION="tpu-vm-v4-base"))
  [call] = gcloud.calls()
  assert call[:5] == ["compute", "tpus", "queued-resources", "create", "pod-a"]
  version = "tpu-ubuntu2204-base" if how == "flag" else "tpu-vm-v4-base"
  for arg in (
    "--node-id=pod-a",
    "--zone=us-central2-b",
    "--accelerator-type=v4-32",
    f"--runtime-version={version}",
    "--spot",
    "--project=proj-x",
  ):
    assert arg in call


def test_run_launches_experiment_on_all_workers(gcloud):
  ok(
    gcloud.run(
      "run",
      "--config=experiments/configs/demo.py:tiny",
      "--workdir=exp/r1",
      "--env",
      "XLA_FLAGS=--a=1 --b",
      "--",
      "--config.train.steps=5",
      "--config.note=two words",
      **POD,
    )
  )
  [call] = gcloud.calls()
  assert call[:5] == ["compute", "tpus", "tpu-vm", "ssh", "pod-a"]
  assert "--worker=all" in call and "--zone=us-central2-b" in call and "--project=proj-x" in call
  command, words = remote_command(call)
  assert "nohup" in words and "experiments.main" in words
  # experiments.main writes to the bucket itself: the workdir is the gs:// URL, nothing is mounted.
  for word in (
    "--config=experiments/configs/demo.py:tiny",
    "--workdir=gs://bkt/exp/r1",
    "--config.runtime.distributed=True",
    "--config.train.steps=5",
    "--config.note=two words",
    "JAX_PLATFORMS=tpu",
    "XLA_FLAGS=--a=1 --b",
    "logs/r1.log",
  ):
    assert word in words, (word, command)
  # The overrides come after the launch flags, in the order given.
  assert (
    words.index("--config.runtime.distributed=True")
    < words.index("--config.train.steps=5")
    < words.index("--config.note=two words")
  )
  assert [w for w in words if w.startswith("--workdir")] == ["--workdir=gs://bkt/exp/r1"]
  assert_no_mount(command)
  stderr = ok(
    gcloud.run("run", "--config=experiments/configs/demo.py", "--workdir=/exp/r1/", **POD)
  ).stderr
  assert "workdir gs://bkt/exp/r1\n" in stderr
  assert_no_mount(stderr)
  assert "--workdir=gs://bkt/exp/r1" in remote_command(gcloud.calls()[-1])[1]


def test_run_default_names_and_full_gs_workdir(gcloud):
  ok(gcloud.run("run", "--config=experiments/configs/demo.py", **POD))
  ok(
    gcloud.run(
      "run",
      "--config=experiments/configs/demo.py",
      "--workdir=gs://other/x/run7",
      **{**POD, "TPU_BUCKET": ""},
    )
  )
  first, second = (remote_command(c)[1] for c in gcloud.calls())
  [workdir] = [w for w in first if w.startswith("--workdir=")]
  assert workdir.startswith("--workdir=gs://bkt/warmth-sim/demo-")
  run_name = workdir.rsplit("/", 1)[1]
  assert f"logs/{run_name}.log" in first
  # A full gs:// URL is passed through as it is, whatever --bucket says.
  assert "--workdir=gs://other/x/run7" in second and "logs/run7.log" in second
  assert_no_mount(*(remote_command(c)[0] for c in gcloud.calls()))


def test_sweep_is_run_with_the_sweep_config(gcloud):
  ok(gcloud.run("sweep", "--run=s1", **POD))
  ok(gcloud.run("sweep", "--config=experiments/configs/sweep.py:small", "--run=s2", **POD))
  first, second = (remote_command(c)[1] for c in gcloud.calls())
  assert "--config=experiments/configs/sweep.py" in first
  assert "--workdir=gs://bkt/warmth-sim/s1" in first
  assert "--config.runtime.distributed=True" in first
  assert "--config=experiments/configs/sweep.py:small" in second


@pytest.mark.parametrize(
  "args, worker, log",
  [
    ((), "0", "warmth-sim/logs/latest.log"),
    (("--worker=3", "--run=r1"), "3", "warmth-sim/logs/r1.log"),
  ],
)
def test_logs_follows_one_worker(gcloud, args, worker, log):
  ok(gcloud.run("logs", *args, **POD))
  [call] = gcloud.calls()
  assert call[:5] == ["compute", "tpus", "tpu-vm", "ssh", "pod-a"]
  assert f"--worker={worker}" in call and "--worker=all" not in call
  _, words = remote_command(call)
  assert words[0] == "tail" and "-F" in words and words[-1] == log


@pytest.mark.parametrize("queued", [False, True])
def test_status_describes(gcloud, queued):
  ok(gcloud.run("status", *(["--queued"] if queued else []), **POD))
  kind = "queued-resources" if queued else "tpu-vm"
  assert gcloud.calls() == [
    ["compute", "tpus", kind, "describe", "pod-a", "--zone=us-central2-b", "--project=proj-x"]
  ]


def test_stop_kills_experiments_on_all_workers(gcloud):
  ok(gcloud.run("stop", **POD))
  [call] = gcloud.calls()
  assert call[:5] == ["compute", "tpus", "tpu-vm", "ssh", "pod-a"] and "--worker=all" in call
  command, _ = remote_command(call)
  assert "pkill" in command and "experiments[.]main" in command
  assert_no_mount(command)


def test_setup_installs_no_gcsfuse(gcloud):
  ok(gcloud.run("setup", **POD))
  ssh = gcloud.calls()[-1]
  command, _ = remote_command(ssh)
  assert "--worker=all" in ssh and "pip install -q -e" in command
  assert_no_mount(command)


@pytest.mark.parametrize(
  "queued, expected",
  [
    (
      False,
      [
        "compute",
        "tpus",
        "tpu-vm",
        "delete",
        "pod-a",
        "--zone=us-central2-b",
        "--quiet",
        "--project=proj-x",
      ],
    ),
    (
      True,
      [
        "compute",
        "tpus",
        "queued-resources",
        "delete",
        "pod-a",
        "--zone=us-central2-b",
        "--force",
        "--quiet",
        "--project=proj-x",
      ],
    ),
  ],
)
def test_delete_quietly(gcloud, queued, expected):
  ok(gcloud.run("delete", **POD, QUEUED="1" if queued else "0"))
  assert gcloud.calls() == [expected]


def test_gcloud_failure_fails_the_script(gcloud):
  result = gcloud.run("create", **POD, FAKE_GCLOUD_RC="3")
  assert result.returncode != 0


# --------------------------------------------------------------------------------------------
# Errors: one clear message, non-zero exit, nothing run


@pytest.mark.parametrize(
  "args, unset, named",
  [
    (["create"], "TPU_ZONE", "--zone (or TPU_ZONE)"),
    (["create"], "TPU_TYPE", "--type (or TPU_TYPE)"),
    (["create", "--queued"], "TPU_NAME", "--name (or TPU_NAME)"),
    (["setup"], "TPU_NAME", "--name (or TPU_NAME)"),
    (["run", "--config=experiments/configs/demo.py"], "TPU_BUCKET", "--bucket (or TPU_BUCKET)"),
    (
      ["run", "--config=experiments/configs/demo.py", "--workdir=exp/r1"],
      "TPU_BUCKET",
      "--bucket (or TPU_BUCKET)",
    ),
    (["run"], None, "--config"),
    (["sweep"], "TPU_BUCKET", "--bucket (or TPU_BUCKET)"),
    (["logs"], "TPU_ZONE", "--zone (or TPU_ZONE)"),
    (["status"], "TPU_NAME", "--name (or TPU_NAME)"),
    (["stop"], "TPU_ZONE", "--zone (or TPU_ZONE)"),
    (["delete"], "TPU_NAME", "--name (or TPU_NAME)"),
  ],
)
def test_missing_setting_fails_before_anything_runs(gcloud, args, unset, named):
  env = {k: v for k, v in POD.items() if k != unset}
  result = gcloud.run(*args, **env)
  assert result.returncode != 0
  assert named in result.stderr and f"required for '{args[0]}'" in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1, result.stderr
  assert gcloud.calls() == [] and not gcloud.log.exists()


def test_all_missing_settings_in_one_message(gcloud):
  result = gcloud.run("create")
  assert result.returncode != 0
  assert result.stderr.strip() == (
    "launch_tpu.sh: --name (or TPU_NAME), --zone (or TPU_ZONE) "
    "and --type (or TPU_TYPE) are required for 'create'"
  )
  assert not gcloud.log.exists()


@pytest.mark.parametrize(
  "args, message",
  [
    (["launch"], "unknown subcommand 'launch'"),
    (["create", "--zones=x"], "unknown flag '--zones=x'"),
    (["create", "--name"], "--name needs a value"),
    ([], "no subcommand given"),
    (["create", "extra"], "unexpected argument 'extra'"),
    (["delete", "--", "--config.x=1"], "extra args after -- only go with 'run' or 'sweep'"),
    (["logs", "--worker=all"], "--worker must be a worker number"),
    (["run", "--config=c.py", "--run=a/b"], "--run must be letters"),
  ],
)
def test_bad_usage_is_refused(gcloud, args, message):
  result = gcloud.run(*args, **POD)
  assert result.returncode != 0
  assert message in result.stderr
  assert gcloud.calls() == []


def test_unknown_subcommand_shows_usage(gcloud):
  result = gcloud.run("frobnicate", **POD)
  assert result.returncode == 2 and "Usage:" in result.stderr


# --------------------------------------------------------------------------------------------
# --dry-run


DRY_ARGS = {
  "create": ["create"],
  "queued": ["create", "--queued", "--spot"],
  "setup": ["setup"],
  "run": [
    "run",
    "--config=experiments/configs/demo.py",
    "--run=r1",
    "--",
    "--config.note=it's two words",
  ],
  "sweep": ["sweep", "--run=s1"],
  "logs": ["logs", "--worker=1"],
  "status": ["status"],
  "stop": ["stop"],
  "delete": ["delete"],
}


@pytest.mark.parametrize("how", ["flag", "env"])
@pytest.mark.parametrize("case", sorted(DRY_ARGS))
def test_dry_run_prints_commands_and_runs_nothing(gcloud, case, how):
  args = DRY_ARGS[case]
  if how == "flag":
    args = [args[0], "--dry-run", *args[1:]]
    result = gcloud.run(*args, **POD)
  else:
    result = gcloud.run(*args, **POD, DRY_RUN="1")
  ok(result)
  lines = result.stdout.splitlines()
  assert lines and all(line.startswith("[dry-run] ") for line in lines), result.stdout
  programs = [shlex.split(line[len("[dry-run] ") :])[:3] for line in lines]
  assert ["gcloud", "compute", "tpus"] in programs
  if case == "setup":
    assert programs[0][0] == "git" and "archive" in lines[0]
  assert gcloud.calls() == [] and not gcloud.log.exists()


@pytest.mark.parametrize(
  "case, workdir",
  [
    ("run", "--workdir=gs://bkt/warmth-sim/r1"),
    ("sweep", "--workdir=gs://bkt/warmth-sim/s1"),
    ("setup", None),
    ("stop", None),
  ],
)
def test_dry_run_writes_to_the_bucket_directly(gcloud, case, workdir):
  subcommand, *args = DRY_ARGS[case]
  out = ok(gcloud.run(subcommand, "--dry-run", *args, **POD)).stdout
  [ssh] = [line for line in out.splitlines() if " tpu-vm ssh " in line]
  command, words = remote_command(shlex.split(ssh[len("[dry-run] ") :]))
  assert_no_mount(out, command)
  if workdir:
    assert [w for w in words if w.startswith("--workdir")] == [workdir]
    assert "--config.runtime.distributed=True" in words


@pytest.mark.parametrize("case", ["create", "queued", "run", "logs", "stop", "delete"])
def test_dry_run_output_is_exactly_what_runs(gcloud, case):
  dry = ok(gcloud.run(*DRY_ARGS[case], **POD, DRY_RUN="1")).stdout.splitlines()
  ok(gcloud.run(*DRY_ARGS[case], **POD))
  printed = [shlex.split(line[len("[dry-run] ") :])[1:] for line in dry]
  assert printed == gcloud.calls()


# --------------------------------------------------------------------------------------------
# A simulated one-worker pod: the remote scripts really run (in a temporary HOME)

FAKE_MAIN = """import json, os, sys, time
print(json.dumps({"argv": sys.argv[1:], "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS")}),
      flush=True)
time.sleep(120)
"""

FAKE_PYTHON311 = """#!/usr/bin/env bash
# Stands in for python3.11 on the worker: setup only calls `python3.11 -m venv DIR`.
[ "$1" = -m ] && [ "$2" = venv ] || exit 9
mkdir -p "$3/bin"
ln -s {python} "$3/bin/python"
printf '#!/usr/bin/env bash\\necho "$PWD: $*" >> {pip_log}\\n' > "$3/bin/pip"
chmod +x "$3/bin/pip"
"""


def git(repo, *args):
  subprocess.run(
    ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
    check=True,
    capture_output=True,
  )


def alive(pid):
  try:
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
  except (FileNotFoundError, ProcessLookupError):
    return False
  return state != "Z"


def wait_for(predicate, seconds=15):
  deadline = time.time() + seconds
  while time.time() < deadline:
    if predicate():
      return True
    time.sleep(0.1)
  return False


def test_simulated_pod_setup_run_logs_stop(gcloud, tmp_path):
  # A repository of its own, holding this script and a stand-in experiments.main.
  repo = tmp_path / "repo"
  (repo / "experiments" / "configs").mkdir(parents=True)
  shutil.copy(SCRIPT, repo / "launch_tpu.sh")
  (repo / "setup.py").write_text("# setup\n")
  (repo / "experiments" / "__init__.py").write_text("")
  (repo / "experiments" / "main.py").write_text(FAKE_MAIN)
  (repo / "experiments" / "configs" / "fake.py").write_text("# config\n")
  git(repo, "init", "-q")
  git(repo, "add", ".")
  git(repo, "commit", "-q", "-m", "init")
  (repo / "untracked.txt").write_text("stays home\n")
  (repo / "setup.py").write_text("# uncommitted edit\n")

  home = tmp_path / "home"
  (home / "warmth-sim" / "logs").mkdir(parents=True)
  (home / "warmth-sim" / "stale.py").write_text("from an older setup\n")
  (home / "warmth-sim" / "logs" / "old.log").write_text("kept\n")
  pod_bin = tmp_path / "pod-bin"
  pod_bin.mkdir()
  pip_log = tmp_path / "pip.log"
  fake_python = pod_bin / "python3.11"
  fake_python.write_text(
    FAKE_PYTHON311.format(python=os.path.realpath(sys.executable), pip_log=pip_log)
  )
  fake_python.chmod(0o755)
  gcloud.env.update(FAKE_POD_HOME=str(home), FAKE_POD_PATH=str(pod_bin), **POD)
  script = repo / "launch_tpu.sh"

  # setup: only the committed tree travels; code replaced, logs kept, venv made, package installed.
  result = ok(gcloud.run("setup", script=script))
  assert "uncommitted changes stay behind" in result.stderr
  scp, ssh = gcloud.calls()
  assert scp[:4] == ["compute", "tpus", "tpu-vm", "scp"]
  assert "--recurse" in scp and "--worker=all" in scp and "pod-a:warmth-sim.tar.gz" in scp
  assert ssh[:5] == ["compute", "tpus", "tpu-vm", "ssh", "pod-a"] and "--worker=all" in ssh
  code = home / "warmth-sim"
  assert (code / "setup.py").read_text() == "# setup\n"
  assert (code / "experiments" / "main.py").exists() and (code / "launch_tpu.sh").exists()
  assert not (code / "untracked.txt").exists() and not (code / "stale.py").exists()
  assert (code / "logs" / "old.log").read_text() == "kept\n"
  assert not (home / "warmth-sim.tar.gz").exists()
  assert f"{code}: install -q -e .[tpu]" in pip_log.read_text().splitlines()

  # run: nohup'ed on the worker with the gs:// workdir, logging to logs/r1.log, pid recorded.
  ok(
    gcloud.run(
      "run",
      "--config=experiments/configs/fake.py",
      "--workdir=exp/r1",
      "--",
      "--config.note=two words",
      script=script,
    )
  )
  pid = int((code / "logs" / "r1.pid").read_text())
  try:
    log = code / "logs" / "r1.log"
    assert wait_for(lambda: log.exists() and log.read_text().strip()), "no log line"
    started = json.loads(log.read_text().splitlines()[0])
    assert started == {
      "JAX_PLATFORMS": "tpu",
      "argv": [
        "--config=experiments/configs/fake.py",
        "--workdir=gs://bkt/exp/r1",
        "--config.runtime.distributed=True",
        "--config.note=two words",
      ],
    }
    assert alive(pid)
    assert not (home / "gcs").exists()
    assert os.readlink(code / "logs" / "latest.log") == "r1.log"

    # logs: tail -F of the latest run (the fake ends it after 2 s, like Ctrl-C).
    followed = ok(gcloud.run("logs", script=script, FAKE_SSH_TIMEOUT="2"))
    assert '"JAX_PLATFORMS": "tpu"' in followed.stdout

    # A second run on a busy worker is refused.
    busy = gcloud.run("run", "--config=experiments/configs/fake.py", "--run=r2", script=script)
    assert busy.returncode != 0 and "already running" in busy.stderr
    assert not (code / "logs" / "r2.log").exists()

    # stop: the experiment is gone.
    ok(gcloud.run("stop", script=script))
    assert wait_for(lambda: not alive(pid), 5)
  finally:
    if alive(pid):
      os.kill(pid, signal.SIGKILL)
