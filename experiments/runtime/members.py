"""How a pack's members are computed: all at once (`jax.vmap`) or one after another (`lax.map`).

Every cell of a pack trains and evaluates in one compiled program over a leading member axis E.
On accelerators `jax.vmap` fills the device with all members at once. XLA's CPU backend runs the
same vmapped program 2-3× slower than the members one at a time (`python -m
experiments.tools.bench` prints both, "packed" and "looped"): batching turns its matmuls, gathers
and scatters into slower kernels. There the member axis becomes `jax.lax.map`, a loop inside the
same compiled program whose body is the single-member computation.

`config.mesh.members` picks: "vmap", "loop", or "auto" (a loop on a CPU whose mesh does not shard
the member axis, vmap everywhere else). experiment.run sets it once per process; code that maps
over members calls `over_members` instead of `jax.vmap`. Both give the same numbers up to float
rounding, and each is deterministic.
"""

import jax

MODES = ("auto", "vmap", "loop")
_mode = ["auto"]


def validate(mode):
  if mode not in MODES:
    raise ValueError(f"mesh.members={mode!r} must be one of {', '.join(MODES)}.")
  return mode


def configure(mode, mesh=None):
  """Sets how members are computed from here on; "auto" resolves against the backend and mesh."""
  validate(mode)
  if mode == "auto":
    sharded = mesh is not None and dict(mesh.shape).get("ensemble", 1) > 1
    mode = "loop" if jax.default_backend() == "cpu" and not sharded else "vmap"
  _mode[0] = mode
  return mode


def current():
  """The mode in force: "vmap" or "loop" ("auto" resolved without a mesh if never configured)."""
  return configure(_mode[0]) if _mode[0] == "auto" else _mode[0]


def over_members(fn, in_axes=0, spmd_axis_name=None):
  """`fn` mapped over the leading member axis of the arguments whose in_axes is 0 (None: shared).

  Like `jax.vmap(fn, in_axes)` with in_axes a single 0 or a tuple of 0 and None per argument; in
  "loop" mode a `jax.lax.map` over members, outputs stacked on a leading axis as vmap stacks them.
  """
  if current() == "vmap":
    return jax.vmap(fn, in_axes=in_axes, spmd_axis_name=spmd_axis_name)

  def looped(*args):
    axes = in_axes if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)
    if len(axes) != len(args) or any(a not in (0, None) for a in axes):
      raise ValueError(f"over_members takes in_axes of 0 or None per argument, not {in_axes!r}.")
    mapped = tuple(a for a, ax in zip(args, axes) if ax == 0)

    def one(xs):
      it = iter(xs)
      return fn(*(next(it) if ax == 0 else a for a, ax in zip(args, axes)))

    return jax.lax.map(one, mapped)

  return looped
