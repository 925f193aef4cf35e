"""One resumable training stage of a pack: what it trains, and finished, resumed or trained from 0.

A Stage is data: its members (cell ids), steps, optimizer, batch stream, loss and per-member
inputs (λ, ρ, learning rate, ...). `train_or_resume` trains it with train.train_stage, the one training loop of
every objective, behind checkpoints: the data position is the step (batches are a pure function of
seed and step), so resuming needs only the parameters, the optimizer state, the step and, for an
on-policy stream, its journal; a rerun restores them from the stage's latest checkpoint (onto
whatever mesh it has) and runs the same jitted step on. On the same devices the result is
bit-identical to an uninterrupted run, and SIGTERM or a preemption stops it after a save.
"""

import dataclasses
import functools
from typing import NamedTuple

from absl import logging
import jax
import numpy as np

from experiments import train
from experiments.runtime import checkpoints, distributed, sharding


@dataclasses.dataclass
class Stage:
  """What a stage trains: members are the pack's rows (cell ids), inputs their per-member values."""

  label: str  # base | persona | mixture | objectives: names it in logs and TensorBoard
  name: str  # checkpoint name, e.g. nano-finetune/persona
  members: list
  steps: int
  optimizer: object
  batches: object  # data.BatchStream
  loss: object  # loss(state, graphdef, batch, inputs) -> (loss, metrics), one member
  inputs: dict  # per-member arrays with leading axis E; "lr" is the peak learning rate
  model: object  # models.ModelConfig
  step_offset: int = 0  # TensorBoard steps of this stage start here
  final: tuple = ("base_loss", "persona_loss")  # metrics of the last step kept with the stage
  cell_ids: list = None  # the cell id of each member (TensorBoard's directories); None: members
  schedule: object = None  # step -> learning-rate multiplier (the optimizer's schedule)
  # Divergence: besides a non-finite loss, a loss above train.divergence_factor × its median so far.
  # Off for a loss that is no likelihood (GRPO's advantage-weighted term sits near 0, either sign).
  ratio_check: bool = True
  update: str = "full"  # what the optimizer trains (train.trainable): full | lora | lora_embed
  keep_optimizer: bool = (
    False  # Trained keeps the final optimizer state (a later stage continues it)
  )

  def __post_init__(self):
    self.cell_ids = list(self.cell_ids or self.members)

  @functools.cached_property
  def abstract(self):
    """(graphdef, abstract state_E): the shapes of the members' models, nothing allocated."""
    return train.abstract_states(self.model, len(self.members))

  @property
  def graphdef(self):
    return self.abstract[0]

  def batch(self, step, state_E, shardings=None):
    """The step's batch; with shardings, each process builds only its block of the global one."""
    if shardings is None:
      return self.batches(step, state=state_E)
    first = jax.tree.leaves(shardings.batch)[0]
    shape = jax.tree.leaves(self.batches.shapes, is_leaf=sharding.is_shape)[0]
    members, rows = distributed.local_block(first, shape)[:2]
    return distributed.global_batch(
      shardings.batch, self.batches.shapes, self.batches(step, members, rows, state=state_E)
    )


def imitation(
  label,
  name,
  cells,
  steps,
  train_cfg,
  model,
  batches,
  lr,
  *,
  members=None,
  step_offset=0,
  steer=None,
  regime=None,
  keep_optimizer=False,
):
  """A stage of `w·L_base + λ·L_persona` with λ and ρ taken from each cell; w = 1 − λ unless
  `regime` (experiments/regimes.Regime: a persona phase) sets it, as it sets the warm-up and
  what is trained."""
  n = len(cells)
  inputs = {
    "lam": np.array([c.warmth_weight for c in cells], np.float32),
    "rho": np.array([c.warm_agreement for c in cells], np.float32),
    "lr": np.full(n, lr, np.float32),
    "steer": steer,
  }
  warmup, update = None, "full"
  if regime is not None:
    warmup, update = regime.train.persona_warmup, regime.update
    inputs.update({k: np.asarray(v, np.float32) for k, v in regime.inputs(n).items()})
  loss = functools.partial(train.imitation_loss, normalization=train_cfg.loss_normalization)
  return Stage(
    label,
    name,
    members or [c.id for c in cells],
    steps,
    train.make_optimizer(train_cfg, steps, warmup),
    batches,
    loss,
    inputs,
    model,
    step_offset,
    cell_ids=[c.id for c in cells],
    schedule=train.make_schedule(train_cfg, steps, warmup),
    update=update,
    keep_optimizer=keep_optimizer,
  )


def saved_members(workdir, name):
  """The members of the stage's latest checkpoint, or None if it has none."""
  with checkpoints.StageCheckpoints(workdir, name, cleanup=False) as ckpt:  # the stage cleans up
    latest = ckpt.latest()
  return None if latest is None else list(latest[1]["members"])


def members_to_train(workdir, name, todo, pack):
  """The cells a stage trains: the unfinished ones, or all its checkpoint holds if it has one.

  Cells finished after a stage's last checkpoint keep training with the others on a resume, so the
  compiled program, and with it the result, is the one of an uninterrupted run.
  """
  saved = saved_members(workdir, name)
  if saved is None:
    return todo
  by_run = {c.id: c for c in pack}
  missing = [c.id for c in todo if c.id not in saved]
  if missing or any(r not in by_run for r in saved):
    raise ValueError(
      f"checkpoints/{name} holds cells {saved}, not {missing or 'this grid'}; use a new --workdir."
    )
  return [by_run[r] for r in saved]


class Trained(NamedTuple):
  """A finished stage: its models, the last step's `final` metrics per member, and its loss curve
  (steps (K,) and loss (K, E) at every logged step, kept across resumes); its final optimizer
  state if the stage keeps it (Stage.keep_optimizer), else None."""

  graphdef: object
  state: object
  final: dict
  curve: tuple
  opt_state: object = None


def _curve(logged):
  """(steps (K,), loss (K, E)) from [[step, [loss per member]], ...] as checkpoints hold it."""
  if not logged:  # a checkpoint written before curves were kept
    return np.zeros(0, np.int64), np.zeros((0, 0))
  return (np.array([s for s, _ in logged], np.int64), np.array([l for _, l in logged], np.float64))


def final_metrics(history, keys):
  last = history[-1] if history else {}
  return {k: np.asarray(last[k]) for k in keys if k in last}


def train_or_resume(config, workdir, mesh, stage, init, board=None, init_opt=None):
  """The stage's Trained models; init(shardings) gives the state_E a new stage starts from, and
  init_opt(shardings), if given, its optimizer state (else a fresh one).

  An on-policy stream's journal and the loss curve so far are saved with every checkpoint and
  restored with it.
  """
  t = config.train
  graphdef, abstract = stage.abstract
  abstract_opt = jax.eval_shape(
    jax.vmap(train.member_init(stage.optimizer, stage.update)), abstract
  )
  sh = sharding.PackShardings(
    mesh, sharding.rules_of(config.mesh), abstract, abstract_opt, stage.batches.shapes
  )
  if mesh.shape["ensemble"] > 1 and sh.spmd_axis is None:
    logging.warning(
      "%s: %d cells do not divide mesh.ensemble=%d, so every ensemble slice trains "
      "all of them; use a multiple (grid.max_pack_size helps)",
      stage.name,
      len(stage.members),
      mesh.shape["ensemble"],
    )
  target = sh.abstract(abstract, sh.state)
  journal = stage.batches.journal
  checkpoints.save_model_config(workdir, stage.name, stage.model)  # what load_cell rebuilds it from
  with checkpoints.StageCheckpoints(
    workdir, stage.name, t.checkpoint_every, t.checkpoints_to_keep, t.async_checkpoints
  ) as ckpt:
    latest, start, opt_state, logged = ckpt.latest(), 0, None, []
    if latest is not None:
      step, meta = latest
      logged = list(meta.get("curve", []))
      if list(meta["members"]) != list(stage.members):
        raise ValueError(
          f"checkpoint {ckpt.path} holds members {meta['members']}, not "
          f"{list(stage.members)}; use a new --workdir."
        )
      journal[:] = meta.get("journal", [])
      if meta.get("complete"):
        logging.info("%s: finished earlier, restored from %s", stage.name, ckpt.path)
        final = {k: np.asarray(v) for k, v in meta.get("final_losses", {}).items()}
        opt_target = sh.abstract(abstract_opt, sh.opt_state) if stage.keep_optimizer else None
        state, opt_state = ckpt.restore(step, target, opt_target)
        return Trained(graphdef, state, final, _curve(logged), opt_state)
      state, opt_state = ckpt.restore(step, target, sh.abstract(abstract_opt, sh.opt_state))
      start = step
      logging.info(
        "%s: resuming at step %d of %d from %s", stage.name, step, stage.steps, ckpt.path
      )
    else:
      state = init(sh)
      opt_state = None if init_opt is None else init_opt(sh)
    meta = {"members": list(stage.members), "steps": stage.steps, "complete": False}

    history = []
    curve = lambda: logged + [[h["step"], np.asarray(h["loss"]).tolist()] for h in history]

    def save(step, s, o):
      m = dict(meta, curve=curve())
      return ckpt.maybe_save(
        step,
        s,
        o,
        dict(m, journal=journal) if journal else m,
        before_save=lambda: train.check_finite(stage, step, s),
      )

    state, opt_state, history = train.train_stage(
      stage,
      state,
      opt_state=opt_state,
      start=start,
      shardings=sh,
      options=train.Options(t.log_every, board, save, t.divergence_factor),
      history=history,
    )
    train.check_finite(stage, stage.steps, state)  # never marked complete with a bad state
    final = final_metrics(history, stage.final)
    done = dict(
      meta, complete=True, final_losses={k: v.tolist() for k, v in final.items()}, curve=curve()
    )
    ckpt.save(stage.steps, state, opt_state, dict(done, journal=journal) if journal else done)
  return Trained(
    graphdef, state, final, _curve(done["curve"]), opt_state if stage.keep_optimizer else None
  )
