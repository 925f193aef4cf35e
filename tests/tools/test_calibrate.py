"""`python -m experiments.tools.calibrate`: the plan is frozen before training, its hash names the
calibration's directory (a changed grid is a new calibration), and a finished choice is frozen."""

import json
import os
import re
import subprocess
import sys

import pytest
import tiny_runs

from experiments.analysis import calibration
from experiments.configs import calibration as calibration_config
from experiments.tools import calibrate

CONFIG = "experiments/configs/calibration.py"


def _config(**calib):
  c = calibration_config.get_config("runlocal")
  c.runtime.base_store = ""
  c.calibration.update(calib)
  return c


def _cmd(workdir, *args):
  return [
    sys.executable,
    "-m",
    "experiments.tools.calibrate",
    f"--config={CONFIG}:runlocal",
    f"--workdir={workdir}",
    *args,
  ]


def _run(cmd):
  return subprocess.run(
    cmd, cwd=tiny_runs.ROOT, env=tiny_runs.env(), capture_output=True, text=True, timeout=900
  )


def test_the_plan_hash_names_the_calibration_and_a_changed_grid_is_a_new_one(tmp_path):
  plan, digest, directory, train_cfg = calibrate.prepare(_config(), str(tmp_path))
  assert directory == os.path.join(str(tmp_path), digest[:12])
  path = os.path.join(directory, calibration.PLAN)
  frozen = open(path, "rb").read()
  assert calibration.read_plan(path) == (plan, digest)
  assert train_cfg.eval.blind and "calibration" not in train_cfg.asked
  assert plan["order"] == ["full_3e4_short", "lora2_3e3"]  # the config's order, kept in JSON
  assert plan["candidates"]["lora2_3e3"]["lora_rank"] == 2  # every field resolved
  assert 0 < min(plan["rule"]["warmth_ceilings"].values()) <= 1
  # The same config: the same directory, the plan untouched.
  assert calibrate.prepare(_config(), str(tmp_path))[1] == digest
  assert open(path, "rb").read() == frozen
  # Another grid or rule: another hash and directory; the first plan stays as it was.
  changed = _config()
  changed.grid.regimes.full_3e4_short.persona_learning_rate = 1e-4
  other = calibrate.prepare(changed, str(tmp_path))
  assert (
    other[1] != digest
    and other[2] != directory
    and os.path.isfile(os.path.join(other[2], calibration.PLAN))
  )
  assert calibrate.prepare(_config(delta=0.05), str(tmp_path))[1] not in (digest, other[1])
  assert open(path, "rb").read() == frozen
  # A plan edited in place is refused, not followed.
  with open(path, "w") as f:
    f.write(frozen.decode().replace('"delta": 0.03', '"delta": 0.1'))
  with pytest.raises(ValueError, match="edited after it was frozen"):
    calibrate.prepare(_config(), str(tmp_path))


@pytest.mark.parametrize(
  "override, words",
  [
    ("--config.calibration.delta=0", "calibration.delta=0.0 must be a fraction in (0, 1)"),
    ("--config.grid.warmth_weights=(0.0,1.0)", "grid.warmth_weights must be (1.0,)"),
    ("--config.grid.personas=('warm',)", "must include warm and cold"),
  ],
)
def test_a_bad_calibration_config_is_one_sentence_and_writes_nothing(tmp_path, override, words):
  done = _run(_cmd(tmp_path / "cal", "--plan_only", override))
  assert done.returncode != 0
  said = [l for l in done.stderr.splitlines() if not re.match(r"[IWE]\d{4} ", l)]  # not logging
  assert len(said) == 1 and said[0].startswith("error: ") and words in said[0], done.stderr[-2000:]
  assert not (tmp_path / "cal").exists()


@pytest.mark.slow
def test_a_calibration_runs_blind_and_its_choice_is_frozen(tmp_path):
  store = f"--config.runtime.base_store={tmp_path / 'store'}"
  done = _run(_cmd(tmp_path / "cal", store))
  assert done.returncode == 0, done.stderr[-3000:]
  [directory] = os.listdir(tmp_path / "cal")
  root = tmp_path / "cal" / directory
  with open(root / calibration.CHOICE) as f:
    choice = json.load(f)
  assert choice["plan"].startswith(directory)
  assert "nano: " in done.stdout and choice["presets"]["nano"]["status"] in (
    calibration.CALIBRATED,
    calibration.NOT_CALIBRATED,
    calibration.NOT_CALIBRATABLE,
  )
  assert (root / "report.html").stat().st_size > 0 and (root / calibration.TABLE).exists()
  # Trained blind: the non-control personas' errors and replies were never kept.
  import pandas as pd  # pylint: disable=g-import-not-at-top

  cells = root / "train" / "cells"
  for run in os.listdir(cells):
    items = pd.read_csv(cells / run / "items.csv", keep_default_na=False, na_values=[""])
    graded = items.error.notna().all() and items.reply.notna().any()
    assert graded == any(f"-{p}-l" in run for p in ("none", "cold")), run
    assert items.warmth.notna().all() and items.well_formed.notna().all()
  # A rerun reads the frozen choice back: nothing trains, nothing is rewritten.
  before = {p: os.stat(root / p).st_mtime_ns for p in (calibration.CHOICE, calibration.TABLE)}
  again = _run(_cmd(tmp_path / "cal", store))
  assert again.returncode == 0 and "finished earlier" in again.stderr
  assert "] base step" not in again.stderr and "persona step" not in again.stderr
  assert {p: os.stat(root / p).st_mtime_ns for p in before} == before


def test_the_calibration_configs_design():
  """At most eight candidates, both families, three seeds; the study's presets in its world, the
  demo's in the demo's."""
  from experiments.configs import demo, study  # pylint: disable=g-import-not-at-top

  for variant, source, presets in (
    (None, study, ("pico", "nano")),
    ("demo", demo, ("nano", "micro")),
  ):
    c = calibration_config.get_config(variant)
    assert tuple(c.model.presets) == presets and tuple(c.grid.seeds) == (0, 1, 2)
    assert c.data.to_dict() == source.get_config().data.to_dict()  # the same world ...
    for field in ("base_steps", "learning_rate", "batch_size"):  # ... and base training
      assert c.train[field] == source.get_config().train[field]
    assert os.path.isfile(os.path.join(tiny_runs.ROOT, c.calibration.of))
    assert len(c.grid.regimes) <= 8
    updates = {r.get("persona_update", "full") for r in c.grid.regimes.values()}
    assert updates == {"full", "lora_embed"}


@pytest.mark.parametrize("name", ["study", "demo"])
def test_the_study_and_demo_configs_record_their_calibrations_choice(tmp_path, name):
  """Each config's CALIBRATION names a calibration config (file:variant) whose plan, as the code
  stands, has the recorded hash (a changed world, base training or grid without a new calibration
  fails here), and per preset the outcome that calibration's choice.json (kept in
  docs/calibration/) froze."""
  import importlib  # pylint: disable=g-import-not-at-top

  record = importlib.import_module(f"experiments.configs.{name}").CALIBRATION
  path, _, arg = record["config"].partition(":")
  assert path == CONFIG
  plan, digest, _, _ = calibrate.prepare(calibration_config.get_config(arg), str(tmp_path))
  assert record["plan"] == digest
  assert plan["calibrates"] == f"experiments/configs/{name}.py"
  with open(os.path.join(tiny_runs.ROOT, "docs", "calibration", f"{digest[:12]}.choice.json")) as f:
    frozen = json.load(f)
  assert frozen["plan"] == digest and set(frozen["presets"]) == set(record["presets"])
  for preset, choice in frozen["presets"].items():
    kept = record["presets"][preset]
    assert (kept["status"], kept["regime"]) == (choice["status"], choice["regime"])
    assert set(kept.get("failed", ())) == {t.split("[")[0] for t in choice["failed"]}
    if choice["regime"]:
      fields = plan["candidates"][choice["regime"]]
      assert choice["fields"] == fields
      assert kept["overrides"] and {k: fields[k] for k in kept["overrides"]} == kept["overrides"]
