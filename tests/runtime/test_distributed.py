"""runtime/distributed.py: two processes joined by jax.distributed on 127.0.0.1 train one model
like one process does."""

import os
import subprocess

import jax
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
  one = subprocess.run(
    tiny_runs.main_cmd(tmp_path / "one"),
    cwd=tiny_runs.ROOT,
    env=tiny_runs.env(devices=2),
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert one.returncode == 0, one.stderr[-3000:]

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
