"""runtime/distributed.py: two processes joined by jax.distributed on 127.0.0.1 train one model
like one process does, and a SIGTERM to either stops both."""

import glob
import logging
import os
import re
import signal
import subprocess
import threading
import time

import jax
from jax.experimental import multihost_utils
import numpy as np
import pandas as pd
import pytest
import tiny_runs

from experiments.runtime import distributed
from experiments.runtime.base_store import BaseStore
from experiments.runtime.workdir import Workdir


def test_a_non_writing_workdir_writes_nothing(tmp_path):
  workdir = Workdir(str(tmp_path / "w"), {"a": 1}, write=False)
  workdir.save_cell("cell", pd.DataFrame({"x": [1]}), pd.DataFrame({"y": [2]}))
  assert not (tmp_path / "w").exists()


def test_local_block_of_a_single_process_is_everything():
  mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  sh = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  assert distributed.local_block(sh, (4, 3)) == (slice(0, 4), slice(0, 3))
  assert distributed.agree([True, False]).tolist() == [True, False]


@pytest.mark.slow
def test_two_processes_train_together_and_only_process_0_writes(tmp_path):
  port = tiny_runs.free_port()
  joined = [
    "--config.runtime.distributed=True",
    f"--config.runtime.coordinator_address=127.0.0.1:{port}",
    "--config.runtime.num_processes=2",
  ]
  store = tmp_path / "store"  # process 0 stores the base model, both read it back
  procs = [
    subprocess.Popen(
      tiny_runs.main_cmd(
        tmp_path / "two",
        *joined,
        f"--config.runtime.process_id={i}",
        f"--config.runtime.base_store={store}",
      ),
      cwd=tiny_runs.ROOT,
      env=tiny_runs.env(),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  outs = [p.communicate(timeout=900) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  assert "1 local devices of 2" in outs[1][1]
  # The same mesh (data=2) in one process with two devices: the same program, the same numbers.
  tiny_runs.run(tiny_runs.main_cmd(tmp_path / "one"), devices=2)

  assert "metrics:" in outs[0][0] and "metrics:" not in outs[1][0]  # only process 0 reports
  assert "nano seed 0: base trained and stored" in outs[0][1]
  assert [e["status"] for e in BaseStore(str(store)).entries()] == ["stored"]
  two = pd.read_csv(tmp_path / "two" / "metrics.csv")
  tb = tmp_path / "two" / "tb"  # one directory per run, each written by process 0 alone
  assert sorted(os.listdir(tb)) == sorted(set(two[two.seed >= 0].run))
  assert all(len(os.listdir(tb / run)) == 1 for run in os.listdir(tb))
  ref = pd.read_csv(tmp_path / "one" / "metrics.csv")
  assert two.drop(columns="value").equals(ref.drop(columns="value"))
  np.testing.assert_allclose(two.value, ref.value, rtol=1e-5, atol=1e-6)
  losses = two[two.metric.str.endswith("_loss")]
  assert len(losses) and np.isfinite(losses.value).all()


def test_a_failed_preemption_query_falls_back_to_the_sigterm_flags(monkeypatch, caplog):
  def no_service(step):
    raise RuntimeError("Preemption sync manager has not been initialized.")

  monkeypatch.setattr(distributed, "_SIGTERM", threading.Event())
  monkeypatch.setattr(distributed._State, "stopping", threading.Event())
  monkeypatch.setattr(distributed._State, "warned", False)
  monkeypatch.setattr(multihost_utils, "reached_preemption_sync_point", no_service)
  monkeypatch.setattr(distributed.jax, "process_count", lambda: 2)
  # This process's flag beside another process's, which did not get SIGTERM.
  gathered = []
  monkeypatch.setattr(
    distributed.multihost_utils,
    "process_allgather",
    lambda flag: gathered.append(flag) or np.array([flag, 0]),
  )
  with caplog.at_level(logging.WARNING):
    assert not distributed.preempted(1)
    distributed._SIGTERM.set()
    assert distributed.preempted(2)
  assert gathered == [0, 1]  # every check takes part in the collective
  assert distributed._State.stopping.is_set()
  warnings = [r for r in caplog.records if "preemption service" in r.getMessage()]
  assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


def test_only_process_0_stops_between_stages_on_a_sigterm_another_process_got(monkeypatch):
  monkeypatch.setattr(distributed, "_SIGTERM", threading.Event())
  monkeypatch.setattr(distributed._State, "stopping", threading.Event())
  monkeypatch.setattr(distributed.jax, "process_count", lambda: 2)
  asked = []
  monkeypatch.setattr(
    distributed, "_key_value_dir", lambda prefix: [(f"{prefix}1", "SIGTERM")] if asked else []
  )
  distributed.stop_if_asked("evaluation at batch 1 of 3")  # nobody asked yet
  asked.append(1)
  with pytest.raises(distributed.Preempted, match="batch 2 of 3 stopped on SIGTERM to process 1"):
    distributed.stop_if_asked("evaluation at batch 2 of 3")
  # Another process works on alone (persona geometry): it stops with process 0, never before it.
  monkeypatch.setattr(distributed.jax, "process_index", lambda: 1)
  distributed._SIGTERM.set()
  distributed.stop_if_asked("persona geometry at batch 2 of 3")


def _start_two(workdir, logs, *overrides):
  """The tiny run in two processes joined on 127.0.0.1; their output goes to logs/{out,err}{i}."""
  port = tiny_runs.free_port()
  os.makedirs(logs, exist_ok=True)
  procs = []
  for i in range(2):
    with open(logs / f"out{i}", "w") as out, open(logs / f"err{i}", "w") as err:
      procs.append(
        subprocess.Popen(
          tiny_runs.main_cmd(
            workdir,
            "--config.runtime.distributed=True",
            f"--config.runtime.coordinator_address=127.0.0.1:{port}",
            "--config.runtime.num_processes=2",
            f"--config.runtime.process_id={i}",
            *overrides,
          ),
          cwd=tiny_runs.ROOT,
          env=tiny_runs.env(),
          stdout=out,
          stderr=err,
          text=True,
        )
      )
  return procs


def _finish(procs, logs, timeout=600):
  """[(returncode, stdout, stderr)] of each process, killing any still running after `timeout`."""
  try:
    for p in procs:
      p.wait(timeout=timeout)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  return [
    (p.returncode, (logs / f"out{i}").read_text(), (logs / f"err{i}").read_text())
    for i, p in enumerate(procs)
  ]


# Small evaluation batches: many stop points, and an evaluation that lasts seconds, not one batch.
EVAL_BATCHES = ("--config.eval.batch_size=8",)
# The line evaluation logs at the first batch of each pass of replies (evaluate.Progress).
FIRST_REPLIES = re.compile(r"eval replies .*: 1/\d+ batches")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """metrics.csv of the run in one process on two devices: the mesh the two processes make."""
  workdir = tmp_path_factory.mktemp("one")
  tiny_runs.run(tiny_runs.main_cmd(workdir, *EVAL_BATCHES), devices=2)
  return pd.read_csv(workdir / "metrics.csv")


@pytest.mark.slow
@pytest.mark.parametrize(
  "evaluation, process_1",
  [
    # Process 1 has gone on to the persona stage and waits there, in a collective, for process 0.
    (1, "waits"),
    # Process 1 has done its part of the run and waits for process 0 to end.
    (2, "done"),
  ],
)
def test_a_sigterm_to_process_1_stops_process_0_in_evaluation(
  tmp_path, uninterrupted, evaluation, process_1
):
  workdir = tmp_path / "two"
  procs = _start_two(workdir, tmp_path / "stopped", *EVAL_BATCHES)
  try:
    deadline = time.monotonic() + 600
    while len(FIRST_REPLIES.findall((tmp_path / "stopped" / "err0").read_text())) < evaluation:
      assert procs[0].poll() is None, (tmp_path / "stopped" / "err0").read_text()[-3000:]
      assert time.monotonic() < deadline
      time.sleep(0.05)
    procs[1].send_signal(signal.SIGTERM)  # process 0 gets none
  finally:
    runs = _finish(procs, tmp_path / "stopped")
  (rc0, out0, err0), (rc1, _, err1) = runs
  assert rc0 != 0 and "metrics:" not in out0, err0[-3000:]
  assert re.search(r"stopped: evaluation .* stopped on SIGTERM to process 1; .*Rerun", err0)
  if process_1 == "waits":  # it leaves the collective it waited in, as process 0 stopped
    assert rc1 != 0 and "stopped: as process 0 did: evaluation" in err1, err1[-3000:]
  else:
    assert rc1 == 0, err1[-3000:]
  finished = glob.glob(str(workdir / "cells" / "*" / "manifest.json"))
  assert len(finished) == evaluation - 1  # the cells evaluated before the stop are kept

  rerun = _finish(_start_two(workdir, tmp_path / "rerun", *EVAL_BATCHES), tmp_path / "rerun")
  for rc, _, err in rerun:
    assert rc == 0, err[-3000:]
  two = pd.read_csv(workdir / "metrics.csv")
  assert two.drop(columns="value").equals(uninterrupted.drop(columns="value"))
  np.testing.assert_allclose(two.value, uninterrupted.value, rtol=1e-5, atol=1e-6)
