"""Meshes and logical rules; sharded training equals one device; checkpoints move across meshes.

The multi-device checks run tests/mesh_worker.py in subprocesses with 8 simulated CPU devices
(XLA_FLAGS must be set before JAX starts, so never in this process).
"""

import json
import os
import subprocess
import sys

from jax.sharding import AbstractMesh
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest
import tiny_runs

from experiments.configs import common
from experiments.configs.mesh_rules import DEFAULT_RULES
from experiments.runtime import sharding
from models.partitioning import logical_to_spec

MESH_WORKER = os.path.join(tiny_runs.ROOT, "tests", "mesh_worker.py")
RULES = DEFAULT_RULES


def _mesh_cfg(**sizes):
  c = common.base_config().mesh
  for k, v in sizes.items():
    c[k] = v
  return c


def test_minus_one_takes_the_remaining_devices():
  assert sharding.mesh_shape(_mesh_cfg(), 8) == {"ensemble": 1, "data": 8, "fsdp": 1, "tensor": 1}
  assert sharding.mesh_shape(_mesh_cfg(data=-1, tensor=2, ensemble=2), 8)["data"] == 2


@pytest.mark.parametrize(
  "sizes, devices",
  [({"data": 3}, 8), ({"data": -1, "fsdp": -1}, 8), ({"tensor": 3}, 8), ({"fsdp": 0}, 1)],
)
def test_impossible_meshes_are_refused_with_the_field_named(sizes, devices):
  with pytest.raises(ValueError, match="mesh"):
    sharding.mesh_shape(_mesh_cfg(**sizes), devices)


def test_unknown_mesh_axis_in_rules_is_refused():
  with pytest.raises(ValueError, match="mesh.rules maps 'embed' to 'model'"):
    sharding.validate(_mesh_cfg(rules=(("embed", "model"),)))


def test_rules_map_logical_names_and_skip_indivisible_or_reused_axes():
  mesh = AbstractMesh((2, 2, 2, 2), sharding.AXES)
  spec = lambda names, shape: logical_to_spec(names, shape, RULES, mesh)
  assert spec(("ensemble", "embed", "mlp"), (4, 32, 128)) == P("ensemble", "fsdp", "tensor")
  assert spec(("ensemble", "batch", None), (2, 8, 5)) == P("ensemble", ("data", "fsdp"))
  assert spec(("ensemble", "batch"), (2, 6)) == P("ensemble", "data")  # 6 rows: fsdp dropped
  assert spec(("vocab", "embed"), (575, 32)) == P(None, "fsdp")  # odd vocabulary stays whole
  assert spec(("heads", "mlp"), (4, 4)) == P("tensor")  # tensor used once
  assert spec(("ensemble",), (3,)) == P()


def _worker(args, devices, tmp_path):
  env = dict(
    os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu"
  )
  out = subprocess.run(
    [sys.executable, MESH_WORKER, *args], env=env, capture_output=True, text=True, timeout=900
  )
  assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.slow
def test_sharded_training_equals_one_device_and_checkpoints_move_across_meshes(tmp_path):
  train_dir, one_dir, back_dir = (tmp_path / d for d in ("train", "one", "back"))
  for d in (train_dir, one_dir, back_dir):
    d.mkdir()
  # data × fsdp × tensor, and packed cells split over the ensemble axis; the last one is saved.
  meshes = ["1dev", "1,2,2,2", "2,1,2,2"]
  _worker(["train", str(train_dir), *meshes], 8, tmp_path)
  ref = np.load(train_dir / "1dev.npz")
  for mesh in meshes[1:]:
    got = np.load(train_dir / f"{mesh}.npz")
    np.testing.assert_allclose(got["__losses"], ref["__losses"], rtol=1e-5, err_msg=mesh)
    for k in ref.files:
      np.testing.assert_allclose(got[k], ref[k], rtol=1e-4, atol=1e-5, err_msg=f"{mesh} {k}")

  specs = json.loads((train_dir / "1,2,2,2.json").read_text())
  up = specs["['blocks'][0]['mlp']['up'].value"]
  assert up == {"spec": [None, "fsdp", "tensor"], "shard": [2, 16, 64]}  # E × 32 × 128 / (2, 2)
  assert specs["['blocks'][0]['attn']['out'].value"]["spec"] == [None, "tensor", None, "fsdp"]
  assert specs["['embed'].value"]["spec"] == [None, "tensor", "fsdp"]  # vocab 576 splits in 2
  assert specs["['final_norm']['scale'].value"]["spec"] == [None, "fsdp"]
  packed = json.loads((train_dir / "2,1,2,2.json").read_text())
  assert packed["['blocks'][0]['mlp']['up'].value"] == {
    "spec": ["ensemble", "fsdp", "tensor"],
    "shard": [1, 16, 64],
  }

  # Saved on 8 devices, restored on 1; saved there, restored on 8 with another mesh.
  _worker(["restore", str(one_dir), str(train_dir), "1dev"], 1, tmp_path)
  _worker(["restore", str(back_dir), str(one_dir), "1,1,4,2"], 8, tmp_path)
  saved = np.load(train_dir / "2,1,2,2.npz")
  for restored in (np.load(one_dir / "restored.npz"), np.load(back_dir / "restored.npz")):
    for k in restored.files:
      np.testing.assert_array_equal(restored[k], saved[k], err_msg=k)
  back = json.loads((back_dir / "restored.json").read_text())
  assert back["['blocks'][0]['mlp']['up'].value"]["spec"] == [None, "fsdp", "tensor"]
  assert back["['blocks'][0]['mlp']['up'].value"]["shard"] == [2, 8, 64]


@pytest.mark.slow
def test_lora_training_is_sharded_like_its_projections_and_restores_on_another_device_count(
  tmp_path,
):
  train_dir, one_dir = tmp_path / "train", tmp_path / "one"
  train_dir.mkdir()
  one_dir.mkdir()
  _worker(["train_lora", str(train_dir), "1dev", "1,2,2,2"], 8, tmp_path)
  ref, got = np.load(train_dir / "1dev.npz"), np.load(train_dir / "1,2,2,2.npz")
  np.testing.assert_allclose(got["__losses"], ref["__losses"], rtol=1e-5)
  lora = [k for k in ref.files if "lora" in k]
  assert len(lora) == 2 * 6 * 2  # layers × projections × (A, B)
  for k in ref.files:
    np.testing.assert_allclose(got[k], ref[k], rtol=1e-4, atol=1e-5, err_msg=k)
  specs = json.loads((train_dir / "1,2,2,2.json").read_text())
  # An adapter is split as its projection is: A by its input's name, B by its output's.
  assert specs["['blocks'][0]['mlp']['up_lora']['lora_a'].value"]["spec"] == [None, "fsdp"]
  assert specs["['blocks'][0]['mlp']['up_lora']['lora_b'].value"]["spec"] == [None, None, "tensor"]
  # Saved on 8 devices, restored on 1.
  _worker(["restore_lora", str(one_dir), str(train_dir), "1dev"], 1, tmp_path)
  saved, restored = np.load(train_dir / "1,2,2,2.npz"), np.load(one_dir / "restored.npz")
  assert set(restored.files) == set(saved.files) - {"__losses"}
  for k in restored.files:
    np.testing.assert_array_equal(restored[k], saved[k], err_msg=k)


def test_a_mesh_that_does_not_fit_fails_clearly_before_any_result(tmp_path):
  proc = subprocess.run(
    tiny_runs.main_cmd(tmp_path / "w", "--config.mesh.data=3"),
    cwd=tiny_runs.ROOT,
    env=tiny_runs.env(),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode != 0
  assert "config.mesh=" in proc.stderr and "does not fit the 1 devices" in proc.stderr
  assert not (tmp_path / "w" / "config.json").exists()
