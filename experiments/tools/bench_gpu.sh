#!/usr/bin/env bash
# The GPU check as one command, from the repository root: experiments.tools.bench on the three
# target shapes, each beside the plain-JAX reference (same process, same shape), then the demo
# smoke run on the GPU.
#
# Beforehand, on a machine with the internet: put the reference module in .bench/ (see --anchor in
# experiments/tools/bench.py) and, for a GPU image without ml_collections and tensorboardX (which
# experiments.main needs), their wheels in .whl/:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux2014_x86_64 -d .whl ml-collections tensorboardX
# Parts can be named to split the work into runs of at most 10 minutes (default: gpt2s packed
# demo, an estimated 8 minutes on an H100; `anchor` adds the reference's own full run, ~2 minutes):
#   bash experiments/tools/bench_gpu.sh gpt2s      then      bash experiments/tools/bench_gpu.sh packed demo
# `study` runs experiments/configs/study.py:gpu (STUDY_ARG=gpu,preset=NAME for one preset).
# Every table also lands in $OUT (or /tmp/bench_gpu without it).
#
# Targets (one H100, 989e12 bf16 FLOP/s): gpt2s at or above the reference (474k tokens/s, 41% MFU);
# packed sub-1M cells (micro, K=64) at least 2x the reference's vmapped aggregate; packed ~10M cells
# (small, K=8) at least 30% MFU.
set -uo pipefail

out=${OUT:-/tmp/bench_gpu}
peak=${PEAK_FLOPS:-989e12}
export PYTHONUNBUFFERED=1

parts=("$@")
if [[ ${#parts[@]} -eq 0 ]]; then parts=(gpt2s packed demo); fi
for part in "${parts[@]}"; do
  case $part in
    anchor | gpt2s | packed | demo | study) ;;
    *) echo "bench_gpu.sh: part '$part' must be one of anchor, gpt2s, packed, demo, study." >&2; exit 2 ;;
  esac
done
anchor=.bench/plain_jax_anchor.py
if [[ ! -f $anchor ]]; then
  echo "bench_gpu.sh: $anchor is missing; put the plain-JAX reference module there (see --anchor in experiments/tools/bench.py)." >&2
  exit 2
fi

if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee "$out/gpu.txt"
status=0
run() {  # name, then the command; a failure is recorded and the next step still runs
  local name=$1
  shift
  echo "== $name: $*"
  "$@" 2>&1 | tee "$out/$name.txt" || status=1
}

bench=(python3 -m experiments.tools.bench "--peak_flops=$peak" "--anchor=$anchor" --steps=20
       --packing_people=0)
# Compiling GPT-2-small dominates its rounds and a GPU is quiet, so it runs one round (and no LoRA
# persona step, which would compile two more programs); the small presets compile in seconds and
# take two, with the LoRA-against-full persona step.
for part in "${parts[@]}"; do
  case $part in
    anchor) run anchor python3 "$anchor" "$peak" ;;
    # GPT-2-small: its vocabulary, 1024 predicted positions, batch 16 (the reference's shape).
    gpt2s) run bench_gpt2s "${bench[@]}" --presets=gpt2s --vocab_size=50304 --seq_len=1025 \
             --batch_size=16 --pack=0 --repeats=1 --lora_rank=0 ;;
    # Sub-1M cells, 64 packed, 128 positions, batch 32 (the reference's tiny() shape); then
    # ~10M cells, 8 packed.
    packed)
      run bench_sub1m "${bench[@]}" --presets=micro --vocab_size=512 --seq_len=129 \
        --batch_size=32 --pack=64 --repeats=2 --packing_people=24
      run bench_small "${bench[@]}" --presets=small --vocab_size=512 --seq_len=129 \
        --batch_size=32 --pack=8 --pack_max_params=20000000 --repeats=2 ;;
    # The same command as on a CPU, on the GPU, in bfloat16 so training takes the cuDNN path.
    demo) run demo_runlocal python3 -m experiments.main \
            --config=experiments/configs/demo.py:runlocal --config.model.compute_dtype=bfloat16 \
            "--workdir=$out/demo_runlocal" ;;
    # The study sized for one GPU (experiments/configs/study.py:gpu); longer than one device
    # call allows unless split by preset, e.g. `study` with STUDY_ARG=gpu,preset=small.
    study) run study python3 -m experiments.main \
             "--config=experiments/configs/study.py:${STUDY_ARG:-gpu}" "--workdir=$out/study" ;;
  esac
done
exit $status
