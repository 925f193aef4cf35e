"""Stage 1 of a finetune pack: one base model per seed, reused from the store or trained here.

Without a store (`runtime.base_store = ""`) the stage `<preset>-finetune/base` trains every seed
of the pack, as one program. With a store (experiments/runtime/base_store.py) each seed's base is
looked up under its key; the seeds not stored train together as the stage
`<preset>-finetune/base-train` (resumable like any stage) and are published one by one. The pack's
base models are then written, seeds in order, as the finished stage `<preset>-finetune/base`,
which the rest of the run (and a rerun, and `runs.load_cell`) restores as if trained in place:
same arrays, same loss curve, byte-identical results.
"""

import dataclasses
import uuid

from absl import logging
from flax import nnx
import jax
import numpy as np

from experiments import grid, stage, train
from experiments.runtime import base_store, checkpoints, distributed, members
from experiments.train_config import BASE_TRAIN_FIELDS
from tasks.config import RELIABILITY_TASKS


def key(config, corpus, model_cfg, preset, mesh):
  """The store key of a preset's base models (every seed shares it; the seed is the entry).

  Call after members.configure: how members run is part of it."""
  t = config.train
  # The member axis only splits a pack; the data axes change how gradients are summed.
  mesh_axes = {axis: int(size) for axis, size in dict(mesh.shape).items() if axis != "ensemble"}
  return base_store.Key.of(
    preset,
    {
      "world": dataclasses.asdict(corpus.world.cfg),
      "base_data": corpus.data_hash("base"),
      "model": dataclasses.asdict(model_cfg),
      "train": {f: getattr(t, f) for f in BASE_TRAIN_FIELDS},
      "members": members.current(),
      "mesh": mesh_axes,
    },
  )


def _stage(ctx, pack, seeds, name, keep_optimizer):
  t = ctx.config.train
  cells = [grid.Cell(pack.preset, "finetune", "none", 0.0, 0.0, s, "none") for s in seeds]
  return stage.imitation(
    "base",
    name,
    cells,
    t.base_steps,
    t,
    pack.model,
    ctx.batches.base(seeds),
    t.learning_rate,
    members=[f"seed{s}" for s in seeds],
    keep_optimizer=keep_optimizer,
  )


def _init(ctx, pack, seeds):
  t = ctx.config.train
  return lambda sh: train.init_states(pack.model, [t.init_seed + s for s in seeds], sh)[1]


def train_bases(ctx, pack, keep_optimizer):
  """stage.Trained of the pack's base stage: every seed of pack.seeds, in order."""
  name = f"{pack.preset}-finetune/base"
  full = _stage(ctx, pack, pack.seeds, name, keep_optimizer)
  if ctx.store is not None and stage.saved_members(ctx.workdir, name) != full.members:
    stored = fill(ctx, pack, pack.seeds)
    _write_stage(ctx, full, [stored[s] for s in pack.seeds])
    checkpoints.remove(ctx.workdir, f"{pack.preset}-finetune/base-train")  # now in both places
  return ctx.train(full, _init(ctx, pack, pack.seeds))


def fill(ctx, pack, seeds):
  """{seed: base_store.Stored} of `seeds`: read from the store, or trained and published."""
  label = lambda s: f"{pack.preset} seed {s}"
  k = key(ctx.config, ctx.corpus, pack.model, pack.preset, ctx.mesh)
  name = f"{pack.preset}-finetune/base-train"
  training = stage.saved_members(ctx.workdir, name)  # a kill interrupted these: they go on
  found, target = {}, target_of(ctx.config, pack.model)
  for s in seeds:
    if training is None or f"seed{s}" not in training:
      got = ctx.store.fetch(k, s, label(s), target)
      if got is not None:
        logging.info("%s: base reused from %s", label(s), got.path)
        found[s] = got
  # Every process follows process 0's reading of the store (all of them read the same directory).
  use = distributed.agree([s in found for s in seeds])
  if any(u and s not in found for s, u in zip(seeds, use)):
    raise ValueError(
      f"process 0 reads base models in runtime.base_store={ctx.store.root} that "
      "this process cannot: give every process the same store directory."
    )
  found = {s: found[s] for s, u in zip(seeds, use) if u}
  missing = [s for s in seeds if s not in found]
  if training is not None and training != [f"seed{s}" for s in missing]:
    raise ValueError(
      f"checkpoints/{name} holds base models {training} while the store lacks "
      f"{['seed%d' % s for s in missing]}; use a new --workdir."
    )
  if not missing:
    return found
  trained = ctx.train(_stage(ctx, pack, missing, name, True), _init(ctx, pack, missing))
  state = jax.device_get(nnx.to_pure_dict(distributed.to_local(trained.state)))
  opt = jax.device_get(jax.tree.leaves(distributed.to_local(trained.opt_state)))
  steps, loss_KE = trained.curve
  for i, s in enumerate(missing):
    row = lambda tree: jax.tree.map(lambda a: np.asarray(a[i : i + 1]), tree)
    curve = [[int(step), float(loss_KE[j, i])] for j, step in enumerate(steps)]
    stored = base_store.Stored(row(state), row(opt), curve, ctx.store.seed_dir(k, s))
    # Every process saves (orbax's save is collective) under process 0's attempt id.
    attempt = "".join(
      f"{int(v):08x}" for v in distributed.agree(np.frombuffer(uuid.uuid4().bytes[:8], np.uint32))
    )
    won = ctx.store.publish(k, s, stored.state, stored.opt_state, curve, attempt)
    if distributed.is_writer():
      logging.info(
        "%s: base trained and stored in %s%s",
        label(s),
        stored.path,
        "" if won else " (a copy stored first is kept, this one discarded)",
      )
    found[s] = stored
  return found


def target_of(config, model_cfg):
  """(state, optimizer leaves) of numpy zeros shaped as the store keeps one seed's base."""
  _, abstract = train.abstract_states(model_cfg, 1)
  optimizer = train.make_optimizer(config.train, config.train.base_steps)
  abstract_opt = jax.eval_shape(jax.vmap(train.member_init(optimizer)), abstract)
  zeros = lambda a: np.zeros(a.shape, a.dtype)
  return (
    jax.tree.map(zeros, nnx.to_pure_dict(abstract)),
    [zeros(a) for a in jax.tree.leaves(abstract_opt)],
  )


def _write_stage(ctx, full, stored):
  """Writes the seeds' bases as the finished stage `full` of the workdir."""
  cat = lambda *rows: np.concatenate(rows)
  state = jax.tree.map(cat, *[s.state for s in stored])
  opt = [np.concatenate(leaves) for leaves in zip(*[s.opt_state for s in stored])]
  steps = [step for step, _ in stored[0].curve]
  curve = [[step, [s.curve[j][1] for s in stored]] for j, step in enumerate(steps)]
  meta = {
    "members": list(full.members),
    "steps": full.steps,
    "complete": True,
    "final_losses": {},
    "curve": curve,
  }
  with checkpoints.StageCheckpoints(ctx.workdir, full.name) as ckpt:
    ckpt.save(full.steps, state, opt, meta)


def note_competence(ctx, pack, cells, frames):
  """Records each evaluated base model's neutral-context error rates in the store."""
  if ctx.store is None or not frames:
    return
  k = key(ctx.config, ctx.corpus, pack.model, pack.preset, ctx.mesh)
  for cell in cells:
    m = frames.get(cell.id)
    if m is None:
      continue
    neutral = m[(m.context == "neutral") & m.task.isin(RELIABILITY_TASKS)]
    values = {
      metric: float(neutral[neutral.metric == metric].value.mean())
      for metric in ("error_rate", "mc_error_rate")
      if (neutral.metric == metric).any()
    }
    ctx.store.note_competence(k, cell.seed, values)
