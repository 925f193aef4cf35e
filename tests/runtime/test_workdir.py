"""runtime/workdir.py on a bucket: a gs:// workdir, on a GCS emulator (conftest's `gcs`), keeps the
local workdir's guarantees: every file whole or absent, a damaged cell named and recomputed, a run
killed mid-stage resumed to the same metrics, and the report read back from the bucket."""

import logging
import os
import signal

from etils import epath
import pandas as pd
import pytest
import tiny_runs

from experiments.runtime import workdir as workdir_lib

STEPS = (
  "--config.train.base_steps=30",
  "--config.train.persona_steps=20",
  "--config.train.checkpoint_every=4",
  "--config.train.log_every=1",
)


def _frames(k):
  return pd.DataFrame({"metric": ["error_rate"], "value": [0.5 + k]}), pd.DataFrame(
    {"item_id": ["a", "b"], "error": [k, 1 - k]}
  )


def test_a_bucket_workdir_saves_merges_and_names_a_damaged_cell(gcs, caplog):
  url = gcs("cells")
  w = workdir_lib.Workdir(url, {"train": {"base_steps": 3}})
  assert epath.Path(url, "config.json").exists()
  for k, cell in enumerate(("c0", "c1")):
    w.save_cell(cell, *_frames(k))
  assert w.cell_done("c0") and w.cell_done("c1")
  metrics, items = w.merge(["c0", "c1"])
  assert metrics.value.tolist() == [0.5, 1.5] and len(items) == 4
  # The same config resumes; another is refused before anything is written.
  workdir_lib.Workdir(url, {"train": {"base_steps": 3}})
  with pytest.raises(ValueError, match="different config"):
    workdir_lib.Workdir(url, {"train": {"base_steps": 4}})
  # An object changed in the bucket no longer matches its manifest: named, and not merged.
  epath.Path(url, "cells", "c1", "items.csv").write_text("item_id,error\na,1\n")
  with caplog.at_level(logging.WARNING):
    assert not w.cell_done("c1")
  assert "cells/c1 is damaged (items.csv does not match its manifest)" in caplog.text
  metrics, _ = w.merge(["c0", "c1"])
  assert metrics.value.tolist() == [0.5]
  # A write that fails leaves the object it would have replaced as it was.
  before = epath.Path(url, "cells", "c0", "metrics.csv").read_bytes()

  def fail(tmp):
    with open(tmp, "w") as f:
      f.write("half")
    raise OSError("killed")

  with pytest.raises(OSError):
    workdir_lib.atomic_write(os.path.join(url, "cells", "c0", "metrics.csv"), fail)
  assert epath.Path(url, "cells", "c0", "metrics.csv").read_bytes() == before


def test_an_unknown_scheme_is_refused():
  with pytest.raises(ValueError, match=r"--workdir=s3://b/w has a scheme .* gs://bucket/path"):
    workdir_lib.check_location("s3://b/w")
  workdir_lib.check_location("gs://b/w")
  workdir_lib.check_location("relative/dir")


def _run(workdir):
  return tiny_runs.run(tiny_runs.main_cmd(workdir, *STEPS))


def _committed_steps(url, stage):
  """Steps of a stage whose orbax save finished: on GCS, orbax marks one with a commit file."""
  path = epath.Path(url, "checkpoints", "nano-finetune", stage)
  if not path.exists():
    return []
  return [d.name for d in path.iterdir() if (d / "commit_success.txt").exists()]


@pytest.mark.slow
def test_a_run_into_the_bucket_killed_mid_stage_resumes_to_a_local_runs_metrics(gcs, tmp_path):
  local = tmp_path / "local"
  _run(local)
  url = gcs("killed")
  code, _ = tiny_runs.stop_at(
    tiny_runs.main_cmd(url, *STEPS),
    "persona",
    9,
    signal.SIGKILL,
    ready=lambda: len(_committed_steps(url, "persona")) >= 2,
  )
  assert code == -signal.SIGKILL, "the run ended before persona step 9"
  assert _committed_steps(url, "persona") and not epath.Path(url, "metrics.csv").exists()
  # What a kill during a save leaves on a bucket: a later step's objects with no commit file.
  last = max(int(s) for s in _committed_steps(url, "persona"))
  half = epath.Path(url, "checkpoints", "nano-finetune", "persona", str(last + 4))
  (half / "state").mkdir(parents=True, exist_ok=True)
  (half / "state" / "manifest.ocdbt").write_text("garbage")
  rerun = _run(url)
  assert f"nano-finetune/persona: resuming at step {last} " in rerun.stderr, rerun.stderr[-3000:]
  for name in ("metrics.csv", "items.csv"):
    assert epath.Path(url, name).read_bytes() == (local / name).read_bytes(), name
  # A cell's object damaged in the bucket is named, and the cell recomputed to the same rows.
  (cell,) = [c for c in os.listdir(local / "cells") if "-warm-" in c]
  epath.Path(url, "cells", cell, "items.csv").write_text("item_id\nnot-this\n")
  again = _run(url)
  assert f"cells/{cell} is damaged (items.csv does not match its manifest)" in again.stderr
  assert "resuming" not in again.stderr  # its checkpoints are finished: evaluation only
  for name in ("metrics.csv", "items.csv"):
    assert epath.Path(url, name).read_bytes() == (local / name).read_bytes(), name
  # TensorBoard's events went to the bucket, one directory per cell, as locally.
  assert sorted(p.name for p in epath.Path(url, "tb").iterdir()) == sorted(os.listdir(local / "tb"))

  # The report reads its inputs back from the bucket and writes beside them.
  from experiments.analysis import report  # pylint: disable=g-import-not-at-top

  paths = report.write_report(url, n_boot=20)
  assert paths["html"] == f"{url}/report.html"
  assert "Bottom line" in epath.Path(url, "report.html").read_text()
  assert paths["plots"] and all(epath.Path(p).exists() for p in paths["plots"])
