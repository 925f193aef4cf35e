"""`python -m experiments.tools.bases`: train fills the store (resuming after a kill) as a run
would, list shows it, prune removes only what no config names, and only with --yes."""

import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import tiny_runs

from experiments.runtime import base_store

STEPS = (
  "--config.train.base_steps=30",
  "--config.train.checkpoint_every=4",
  "--config.train.log_every=1",
)


def _bases_cmd(command, store, *overrides):
  given = {o.split("=")[0] for o in overrides}
  tiny = [
    a
    for a in tiny_runs.TINY
    if a.split("=")[0] not in given and not a.startswith("--config.runtime.base_store")
  ]
  return [
    sys.executable,
    "-m",
    "experiments.tools.bases",
    command,
    f"--config={tiny_runs.DEMO}:runlocal",
    *tiny,
    f"--config.runtime.base_store={store}",
    *overrides,
  ]


def _ok(cmd):
  done = subprocess.run(
    cmd, cwd=tiny_runs.ROOT, env=tiny_runs.env(), capture_output=True, text=True, timeout=600
  )
  assert done.returncode == 0, done.stderr[-3000:]
  return done.stdout + done.stderr


@pytest.mark.slow
def test_a_killed_train_resumes_and_a_run_then_trains_no_base(tmp_path):
  store = tmp_path / "store"
  cmd = _bases_cmd("train", store, "--config.grid.seeds=(0,1)", *STEPS)
  proc = subprocess.Popen(
    cmd,
    cwd=tiny_runs.ROOT,
    env=tiny_runs.env(),
    stderr=subprocess.PIPE,
    stdout=subprocess.DEVNULL,
    text=True,
  )
  for line in proc.stderr:
    m = re.search(r"\] base step (\d+)/", line)
    if m and int(m.group(1)) >= 14:  # past a checkpoint (every 4 steps)
      proc.send_signal(signal.SIGKILL)
      break
  assert proc.wait(timeout=300) == -signal.SIGKILL, "train ended before step 14"
  assert base_store.BaseStore(str(store)).entries() == []  # nothing published by the killed one
  resumed = _ok(cmd)
  assert "resuming at step" in resumed and "bases: 2 trained and stored" in resumed
  listed = _ok([sys.executable, "-m", "experiments.tools.bases", "list", f"--store={store}"])
  assert listed.count(" stored ") == 2 and "30 steps" in listed
  assert not os.listdir(store / ".train")  # the resumable workdir went once its bases were stored
  # A config that changes only the persona phase trains no base model.
  persona_only = ("--config.grid.seeds=(0,1)", "--config.train.persona_learning_rate=0.01")
  run = _ok(
    tiny_runs.main_cmd(
      tmp_path / "run", f"--config.runtime.base_store={store}", *persona_only, *STEPS
    )
  )
  assert run.count("base reused from") == 2 and "base step" not in run
  _ok(tiny_runs.main_cmd(tmp_path / "in_place", *persona_only, *STEPS))
  assert (tmp_path / "run" / "metrics.csv").read_bytes() == (
    tmp_path / "in_place" / "metrics.csv"
  ).read_bytes()
  # The run measured its base models: list now shows their competence.
  listed = _ok([sys.executable, "-m", "experiments.tools.bases", "list", f"--store={store}"])
  assert listed.count("competence: error") == 2


def test_prune_lists_what_no_config_names_and_removes_it_only_with_yes(tmp_path, make_demo_config):
  from experiments.tools import bases

  config = make_demo_config()
  config.grid.seeds = (0,)
  store = base_store.BaseStore(str(tmp_path))
  key = bases._Setup(config).key("nano")  # pylint: disable=protected-access
  trees = ({"w": np.zeros((1, 2), np.float32)}, [np.zeros((1,), np.float32)])
  for seed in (0, 1):  # seed 1 is not in the config
    store.publish(key, seed, *trees, [])
  other = base_store.Key.of("nano", {"another": "key"})
  store.publish(other, 0, *trees, [])
  os.makedirs(os.path.join(store.seed_dir(key, 0), "attempt-killed"))  # a killed writer's
  lines = []
  listed = bases.prune([config], str(tmp_path), yes=False, write=lines.append)
  assert sorted(os.path.basename(p) for p in listed) == ["attempt-killed", "seed0", "seed1"]
  assert lines[-1].startswith("3 item(s); rerun with --yes")
  assert len(store.entries()) == 3  # nothing removed
  bases.prune([config], str(tmp_path), yes=True, write=lines.append)
  (kept,) = store.entries()
  assert (kept["key"], kept["seed"], kept["status"], kept["leftovers"]) == (
    key.name,
    "0",
    "stored",
    [],
  )
  assert not os.path.exists(os.path.join(str(tmp_path), other.name))


@pytest.mark.parametrize(
  "args, words",
  [
    ([], ["give one command", "train, list, prune"]),
    (["train"], ["`train` needs --config"]),
    (["prune"], ["`prune` needs --config"]),
  ],
)
def test_a_bad_command_line_is_one_sentence(args, words):
  done = subprocess.run(
    [sys.executable, "-m", "experiments.tools.bases", *args],
    cwd=tiny_runs.ROOT,
    env=tiny_runs.env(),
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert done.returncode != 0
  message = done.stderr.strip().splitlines()[-1]
  assert message.startswith("error:") and all(w in message for w in words), message
