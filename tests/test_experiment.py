"""experiment.py: a run trains every pack of cells once; a rerun, after a stop or with damaged
cell files, finishes only what was missing."""

import os
import re
import shutil
import signal
import subprocess
import sys

import pandas as pd
import pytest
import tiny_runs
from tiny_runs import expand

from experiments import experiment, resolve, train
from experiments.configs import sweep

SWEEP = os.path.join(tiny_runs.ROOT, "experiments", "configs", "sweep.py")


def _small(c):
  c.data.n_people, c.data.eval_items = 16, 2
  c.grid.protocols, c.grid.personas, c.grid.warmth_weights = ("finetune",), ("warm",), (1.0,)
  c.grid.warm_agreements, c.grid.seeds = (0.0,), (0,)
  c.train.batch_size, c.train.base_steps, c.train.persona_steps = 8, 3, 2
  return resolve.resolve(c)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """(config, workdir, metrics) of a finished small run, trained once: each test damages a copy."""
  c = _small(sweep.get_config("runlocal"))
  workdir = tmp_path_factory.mktemp("finished")
  metrics, _ = experiment.run(c, str(workdir))
  return c, workdir, metrics


def _copy(finished, tmp_path):
  c, workdir, metrics = finished
  shutil.copytree(workdir, tmp_path, dirs_exist_ok=True)
  return c, metrics


def test_a_rerun_redoes_only_the_missing_cell_without_training(finished, tmp_path, monkeypatch):
  c, _ = _copy(finished, tmp_path)
  runs = [x.id for x in c.cells()]
  assert len(runs) == 2
  stamp = {r: os.stat(tmp_path / "cells" / r / "metrics.csv").st_mtime_ns for r in runs}
  lost = runs[1]  # the persona cell of the finetune pack: stopped after training, before saving
  for f in ("metrics.csv", "items.csv"):
    os.remove(tmp_path / "cells" / lost / f)
  trained = []
  original = train.train_stage
  monkeypatch.setattr(
    train, "train_stage", lambda *a, **k: trained.append(a[0]) or original(*a, **k)
  )
  metrics, _ = experiment.run(c, str(tmp_path))
  assert trained == []  # every stage finished earlier: restored from its checkpoint
  assert sorted(metrics.run.unique()) == sorted(runs)
  for r in runs:
    changed = os.stat(tmp_path / "cells" / r / "metrics.csv").st_mtime_ns != stamp.get(r)
    assert changed == (r == lost), r


def test_damaged_cell_files_are_named_and_recomputed_not_merged(finished, tmp_path, caplog):
  c, first = _copy(finished, tmp_path)
  runs = [x.id for x in c.cells()]
  cut, garbled = (tmp_path / "cells" / r for r in runs)
  text = (cut / "metrics.csv").read_text()
  (cut / "metrics.csv").write_text(text[: len(text) // 2])  # cut in half: still parses as CSV
  (garbled / "items.csv").write_bytes(os.urandom(2000))
  metrics, _ = experiment.run(c, str(tmp_path))
  for r, f in zip(runs, ("metrics.csv", "items.csv")):
    assert any(
      f"cells/{r} is damaged ({f} does not match its manifest)" in m for m in caplog.messages
    ), caplog.messages
  pd.testing.assert_frame_equal(
    metrics.sort_values(["run", "task", "context", "metric"]).reset_index(drop=True),
    first.sort_values(["run", "task", "context", "metric"]).reset_index(drop=True),
  )


@pytest.mark.slow
def test_a_sweep_killed_mid_way_and_rerun_finishes_only_what_was_missing(tmp_path):
  cmd = [
    sys.executable,
    "-m",
    "experiments.main",
    f"--config={SWEEP}:runlocal",
    f"--workdir={tmp_path}",
    "--config.runtime.report=False",
    "--config.data.n_people=16",
    "--config.data.eval_items=2",
    "--config.train.base_steps=12",
    "--config.train.persona_steps=8",
    "--config.train.checkpoint_every=3",
    "--config.train.log_every=1",
  ]
  proc = subprocess.Popen(
    cmd,
    cwd=tiny_runs.ROOT,
    env=tiny_runs.env(),
    text=True,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
  )
  for line in proc.stderr:  # the finetune pack is done; kill the mixture pack mid-training
    if re.search(r"\] mixture step 8/", line):
      proc.kill()
      break
  proc.stderr.read()
  assert proc.wait(timeout=300) == -signal.SIGKILL
  cells = expand(_cli_config())
  finished = {x.id for x in cells if (tmp_path / "cells" / x.id / "metrics.csv").exists()}
  assert finished == {x.id for x in cells if x.protocol == "finetune"}
  stamp = {r: os.stat(tmp_path / "cells" / r / "metrics.csv").st_mtime_ns for r in finished}

  rerun = subprocess.run(
    cmd, cwd=tiny_runs.ROOT, env=tiny_runs.env(), text=True, capture_output=True, timeout=900
  )
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert "pack nano-finetune-0: all 10 cells finished earlier" in rerun.stderr
  assert re.search(r"nano-mixture-0/mixture: resuming at step \d+ of 20", rerun.stderr)
  assert " base step " not in rerun.stderr and " persona step " not in rerun.stderr
  for r, t in stamp.items():
    assert os.stat(tmp_path / "cells" / r / "metrics.csv").st_mtime_ns == t, r
  merged = pd.read_csv(tmp_path / "metrics.csv")
  assert set(merged[merged.seed >= 0].run) == {x.id for x in cells}


def _cli_config():
  c = sweep.get_config("runlocal")
  c.data.n_people, c.data.eval_items = 16, 2
  return c
