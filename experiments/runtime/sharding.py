"""The device mesh, and where every array of a pack lives on it.

`config.mesh` sizes four axes, outermost first: `ensemble` (packed cells), `data`, `fsdp`, `tensor`;
-1 means "the devices the other axes leave". `config.mesh.rules` (default:
experiments/configs/mesh_rules.py) maps logical dimension names to mesh axes, MaxText-style
(models/partitioning.py applies them): parameters carry their names (vocab, embed, heads, kv, mlp)
and packed states a leading `ensemble` axis in front of them; batch rows are `batch`; activations
are pinned by the model (batch, length, act_*).
"""

from flax import nnx
import jax
from jax.sharding import AxisType, NamedSharding, PartitionSpec
import numpy as np

from models.partitioning import logical_to_spec

AXES = ("ensemble", "data", "fsdp", "tensor")


def validate(mesh_cfg):
  """Static checks of config.mesh (device counts are checked by make_mesh); raises ValueError."""
  sizes = {a: getattr(mesh_cfg, a) for a in AXES}
  for axis, n in sizes.items():
    if not isinstance(n, int) or isinstance(n, bool) or (n < 1 and n != -1):
      raise ValueError(f"mesh.{axis}={n!r} must be a positive integer or -1 (the rest).")
  if sum(n == -1 for n in sizes.values()) > 1:
    raise ValueError(f"config.mesh={sizes} may set at most one axis to -1.")
  for rule in mesh_cfg.rules:
    if len(rule) != 2:
      raise ValueError(f"mesh.rules entry {rule!r} must be a (logical name, mesh axes) pair.")
    axes = rule[1]
    axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
    for a in axes:
      if a not in AXES:
        raise ValueError(
          f"mesh.rules maps {rule[0]!r} to {a!r}: allowed mesh axes are {', '.join(AXES)}."
        )


def mesh_shape(mesh_cfg, n_devices):
  """Axis sizes with -1 resolved; raises ValueError if they do not fit n_devices."""
  validate(mesh_cfg)
  sizes = {a: getattr(mesh_cfg, a) for a in AXES}
  fixed = int(np.prod([n for n in sizes.values() if n != -1]))
  free = [a for a, n in sizes.items() if n == -1]
  if free and n_devices % fixed == 0:
    sizes[free[0]] = n_devices // fixed
  if int(np.prod(list(sizes.values()))) != n_devices:
    raise ValueError(
      f"config.mesh={ {a: getattr(mesh_cfg, a) for a in AXES} } does not fit the "
      f"{n_devices} devices available: the sizes must multiply to {n_devices} "
      "(set one axis to -1 to take the rest)."
    )
  return sizes


def make_mesh(mesh_cfg, devices=None):
  """A mesh over all devices (of every process), shaped by config.mesh."""
  devices = jax.devices() if devices is None else list(devices)
  sizes = mesh_shape(mesh_cfg, len(devices))
  return jax.make_mesh(
    tuple(sizes.values()), AXES, axis_types=(AxisType.Auto,) * len(AXES), devices=devices
  )


def rules_of(mesh_cfg):
  return tuple(
    (name, tuple(axes) if isinstance(axes, list) else axes) for name, axes in mesh_cfg.rules
  )


def _is_spec(x):
  return isinstance(x, PartitionSpec)


def is_shape(x):
  return isinstance(x, tuple) and all(isinstance(n, int) for n in x)


class PackShardings:
  """Where one pack's arrays live: states, optimizer states, batches, per-member vectors."""

  def __init__(self, mesh, rules, abstract_state_E, abstract_opt_state_E=None, batch_shapes=None):
    self.mesh, self.rules = mesh, tuple(rules)
    n_members = jax.tree.leaves(abstract_state_E)[0].shape[0]
    self.members = self.named(("ensemble",), (n_members,))
    self.replicated = NamedSharding(mesh, PartitionSpec())
    # vmap must put its axis where the states' leading axis lives, or nowhere if that is whole.
    self.spmd_axis = self.members.spec[0] if self.members.spec else None
    self.state = self.tree(abstract_state_E)
    self._state_structure = jax.tree.structure(abstract_state_E)
    self.opt_state = None if abstract_opt_state_E is None else self.tree(abstract_opt_state_E)
    self.batch_shapes = batch_shapes
    self.batch = (
      None
      if batch_shapes is None
      else jax.tree.map(
        lambda shape: self.named(("ensemble", "batch"), shape), batch_shapes, is_leaf=is_shape
      )
    )

  def named(self, names, shape):
    return NamedSharding(self.mesh, logical_to_spec(names, shape, self.rules, self.mesh))

  def tree(self, abstract_E):
    """Shardings of a tree whose leaves have a leading member axis and NNX logical names."""
    specs = nnx.get_partition_spec(abstract_E)
    return jax.tree.map(
      lambda spec, a: self.named(("ensemble",) + tuple(spec), a.shape),
      specs,
      abstract_E,
      is_leaf=_is_spec,
    )

  def abstract(self, abstract_E, shardings):
    """The abstract tree with shardings attached: what a checkpoint restores into."""
    return jax.tree.map(
      lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh), abstract_E, shardings
    )

  def put(self, host_array, sharding=None):
    """A global array from host data that every process holds in full."""
    x = np.asarray(host_array)
    return jax.make_array_from_callback(x.shape, sharding or self.members, lambda idx: x[idx])

  def _is_state(self, tree):
    return tree is not None and jax.tree.structure(tree) == self._state_structure

  def inputs(self, inputs):
    """Shardings of a stage's per-member inputs: an entry shaped like the state (a reference
    model) is placed as the states are, every other one by its leading member axis."""
    return {k: self.state if self._is_state(v) else self.members for k, v in inputs.items()}

  def put_inputs(self, inputs):
    """The inputs as global arrays: host vectors copied in, state-shaped entries moved (on one
    process) to where the states live."""
    return {
      k: jax.device_put(v, self.state)
      if self._is_state(v)
      else jax.tree.map(lambda a: self.put(np.asarray(a)), v)
      for k, v in inputs.items()
    }


def describe(mesh):
  return " × ".join(f"{a}={n}" for a, n in mesh.shape.items())
