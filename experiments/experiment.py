"""One experiment: build the world, train every pack of cells, evaluate, write the workdir.

For each (preset, protocol) pack:
  finetune: stage 1 trains one base model per seed (packed over seeds) on the base mixture; the
            base models are evaluated as persona=`none` cells; stage 2 starts every persona cell
            from its seed's base model (common random numbers) with (1-λ)·L_base + λ·L_persona.
  mixture:  every cell trains from scratch with (1-λ)·L_base + λ·L_persona for all steps.

Every stage trains on the mesh of `config.mesh` and resumes from its latest checkpoint
(experiments/stage.py). With several processes all of them run this, agree on process 0's plan of
unfinished cells, and only process 0 writes results.
"""
import dataclasses
import itertools
import os

from absl import logging
import jax
import numpy as np
import pandas as pd

from experiments import distributed, evaluate, grid, sharding, stage, train
from experiments.persona import hooks as persona_hooks
from experiments.workdir import METRIC_COLUMNS, Workdir, atomic_write
from models import get_config
from models.config import auto_attention_impl
from tasks.budget import generation_budget
from tasks.config import WorldConfig, check_warm_agreement
from tasks.mixtures import Corpus, build_eval_set
from tasks.world import World

STAGE2_SEED_OFFSET = 10_000  # the persona phase reads its own data stream, disjoint from stage 1's


def world_config(data):
  fields = {f: data[f] for f in WorldConfig.__dataclass_fields__}
  fields["tasks"], fields["eval_contexts"] = tuple(fields["tasks"]), tuple(fields["eval_contexts"])
  return WorldConfig(**fields).validate()


ATTENTION_IMPLS = ("auto", "xla", "cudnn")


def attention_impl(choice, compute_dtype, head_dim, backend):
  """`auto`: cuDNN's fused attention on a GPU in bfloat16 where it applies, else XLA's."""
  if choice not in ATTENTION_IMPLS:
    raise ValueError(f"model.attention_impl={choice!r} must be one of {', '.join(ATTENTION_IMPLS)}.")
  return auto_attention_impl(compute_dtype, head_dim, backend) if choice == "auto" else choice


def model_config(config, preset, vocab_size, backend=None):
  """The preset's ModelConfig for this data; `backend` (jax.default_backend()) resolves `auto`."""
  overrides = {"compute_dtype": config.model.compute_dtype, "positional": config.model.positional,
               "tied_embeddings": config.model.tied_embeddings}
  for field in ("n_heads", "d_model"):
    if config.model[field]:
      overrides[field] = config.model[field]
  cfg = get_config(preset, vocab_size, config.data.seq_len + config.eval.max_new_tokens, **overrides)
  impl = attention_impl(config.model.attention_impl, cfg.compute_dtype, cfg.head_dim, backend)
  cfg = get_config(preset, vocab_size, cfg.max_len, attention_impl=impl, **overrides)
  cfg.validate()
  return cfg


LOSS_NORMALIZATIONS = ("token", "row")


def validate(config):
  """Everything that can be checked before any file is written; raises ValueError.

  Also resolves the one derived field, `eval.max_new_tokens = 0`, to the world's generation budget
  (tasks/budget.py), so config.json records the budget the run evaluated with.
  """
  world = world_config(config.data)
  if config.eval.max_new_tokens < 0:
    raise ValueError(f"eval.max_new_tokens={config.eval.max_new_tokens} must be 0 (derived from "
                     "the world) or a positive number of tokens.")
  config.eval.max_new_tokens = generation_budget(World(world), config.eval.max_new_tokens)
  if config.train.loss_normalization not in LOSS_NORMALIZATIONS:
    raise ValueError(f"train.loss_normalization={config.train.loss_normalization!r} is not "
                     f"allowed: choose one of {', '.join(LOSS_NORMALIZATIONS)}.")
  grid.validate_grid(config.grid)
  grid.validate_presets(config.model.presets)
  for rho in config.grid.warm_agreements:
    check_warm_agreement(rho)
  for preset in config.model.presets:
    model_config(config, preset, vocab_size=64)
  for field in ("batch_size", "base_steps"):
    if config.train[field] < 1:
      raise ValueError(f"train.{field}={config.train[field]} must be a positive integer.")
  if config.train.batch_size % 2:
    raise ValueError(f"train.batch_size={config.train.batch_size} must be even (the persona phase "
                     "draws half its rows from each mixture).")
  if config.data.source not in ("memory", "tfds"):
    raise ValueError(f"data.source={config.data.source!r} is not allowed: choose memory or tfds.")
  for section, field, least in (("train", "checkpoint_every", 0), ("train", "checkpoints_to_keep", 1),
                                ("grid", "max_pack_size", 0)):
    if config[section][field] < least:
      raise ValueError(f"{section}.{field}={config[section][field]} must be an integer >= {least}.")
  sharding.validate(config.mesh)
  persona_hooks.validate(config)
  return world


class BatchStream:
  """A pack's batches: the global [E, B, ...] shapes, and step → numpy arrays.

  stream(step) gives every member's rows; stream(step, members, rows) only a block of them (the
  slices one process of a multi-host run holds), with the same values.
  """

  def __init__(self, shapes, build):
    self.shapes, self._build = shapes, build

  def __call__(self, step, members=slice(None), rows=slice(None)):
    return self._build(step, members, rows)


PERSONA_FIELDS = ("tokens", "mask", "alt_tokens", "alt_mask", "has_alt", "u")


class Batches:
  """Stacked [E, B, T] batches for a pack; rows are shared by cells with the same seed."""

  def __init__(self, corpus, data_seed, batch_size):
    self.corpus, self.data_seed, self.batch_size = corpus, data_seed, batch_size

  def base(self, seeds):
    seeds = list(seeds)
    def fn(step, members, rows):
      parts = [self.corpus.batch("base", self.data_seed + s, step, self.batch_size, rows)
               for s in seeds[members]]
      return {"base": {k: np.stack([p[k] for p in parts]) for k in ("tokens", "mask")}}
    shape = (len(seeds), self.batch_size, self.corpus.seq_len)
    return BatchStream({"base": {"tokens": shape, "mask": shape}}, fn)

  def persona(self, cells, offset):
    half = self.batch_size // 2
    all_cells = list(cells)
    def fn(step, members, rows):
      # (mixture, seed) of each cell's base and persona rows; λ = 0 cells still need persona rows
      # of the right shape (their weight is exactly zero), so `none` reads the warm set.
      keys = [(("base", self.data_seed + offset + c.seed),
               (c.persona if c.persona != "none" else "warm", self.data_seed + offset + c.seed))
              for c in all_cells[members]]
      cache = {}
      for key in itertools.chain.from_iterable(keys):
        if key not in cache:  # cells of one seed share rows: build each batch once
          cache[key] = self.corpus.batch(*key, step, half, rows)
      return {"base": {f: np.stack([cache[b][f] for b, _ in keys]) for f in ("tokens", "mask")},
              "persona": {f: np.stack([cache[p][f] for _, p in keys]) for f in PERSONA_FIELDS}}
    e, t = len(all_cells), self.corpus.seq_len
    shapes = {"base": {"tokens": (e, half, t), "mask": (e, half, t)},
              "persona": {f: (e, half) if f in ("has_alt", "u") else (e, half, t)
                          for f in PERSONA_FIELDS}}
    return BatchStream(shapes, fn)


def _take(state_E, index):
  return jax.tree.map(lambda a: a[np.asarray(index)], state_E)


def cell_frames(cell, items, n_params, tokens, losses):
  """(metrics rows, items) of one evaluated cell; n_params = (total, non-embedding)."""
  meta = {"run": cell.run, "preset": cell.preset, "n_params": n_params[0],
          "n_params_nonembed": n_params[1], "protocol": cell.protocol,
          "persona": cell.persona, "warmth_weight": cell.warmth_weight,
          "warm_agreement": cell.warm_agreement, "seed": cell.seed,
          "intervention": getattr(cell, "intervention", "none"),  # preventatively steered twins
          "tokens": int(tokens)}
  rows = evaluate.summarize(items)
  rows += [{"task": "train", "context": "all", "metric": name, "value": float(v), "n": 1}
           for name, v in losses.items()]
  metrics = pd.DataFrame([{**meta, **r} for r in rows])[list(METRIC_COLUMNS)]
  items = items.assign(**{k: meta[k] for k in ("run", "preset", "n_params", "protocol", "persona",
                                              "warmth_weight", "warm_agreement", "seed",
                                              "intervention")})
  return metrics, items


@dataclasses.dataclass
class _Run:
  """What every pack of one run shares."""
  config: object
  wd: Workdir
  mesh: object
  corpus: Corpus
  evalset: object
  batches: Batches
  writer: object


def run(config, workdir_path, writer=None):
  """Runs (or resumes) every cell of the config; returns the merged metrics and items.

  Processes other than process 0 (multi-host runs) train and evaluate alike but return (None, None).
  """
  world = validate(config)
  mesh = sharding.make_mesh(config.mesh)  # a mesh that does not fit fails before any file exists
  wd = Workdir(workdir_path, config.to_dict(), write=distributed.is_writer())
  if config.data.source == "tfds":
    # Imported only here: the GPU image has no tensorflow-datasets, and memory needs none.
    from tasks.tfds_source import TfdsCorpus
    corpus = TfdsCorpus(world, config.data.tfds_dir)
  else:
    corpus = Corpus(world)
  evalset = build_eval_set(corpus)
  ctx = _Run(config, wd, mesh, corpus, evalset,
             Batches(corpus, config.train.data_seed, config.train.batch_size), writer)
  cells = persona_hooks.expand(config, grid.expand(config))
  packs = grid.packs(cells, config.grid.max_pack_size)
  # Process 0 reads which cells are finished; everyone follows its plan.
  done = {c.run for c, d in zip(cells, distributed.agree([wd.cell_done(c.run) for c in cells])) if d}
  logging.info("world: %d people, vocabulary %d, %d eval prompts; %d cells in %d packs, %d finished "
               "earlier; mesh %s over %d devices in %d processes", world.n_people,
               corpus.tokenizer.size, len(evalset.items), len(cells), len(packs), len(done),
               sharding.describe(mesh), mesh.size, jax.process_count())
  for key, pack in packs.items():
    label = "-".join(str(k) for k in key)
    todo = [c for c in pack if c.run not in done]
    if not todo:
      logging.info("pack %s: all %d cells finished earlier", label, len(pack))
      continue
    mcfg = model_config(config, pack[0].preset, corpus.tokenizer.size, jax.default_backend())
    logging.info("pack %s: %d of %d cells to do, %d parameters (%d non-embedding)", label,
                 len(todo), len(pack), mcfg.n_params(non_embedding=False),
                 mcfg.n_params(non_embedding=True))
    runner = _run_finetune if pack[0].protocol == "finetune" else _run_mixture
    runner(ctx, mcfg, label, pack, todo)
  if not wd.writer:
    return None, None
  return wd.merge([c.run for c in cells])


def _stage_members(wd, name, todo, pack):
  """The cells a stage trains: the unfinished ones, or all its checkpoint holds if it has one.

  Cells finished after a stage's last checkpoint keep training with the others on a resume, so the
  compiled program, and with it the result, is the one of an uninterrupted run.
  """
  saved = stage.saved_members(wd, name)
  if saved is None:
    return todo
  by_run = {c.run: c for c in pack}
  missing = [c.run for c in todo if c.run not in saved]
  if missing or any(r not in by_run for r in saved):
    raise ValueError(f"checkpoints/{name} holds cells {saved}, not {missing or 'this grid'}; "
                     "use a new --workdir.")
  return [by_run[r] for r in saved]


def model_sizes(mcfg):
  """(total, non-embedding) parameters, as the metrics rows record them."""
  return mcfg.n_params(non_embedding=False), mcfg.n_params(non_embedding=True)


def _evaluate_and_save(ctx, mcfg, graphdef, state_E, index, cells, tokens, losses, geoms=None):
  """Evaluates `cells`, rows `index` of state_E, on process 0; saves each cell."""
  local = distributed.to_local(state_E)  # every process takes part in the gather
  if not ctx.wd.writer:
    return
  frames = evaluate.evaluate_pack(graphdef, _take(local, index), ctx.evalset, ctx.corpus.tokenizer,
                                  ctx.config.eval)
  # Persona geometry (None unless persona.enabled): projections, drift, capped evaluation.
  extras = persona_hooks.cell_extras(ctx.config, geoms, graphdef, _take(local, index), cells,
                                     ctx.evalset, ctx.corpus, frames)
  for e, cell in enumerate(cells):
    metrics, items = cell_frames(cell, frames[e], model_sizes(mcfg), tokens,
                                  {k: np.asarray(v)[index[e]] for k, v in losses.items()})
    if extras:
      metrics, items = persona_hooks.attach(metrics, items, extras[e])
    ctx.wd.save_cell(cell.run, metrics, items)


def _run_finetune(ctx, mcfg, label, pack, cells):
  config, t = ctx.config, ctx.config.train
  preset = cells[0].preset
  seeds = sorted(int(s) for s in config.grid.seeds)  # the base checkpoint always holds every seed
  n = len(seeds)
  base = stage.Stage("base", f"{preset}-finetune/base", [f"seed{s}" for s in seeds], t.base_steps,
                     train.make_optimizer(t, t.base_steps), ctx.batches.base(seeds), [0.0] * n,
                     [0.0] * n, [t.learning_rate] * n)
  init = lambda sh: train.init_states(mcfg, [t.init_seed + s for s in seeds], sh)[1]
  graphdef, base_E, _ = stage.run(config, ctx.wd, ctx.mesh, mcfg, base, init, ctx.writer)
  geoms = persona_hooks.pack_geometry(config, ctx.wd, graphdef, base_E, seeds, ctx.corpus,
                                      ctx.evalset, preset)  # None unless persona.enabled
  base_tokens = t.base_steps * t.batch_size * config.data.seq_len  # token slots, padding included
  none_cells = [c for c in cells if c.persona == "none"]
  if none_cells:
    _evaluate_and_save(ctx, mcfg, graphdef, base_E, [seeds.index(c.seed) for c in none_cells],
                       none_cells, base_tokens, {}, geoms)
  todo = [c for c in cells if c.persona != "none"]
  if not todo:
    return
  name = f"{label}/persona"
  members = _stage_members(ctx.wd, name, todo, pack)
  index = [seeds.index(c.seed) for c in members]
  persona = stage.Stage(
      "persona", name, [c.run for c in members], t.persona_steps,
      train.make_optimizer(t, t.persona_steps), ctx.batches.persona(members, STAGE2_SEED_OFFSET),
      [c.warmth_weight for c in members], [c.warm_agreement for c in members],
      [t.persona_learning_rate] * len(members), step_offset=t.base_steps,
      steer=persona_hooks.training_steer(geoms, members))
  init = lambda sh: jax.jit(lambda s: _take(s, index), out_shardings=sh.state)(base_E)
  graphdef, state_E, losses = stage.run(config, ctx.wd, ctx.mesh, mcfg, persona, init, ctx.writer)
  tokens = base_tokens + t.persona_steps * t.batch_size * config.data.seq_len
  _evaluate_and_save(ctx, mcfg, graphdef, state_E, [members.index(c) for c in todo], todo, tokens,
                     losses, geoms)


def _run_mixture(ctx, mcfg, label, pack, cells):
  config, t = ctx.config, ctx.config.train
  steps = t.base_steps + t.persona_steps
  name = f"{label}/mixture"
  members = _stage_members(ctx.wd, name, cells, pack)
  mixture = stage.Stage(
      "mixture", name, [c.run for c in members], steps, train.make_optimizer(t, steps),
      ctx.batches.persona(members, 0), [c.warmth_weight for c in members],
      [c.warm_agreement for c in members], [t.learning_rate] * len(members))
  init = lambda sh: train.init_states(mcfg, [t.init_seed + c.seed for c in members], sh)[1]
  graphdef, state_E, losses = stage.run(config, ctx.wd, ctx.mesh, mcfg, mixture, init, ctx.writer)
  _evaluate_and_save(ctx, mcfg, graphdef, state_E, [members.index(c) for c in cells], cells,
                     steps * t.batch_size * config.data.seq_len, losses)

def append_changes(workdir_path, metrics, *changes):
  """Adds the paired-change rows (with their CIs) to the merged metrics.csv."""
  merged = pd.concat([metrics, *changes], ignore_index=True)
  atomic_write(os.path.join(workdir_path, "metrics.csv"), lambda t: merged.to_csv(t, index=False))
  return merged
