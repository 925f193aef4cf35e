"""runtime/results.py: one write of the results, and the report reads the run's own intervals."""

import os
import stat

import numpy as np
import pandas as pd
import pytest
import synthetic_metrics

from experiments.analysis import report, stats
from experiments.runtime import results


def _run(tmp_path, n_boot=50):
  items = synthetic_metrics.make_items(
    presets={"nano": 25_000}, seeds=(0, 1), n_items=8, tasks=("factual_qa", "capability")
  )
  metrics = synthetic_metrics.metrics_from_items(items)
  deltas = stats.paired_deltas(items, "error", n_boot=n_boot)
  merged = results.write(str(tmp_path), metrics, items, deltas)
  return items, metrics, deltas, merged


def test_change_rows_are_the_paired_deltas_and_files_are_shared(tmp_path):
  items, metrics, deltas, merged = _run(tmp_path)
  on_disk = pd.read_csv(
    tmp_path / "metrics.csv", keep_default_na=False, na_values=[""], float_precision="round_trip"
  )
  assert len(on_disk) == len(merged) == len(metrics) + len(deltas)
  change = on_disk.iloc[len(metrics) :]
  np.testing.assert_array_equal(change.value.to_numpy(), deltas.estimate.to_numpy())
  np.testing.assert_array_equal(change.ci_low.to_numpy(), deltas.ci_low.to_numpy())
  np.testing.assert_array_equal(change.ci_high.to_numpy(), deltas.ci_high.to_numpy())
  assert set(change.seed) == {-1} and not any(r.endswith(("-s0", "-s1")) for r in change.run)
  umask = os.umask(0)
  os.umask(umask)
  for f in ("metrics.csv", "items.csv", "paired_deltas.csv"):  # shared as the umask allows
    assert stat.S_IMODE(os.stat(tmp_path / f).st_mode) == 0o666 & ~umask, f
  assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no temporary left over


def test_the_report_reads_the_runs_paired_deltas_instead_of_recomputing(tmp_path):
  items, _, deltas, _ = _run(tmp_path, n_boot=50)
  planted = pd.read_csv(tmp_path / "paired_deltas.csv")
  planted.loc[0, "ci_low"] = -0.987654  # a value no bootstrap would give: proves it was read
  planted.to_csv(tmp_path / "paired_deltas.csv", index=False)
  got, computed = report.paired_deltas(str(tmp_path), items, n_boot=1000)
  assert got.ci_low.iloc[0] == -0.987654 and len(got) == len(deltas) and not computed
  os.remove(tmp_path / "paired_deltas.csv")  # a merged sweep has none: computed
  again, computed = report.paired_deltas(str(tmp_path), items, n_boot=50)
  assert computed and len(again) == len(deltas)


def test_the_report_bootstraps_with_the_runs_draws():
  assert report.bootstrap_draws({"eval": {"bootstrap": 37}}) == 37
  assert report.bootstrap_draws(None) == 1000 and report.bootstrap_draws({}) == 1000


def test_run_ids_are_stable():
  assert results.cell_id("nano", "finetune", "warm", 1.0, 0.0, 3) == "nano-finetune-warm-l1-r0-s3"
  assert results.cell_id("nano", "finetune", "warm", 0.5, 0.25) == "nano-finetune-warm-l0.5-r0.25"


@pytest.mark.parametrize("umask, mode", [(0o002, 0o664), (0o022, 0o644), (0o077, 0o600)])
def test_result_files_honour_the_umask(tmp_path, umask, mode):
  from experiments.runtime.workdir import write_text  # pylint: disable=g-import-not-at-top

  old = os.umask(umask)
  try:
    write_text(str(tmp_path / "r.txt"), "x")
  finally:
    os.umask(old)
  assert os.stat(tmp_path / "r.txt").st_mode & 0o777 == mode
