"""Orbax checkpoints of packed model states, one directory per pack and stage.

States are saved as pure dicts of arrays with a leading ensemble axis, plus the list of cell ids
they hold, so a checkpoint can be read back without the code that built it.
"""
import json
import os

from flax import nnx
import jax
import orbax.checkpoint as ocp


def _path(wd, name):
  return os.path.abspath(os.path.join(wd.path, "checkpoints", name))


def save(wd, name, state_E, members):
  """Saves a stacked state; orbax writes to a temporary directory and renames it when complete."""
  path = _path(wd, name)
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(os.path.join(path, "state"), nnx.to_pure_dict(state_E), force=True)
  with open(os.path.join(path, "members.json"), "w") as f:
    json.dump(list(members), f)


def restore(wd, name, abstract_state_E):
  """The saved state shaped like `abstract_state_E`, or None if no complete checkpoint exists."""
  path = os.path.join(_path(wd, name), "state")
  if not os.path.exists(os.path.join(_path(wd, name), "members.json")):
    return None  # members.json is written last: without it the save did not finish
  target = nnx.to_pure_dict(abstract_state_E)
  with ocp.StandardCheckpointer() as ckpt:
    pure = ckpt.restore(path, target)
  state = jax.tree.map(lambda a: a, abstract_state_E)
  nnx.replace_by_pure_dict(state, pure)
  return state
