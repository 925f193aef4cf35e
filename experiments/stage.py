"""One resumable training stage of a pack: finished earlier, resumed, or trained from the start.

The data position is the step (batches are a pure function of seed and step), so resuming needs
only the parameters, the optimizer state and the step: a rerun restores them from the stage's
latest checkpoint (onto whatever mesh it has) and runs the same jitted step on. On the same devices
the result is bit-identical to an uninterrupted run.
"""
import dataclasses

from absl import logging
import jax
import numpy as np

from experiments import checkpoints, distributed, sharding, train


@dataclasses.dataclass
class Stage:
  """What a stage trains: members are the pack's rows (cell ids), with per-member inputs."""
  label: str           # base | persona | mixture: names the stage in logs and TensorBoard
  name: str            # checkpoint name, e.g. nano-finetune/persona
  members: list
  steps: int
  optimizer: object
  batches: object      # experiment.BatchStream
  lam: list
  rho: list
  lr: list
  step_offset: int = 0
  steer: object = None  # preventative steering Intervention (leading axis E), persona rows only


def saved_members(wd, name):
  """The members of the stage's latest checkpoint, or None if it has none."""
  with checkpoints.StageCheckpoints(wd, name, cleanup=False) as ckpt:  # the stage cleans up
    latest = ckpt.latest()
  return None if latest is None else list(latest[1]["members"])


def placed_batches(stream, shardings):
  """batch_fn(step) giving global arrays, each process building only its own block of them."""
  first = jax.tree.leaves(shardings.batch)[0]
  shape = jax.tree.leaves(stream.shapes, is_leaf=sharding.is_shape)[0]
  members, rows = distributed.local_block(first, shape)[:2]
  return lambda step: distributed.global_batch(shardings.batch, stream.shapes,
                                               stream(step, members, rows))


def final_losses(history):
  last = history[-1] if history else {}
  return {k: np.asarray(last[k]) for k in ("base_loss", "persona_loss") if k in last}


def run(config, wd, mesh, mcfg, stage, init, writer=None):
  """(graphdef, state_E, final losses); init(shardings) gives the state_E a new stage starts from."""
  t = config.train
  graphdef, abstract = train.abstract_states(mcfg, len(stage.members))
  abstract_opt = jax.eval_shape(jax.vmap(stage.optimizer.init), abstract)
  sh = sharding.PackShardings(mesh, sharding.rules_of(config.mesh), abstract, abstract_opt,
                              stage.batches.shapes)
  if mesh.shape["ensemble"] > 1 and sh.spmd_axis is None:
    logging.warning("%s: %d cells do not divide mesh.ensemble=%d, so every ensemble slice trains "
                    "all of them; use a multiple (grid.max_pack_size helps)", stage.name,
                    len(stage.members), mesh.shape["ensemble"])
  target = sh.abstract(abstract, sh.state)
  with checkpoints.StageCheckpoints(wd, stage.name, t.checkpoint_every, t.checkpoints_to_keep,
                                    t.async_checkpoints) as ckpt:
    latest, start, opt_state = ckpt.latest(), 0, None
    if latest is not None:
      step, meta = latest
      if list(meta["members"]) != list(stage.members):
        raise ValueError(f"checkpoint {ckpt.path} holds members {meta['members']}, not "
                         f"{list(stage.members)}; use a new --workdir.")
      if meta.get("complete"):
        logging.info("%s: finished earlier, restored from %s", stage.name, ckpt.path)
        losses = {k: np.asarray(v) for k, v in meta.get("final_losses", {}).items()}
        return graphdef, ckpt.restore(step, target)[0], losses
      state, opt_state = ckpt.restore(step, target, sh.abstract(abstract_opt, sh.opt_state))
      start = step
      logging.info("%s: resuming at step %d of %d from %s", stage.name, step, stage.steps,
                   ckpt.path)
    else:
      state = init(sh)
    meta = {"members": list(stage.members), "steps": stage.steps, "complete": False}
    save = lambda step, s, o: ckpt.maybe_save(step, s, o, meta)
    state, opt_state, history = train.run_stage(
        stage.label, graphdef, stage.optimizer, state, placed_batches(stage.batches, sh),
        stage.lam, stage.rho, stage.lr, stage.steps, t.log_every, writer, stage.step_offset,
        opt_state, start, shardings=sh, checkpoint=save, steer_E=stage.steer,
        normalization=t.loss_normalization)
    losses = final_losses(history)
    ckpt.save(stage.steps, state, opt_state,
              dict(meta, complete=True, final_losses={k: v.tolist() for k, v in losses.items()}))
  return graphdef, state, losses
