"""A pack's members computed at once (vmap) or one after another (lax.map) give the same numbers."""

import ctypes.util
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.runtime import host_memory, members


@pytest.fixture
def mode(monkeypatch):
  """Sets the members mode for one test; the process's mode comes back afterwards."""
  monkeypatch.setattr(members, "_mode", list(members._mode))
  return members.configure


def _fn(w_DK, x_BD, scale):
  """A member's weights against shared inputs, with a pytree output."""
  y_BK = jnp.tanh(x_BD @ w_DK) * scale
  return {"y": y_BK, "norm": jnp.sum(y_BK**2)}


def test_loop_equals_vmap_with_shared_arguments(mode):
  rng = np.random.default_rng(0)
  w_EDK = jnp.asarray(rng.normal(size=(3, 4, 5)), jnp.float32)
  x_BD = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
  scale_E = jnp.asarray([0.5, 1.0, 2.0], jnp.float32)
  out = {}
  for m in ("vmap", "loop"):
    mode(m)
    out[m] = jax.jit(members.over_members(_fn, in_axes=(0, None, 0)))(w_EDK, x_BD, scale_E)
  assert out["loop"]["y"].shape == (3, 6, 5) and out["loop"]["norm"].shape == (3,)
  for k in ("y", "norm"):
    np.testing.assert_allclose(out["loop"][k], out["vmap"][k], rtol=1e-6)
  # Each member's slice is that member alone: the loop does not mix members.
  np.testing.assert_allclose(out["loop"]["y"][2], _fn(w_EDK[2], x_BD, scale_E[2])["y"], rtol=1e-6)


def test_loop_refuses_in_axes_it_cannot_map(mode):
  mode("loop")
  with pytest.raises(ValueError, match="in_axes of 0 or None"):
    members.over_members(_fn, in_axes=(1, None, 0))(
      jnp.ones((2, 2, 2)), jnp.ones((2, 2)), jnp.ones(2)
    )


def test_auto_loops_on_cpu_unless_the_mesh_shards_members(mode):
  assert jax.default_backend() == "cpu"
  assert mode("auto") == "loop" and members.current() == "loop"
  sharded = types.SimpleNamespace(shape={"ensemble": 2, "data": 1})
  assert mode("auto", sharded) == "vmap" and members.current() == "vmap"
  assert mode("loop", sharded) == "loop"  # an explicit choice stands


def test_unknown_mode_is_one_sentence():
  with pytest.raises(ValueError, match=r"mesh.members='serial' must be one of auto, vmap, loop"):
    members.validate("serial")


@pytest.mark.skipif(
  ctypes.util.find_library("c") is None
  or not hasattr(ctypes.CDLL(ctypes.util.find_library("c")), "gnu_get_libc_version"),
  reason="mallopt thresholds are glibc's",
)
def test_glibc_takes_the_raised_thresholds():
  assert host_memory.keep_freed_memory() is True
