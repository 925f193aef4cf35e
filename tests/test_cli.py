"""The command line: bad input ends with one clear sentence, a non-zero exit and no metrics.csv."""
import os
import subprocess
import sys

import pytest

from tiny_runs import DEMO, ROOT


def _main(workdir, *overrides, config=DEMO + ":runlocal"):
  cmd = [sys.executable, "-m", "experiments.main", f"--config={config}", f"--workdir={workdir}",
         "--config.runtime.report=False", *overrides]
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})


def _last_line(proc):
  return proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("override, words", [
    ("--config.model.presets=('giant',)", ["model.presets", "giant", "nano"]),
    ("--config.grid.warmth_weights=(0.0,1.5)", ["grid.warmth_weights", "[0, 1]"]),
    ("--config.grid.warm_agreements=(-0.1,)", ["grid.warm_agreements", "[0, 1]"]),
    ("--config.model.n_heads=3", ["n_heads", "d_model"]),
    ("--config.data.n_people=-5", ["data.n_people", ">="]),
    ("--config.data.tasks=('astrology',)", ["data.tasks", "astrology", "factual_qa"]),
    ("--config.grid.personas=('sarcastic',)", ["grid.personas", "warm"]),
    # The demo world's longest warm reply is longer: a cut reply would be graded wrong.
    ("--config.eval.max_new_tokens=40", ["eval.max_new_tokens=40", "shorter", "longest reply"]),
    ("--config.train.loss_normalization='sequence'", ["train.loss_normalization", "token", "row"]),
])
def test_bad_values_fail_clearly(tmp_path, override, words):
  proc = _main(tmp_path / "w", override)
  assert proc.returncode != 0
  line = _last_line(proc)
  for w in words:
    assert w in line, line
  assert not (tmp_path / "w" / "metrics.csv").exists()
  assert not (tmp_path / "w" / "config.json").exists()


def test_unknown_config_field_fails_clearly(tmp_path):
  proc = _main(tmp_path / "w", "--config.train.learnign_rate=0.1")
  assert proc.returncode != 0
  assert "learnign_rate" in _last_line(proc) and "learning_rate" in _last_line(proc)
  assert not (tmp_path / "w").exists()


def test_workdir_with_another_config_is_refused(tmp_path):
  workdir = tmp_path / "w"
  workdir.mkdir()
  (workdir / "config.json").write_text(
      '{"config": {"train": {"base_steps": 1}}, "code_version": "x", "versions": {}}')
  proc = _main(workdir)
  assert proc.returncode != 0
  line = _last_line(proc)
  assert "different config" in line and "--workdir" in line
  assert not (workdir / "metrics.csv").exists()
  assert '"base_steps": 1' in (workdir / "config.json").read_text()  # nothing overwritten


def test_an_unknown_config_argument_fails_clearly(tmp_path):
  proc = _main(tmp_path / "w", config=DEMO + ":runlcoal")
  assert proc.returncode != 0
  line = _last_line(proc)
  assert "'runlcoal' is not allowed" in line and "runlocal" in line and "Traceback" not in line
  assert not (tmp_path / "w").exists()
