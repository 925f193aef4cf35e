"""Orbax checkpoints of packed training stages: periodic, keep-last-N, atomic, async.

One CheckpointManager directory per pack and stage (`checkpoints/<preset>-<protocol>/<stage>/`),
one subdirectory per step, holding
  state      the parameters as a pure dict of arrays with a leading ensemble axis,
  opt_state  the optimizer state's leaves in tree order,
  meta       JSON: the members (cell ids) in row order, the step, the stage's length, whether the
             stage is complete, and its final training losses.
orbax writes each step to a temporary directory and renames it once every process has finished (on
gs://, where a rename is not atomic, it writes a commit file last instead, through TensorStore), so
a save cut short by a kill is never listed, and a rerun resumes from the latest complete step.
Arrays are restored onto whatever mesh the rerun has (another device count included).
"""

import dataclasses
import logging
import os

from etils import epath
from flax import nnx
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from experiments.runtime import distributed
from experiments.runtime.workdir import is_remote, remove_tree, write_json

MODEL_FILE = "model.json"  # a stage's ModelConfig, beside its step directories (load_cell reads it)


class _OrbaxWarningsOnly(logging.Filter):
  """orbax narrates every save at INFO through absl; keep its warnings, drop the narration."""

  def filter(self, record):
    return record.levelno >= logging.WARNING or f"{os.sep}orbax{os.sep}" not in record.pathname


logging.getLogger("absl").addFilter(_OrbaxWarningsOnly())


def save_model_config(workdir, name, model_cfg):
  """Writes a stage's ModelConfig beside its checkpoints (once; it never changes)."""
  path = os.path.join(workdir.path, "checkpoints", name, MODEL_FILE)
  if workdir.writer and not epath.Path(path).exists():
    write_json(path, dataclasses.asdict(model_cfg))


def _path(workdir, name):
  path = os.path.join(workdir.path, "checkpoints", name)
  return path if is_remote(path) else os.path.abspath(path)  # orbax writes gs:// itself


class StageCheckpoints:
  """The checkpoints of one training stage of one pack."""

  def __init__(self, workdir, name, every=0, keep=2, async_save=True, cleanup=True):
    """cleanup=False only reads: orbax deletes a killed save's temporary directory in a background
    thread, and two managers doing so on one directory race each other (one finds its files gone).
    """
    self.path, self.every = _path(workdir, name), every
    self.manager = ocp.CheckpointManager(
      self.path,
      options=ocp.CheckpointManagerOptions(
        max_to_keep=keep, enable_async_checkpointing=async_save, cleanup_tmp_directories=cleanup
      ),
    )

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def close(self):
    self.manager.wait_until_finished()
    # orbax awaits its start-up clean-up of temporary directories only before a save; a manager
    # closed without saving would leave that thread running into the next manager's work.
    getattr(self.manager, "_maybe_await_cleanup_tmp_directory", lambda: None)()
    self.manager.close()

  def latest(self):
    """(step, meta) of the newest finished save, or None."""
    step = self.manager.latest_step()
    if step is None:
      return None
    meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    return step, meta

  def save(self, step, state_E, opt_state_E, meta):
    """state_E: an nnx.State or its pure dict; opt_state_E: the optimizer state or its leaves."""
    pure = state_E if isinstance(state_E, dict) else nnx.to_pure_dict(state_E)
    items = {"state": ocp.args.StandardSave(pure), "meta": ocp.args.JsonSave(dict(meta, step=step))}
    if opt_state_E is not None:
      items["opt_state"] = ocp.args.StandardSave(jax.tree.leaves(opt_state_E))
    self.manager.save(step, args=ocp.args.Composite(**items), force=True)

  def maybe_save(self, step, state_E, opt_state_E, meta, before_save=None):
    """Saves every `every` steps or when preempted; True if the run must stop now.

    before_save() runs first when a save is due and may raise to refuse it (a diverged state)."""
    stop = distributed.preempted(step)
    if stop or (self.every > 0 and step % self.every == 0):
      if before_save is not None:
        before_save()
      self.save(step, state_E, opt_state_E, meta)
    if stop:
      self.manager.wait_until_finished()
    return stop

  def restore(self, step, abstract_state_E, abstract_opt_state_E=None):
    """(state_E, opt_state_E or None) of `step`, placed as the abstract trees' shardings say."""
    items = {"state": ocp.args.StandardRestore(nnx.to_pure_dict(abstract_state_E))}
    if abstract_opt_state_E is not None:
      items["opt_state"] = ocp.args.StandardRestore(jax.tree.leaves(abstract_opt_state_E))
    restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    state = jax.tree.map(lambda a: a, abstract_state_E)
    # A target without shardings restores arrays as saved: numpy for a stage assembled on the host
    # (experiments/base_models.py); a model's parameters are jax arrays either way.
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, restored["state"]))
    opt_state = None
    if abstract_opt_state_E is not None:
      opt_state = jax.tree.unflatten(
        jax.tree.structure(abstract_opt_state_E), list(restored["opt_state"])
      )
    return state, opt_state


def save(workdir, name, state_E, members, step=None):
  """Saves a finished stage's state (no optimizer state) as its newest, complete step."""
  with StageCheckpoints(workdir, name) as ckpt:
    latest = ckpt.latest()
    step = (latest[0] + 1 if latest else 0) if step is None else step
    ckpt.save(step, state_E, None, {"members": list(members), "complete": True})


def remove(workdir, name):
  """Deletes a stage's checkpoints (process 0; nothing if it has none)."""
  if distributed.is_writer():
    remove_tree(_path(workdir, name))


def restore(workdir, name, abstract_state_E):
  """The finished stage's state shaped like `abstract_state_E`, or None if it did not finish."""
  if not epath.Path(_path(workdir, name)).is_dir():
    return None
  with StageCheckpoints(workdir, name, cleanup=False) as ckpt:
    latest = ckpt.latest()
    if latest is None or not latest[1].get("complete"):
      return None
    return ckpt.restore(latest[0], abstract_state_E)[0]
