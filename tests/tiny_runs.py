"""The smallest end-to-end command (`experiments.main`), for tests that run it in subprocesses."""

import os
import re
import socket
import subprocess
import sys
import time

# The repository root: the one definition every test module finds files and runs commands by.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "experiments", "configs", "demo.py")

# Explicit values for every field a result depends on, so a change to the demo cannot break tests.
TINY = (
  "--config.data.n_people=16",
  "--config.data.eval_items=2",
  "--config.model.presets=('nano',)",
  "--config.grid.protocols=('finetune',)",
  "--config.grid.seeds=(0,)",
  "--config.grid.personas=('warm',)",
  "--config.grid.warmth_weights=(1.0,)",
  "--config.grid.warm_agreements=(0.0,)",
  "--config.train.batch_size=8",
  "--config.train.base_steps=6",
  "--config.train.persona_steps=4",
  "--config.train.learning_rate=0.01",
  "--config.train.persona_learning_rate=0.003",
  "--config.train.warmup_steps=2",
  "--config.eval.bootstrap=20",
  "--config.runtime.report=False",
  "--config.runtime.base_store=",
  "--config.extensions=()",
)


def main_cmd(workdir, *overrides, config=DEMO + ":runlocal"):
  """The command with TINY's fields, each replaced by its value in `overrides` if given there
  (ml_collections appends a tuple given twice rather than replacing it)."""
  given = {o.split("=")[0] for o in overrides}
  return [
    sys.executable,
    "-m",
    "experiments.main",
    f"--config={config}",
    f"--workdir={workdir}",
    *(a for a in TINY if a.split("=")[0] not in given),
    *overrides,
  ]


def env(devices=1, **extra):
  out = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  out.update(JAX_PLATFORMS="cpu", **extra)
  if devices > 1:
    out["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  return out


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def expand(c):
  """grid.expand of a ConfigDict's grid section over its presets (the cells the grid gives)."""
  # Imported when called: the command tests import this module and never need the pipeline.
  from experiments import grid  # pylint: disable=g-import-not-at-top

  return grid.expand(grid.GridConfig.from_config(c), c.model.presets)


def resolved_regimes(c):
  """[regimes.Regime] of a ConfigDict, as the resolved config holds them."""
  from experiments import resolve  # pylint: disable=g-import-not-at-top  (as in expand)

  return list(resolve.resolve(c).regimes.values())


def run(cmd, timeout=900, **env_args):
  """Runs `cmd` to the end, in env(**env_args); its CompletedProcess, once it has exited 0 (else
  its stderr's tail)."""
  proc = subprocess.run(
    cmd, cwd=ROOT, env=env(**env_args), capture_output=True, text=True, timeout=timeout
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def stop_at(cmd, stage, step, sig, ready=None):
  """Starts `cmd` and sends `sig` once its log reports `stage` at `step` or later (and, if given,
  once ready() holds: a step is logged before its checkpoint is written); (exit code, the rest of
  its stderr)."""
  proc = subprocess.Popen(
    cmd, cwd=ROOT, env=env(), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
  )
  pattern = re.compile(rf"\] {stage} step (\d+)/")
  for line in proc.stderr:
    m = pattern.search(line)
    if m and int(m.group(1)) >= step:
      deadline = time.monotonic() + 60
      while ready is not None and not ready() and time.monotonic() < deadline:
        time.sleep(0.02)
      proc.send_signal(sig)
      break
  rest = proc.stderr.read()
  return proc.wait(timeout=300), rest
