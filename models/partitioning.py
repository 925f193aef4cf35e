"""Logical axis names → mesh axes (MaxText-style rules), and activation sharding constraints.

Rules are (logical name, mesh axes) pairs; mesh axes are one axis name, a tuple of them, or None.
A dimension keeps only those of its mesh axes that divide its size (vocabulary sizes come from the
data), and a mesh axis is used at most once per array. Outside `axis_rules(...)`, `constrain` does
nothing, so a model runs unchanged without a mesh (evaluation, decoding, tests).
"""

import contextlib
import math
import threading

import jax
from jax.sharding import NamedSharding, PartitionSpec

_ACTIVE = threading.local()


def logical_to_spec(names, shape, rules, mesh):
  """The PartitionSpec that `rules` give an array of `shape` whose dimensions are called `names`."""
  table = {}
  for logical, axes in rules:
    table.setdefault(logical, axes)  # the first rule for a name wins, as in MaxText
  used, out = set(), []
  for name, size in zip(tuple(names) + (None,) * (len(shape) - len(names)), shape):
    axes = table.get(name) if name is not None else None
    axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
    kept = []
    for axis in axes:
      n = mesh.shape[axis]
      if n > 1 and axis not in used and size % (math.prod(mesh.shape[a] for a in kept) * n) == 0:
        kept.append(axis)
    used.update(kept)
    out.append(None if not kept else kept[0] if len(kept) == 1 else tuple(kept))
  while out and out[-1] is None:
    out.pop()
  return PartitionSpec(*out)


@contextlib.contextmanager
def axis_rules(mesh, rules):
  """Makes `constrain` place activations on `mesh` by `rules` (active while tracing)."""
  previous = getattr(_ACTIVE, "value", None)
  _ACTIVE.value = (mesh, tuple(rules))
  try:
    yield
  finally:
    _ACTIVE.value = previous


def constrain(x, names):
  """Pins an activation's sharding by its logical dimension names; a no-op without rules."""
  active = getattr(_ACTIVE, "value", None)
  if active is None:
    return x
  mesh, rules = active
  spec = logical_to_spec(names, x.shape, rules, mesh)
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))
