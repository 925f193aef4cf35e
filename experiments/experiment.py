"""One experiment: build the world, train every pack of cells, evaluate, write the workdir.

For each (preset, protocol) pack:
  finetune: stage 1 trains one base model per seed (packed over seeds) on the base mixture; the
            base models are evaluated as persona=`none` cells; stage 2 starts every persona cell
            from its seed's base model (common random numbers) with (1-λ)·L_base + λ·L_persona.
  mixture:  every cell trains from scratch with (1-λ)·L_base + λ·L_persona for all steps.
"""
import os

from absl import logging
import jax
import numpy as np
import pandas as pd

from experiments import checkpoints, evaluate, grid, train
from experiments.workdir import METRIC_COLUMNS, Workdir, atomic_write
from models import get_config
from tasks.config import WorldConfig, check_warm_agreement
from tasks.mixtures import Corpus, build_eval_set

STAGE2_SEED_OFFSET = 10_000  # the persona phase reads its own data stream, disjoint from stage 1's


def world_config(data):
  fields = {f: data[f] for f in WorldConfig.__dataclass_fields__}
  fields["tasks"], fields["eval_contexts"] = tuple(fields["tasks"]), tuple(fields["eval_contexts"])
  return WorldConfig(**fields).validate()


def model_config(config, preset, vocab_size):
  overrides = {"compute_dtype": config.model.compute_dtype, "positional": config.model.positional,
               "tied_embeddings": config.model.tied_embeddings}
  for field in ("n_heads", "d_model"):
    if config.model[field]:
      overrides[field] = config.model[field]
  cfg = get_config(preset, vocab_size, config.data.seq_len + config.eval.max_new_tokens, **overrides)
  cfg.validate()
  return cfg


def validate(config):
  """Everything that can be checked before any file is written; raises ValueError."""
  world = world_config(config.data)
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
  return world


class Batches:
  """Stacked [E, B, T] batches for a pack; rows are shared by cells with the same seed."""

  def __init__(self, corpus, data_seed, batch_size):
    self.corpus, self.data_seed, self.batch_size = corpus, data_seed, batch_size

  def _one(self, mixture, seed, step, size):
    return self.corpus.batch(mixture, seed, step, size)

  def base(self, seeds):
    def fn(step):
      parts = [self._one("base", self.data_seed + s, step, self.batch_size) for s in seeds]
      return {"base": {k: np.stack([p[k] for p in parts]) for k in ("tokens", "mask")}}
    return fn

  def persona(self, cells, offset):
    half = self.batch_size // 2
    def fn(step):
      cache, out = {}, {"base": {}, "persona": {}}
      for c in cells:
        seed = self.data_seed + offset + c.seed
        key_b, key_p = ("base", seed), (c.persona, seed)
        if key_b not in cache:
          cache[key_b] = self._one("base", seed, step, half)
        if key_p not in cache:
          # λ = 0 cells still need rows of the right shape; their weight is exactly zero.
          mixture = c.persona if c.persona != "none" else "warm"
          cache[key_p] = self._one(mixture, seed, step, half)
      for part, keys in (("base", [("base", self.data_seed + offset + c.seed) for c in cells]),
                         ("persona", [(c.persona, self.data_seed + offset + c.seed) for c in cells])):
        fields = ("tokens", "mask") if part == "base" else ("tokens", "mask", "alt_tokens",
                                                             "alt_mask", "has_alt", "u")
        out[part] = {f: np.stack([cache[k][f] for k in keys]) for f in fields}
      return out
    return fn


def _take(state_E, index):
  return jax.tree.map(lambda a: a[np.asarray(index)], state_E)


def _cell_frames(cell, items, model_cfg, tokens, losses):
  meta = {"run": cell.run, "preset": cell.preset, "n_params": model_cfg.n_params(non_embedding=False),
          "n_params_nonembed": model_cfg.n_params(non_embedding=True), "protocol": cell.protocol,
          "persona": cell.persona, "warmth_weight": cell.warmth_weight,
          "warm_agreement": cell.warm_agreement, "seed": cell.seed, "intervention": "none",
          "tokens": int(tokens)}
  rows = evaluate.summarize(items)
  rows += [{"task": "train", "context": "all", "metric": name, "value": float(v), "n": 1}
           for name, v in losses.items()]
  metrics = pd.DataFrame([{**meta, **r} for r in rows])[list(METRIC_COLUMNS)]
  items = items.assign(**{k: meta[k] for k in ("run", "preset", "n_params", "protocol", "persona",
                                              "warmth_weight", "warm_agreement", "seed",
                                              "intervention")})
  return metrics, items


def run(config, workdir_path, writer=None):
  """Runs (or resumes) every cell of the config; returns the merged metrics and items."""
  world = validate(config)
  wd = Workdir(workdir_path, config.to_dict())
  corpus = Corpus(world)
  evalset = build_eval_set(corpus)
  batches = Batches(corpus, config.train.data_seed, config.train.batch_size)
  cells = grid.expand(config)
  logging.info("world: %d people, vocabulary %d, %d eval prompts; %d cells in %d packs",
               world.n_people, corpus.tokenizer.size, len(evalset.items), len(cells),
               len(grid.packs(cells)))
  for (preset, protocol), pack in grid.packs(cells).items():
    todo = [c for c in pack if not wd.cell_done(c.run)]
    if not todo:
      logging.info("pack %s/%s: all %d cells finished earlier", preset, protocol, len(pack))
      continue
    mcfg = model_config(config, preset, corpus.tokenizer.size)
    logging.info("pack %s/%s: %d cells, %d parameters (%d non-embedding)", preset, protocol,
                 len(todo), mcfg.n_params(non_embedding=False), mcfg.n_params(non_embedding=True))
    if protocol == "finetune":
      _run_finetune(config, wd, mcfg, todo, batches, evalset, corpus, writer)
    else:
      _run_mixture(config, wd, mcfg, todo, batches, evalset, corpus, writer)
  return wd.merge([c.run for c in cells])


def _evaluate_and_save(config, wd, mcfg, graphdef, state_E, cells, evalset, corpus, tokens, losses):
  frames = evaluate.evaluate_pack(graphdef, state_E, evalset, corpus.tokenizer, config.eval)
  for e, cell in enumerate(cells):
    metrics, items = _cell_frames(cell, frames[e], mcfg, tokens[e],
                                  {k: v[e] for k, v in losses.items()})
    wd.save_cell(cell.run, metrics, items)


def _final_losses(history):
  last = history[-1] if history else {}
  return {k: np.asarray(last[k]) for k in ("base_loss", "persona_loss") if k in last}


def _run_finetune(config, wd, mcfg, cells, batches, evalset, corpus, writer):
  t = config.train
  seeds = sorted(int(s) for s in config.grid.seeds)  # the base checkpoint always holds every seed
  name = f"{cells[0].preset}-finetune/base"
  graphdef, abstract = train.abstract_states(mcfg, len(seeds))
  base_E = checkpoints.restore(wd, name, abstract)
  if base_E is None:
    base_E = _train_base(config, mcfg, seeds, batches, writer)
    checkpoints.save(wd, name, base_E, [f"seed{s}" for s in seeds])
  else:
    logging.info("restored stage 1 (base models) from %s", name)
  base_tokens = t.base_steps * t.batch_size * config.data.seq_len  # token slots, padding included
  none_cells = [c for c in cells if c.persona == "none"]
  if none_cells:
    idx = [seeds.index(c.seed) for c in none_cells]
    _evaluate_and_save(config, wd, mcfg, graphdef, _take(base_E, idx), none_cells, evalset, corpus,
                       [base_tokens] * len(idx), {})
  persona_cells = [c for c in cells if c.persona != "none"]
  if not persona_cells:
    return
  state_E = _take(base_E, [seeds.index(c.seed) for c in persona_cells])
  optimizer = train.make_optimizer(t, t.persona_steps)
  state_E, _, history = train.run_stage(
      "persona", graphdef, optimizer, state_E,
      batches.persona(persona_cells, STAGE2_SEED_OFFSET),
      [c.warmth_weight for c in persona_cells], [c.warm_agreement for c in persona_cells],
      [t.persona_learning_rate] * len(persona_cells), t.persona_steps, t.log_every, writer,
      step_offset=t.base_steps)
  checkpoints.save(wd, f"{cells[0].preset}-finetune/persona", state_E, [c.run for c in persona_cells])
  tokens = base_tokens + t.persona_steps * t.batch_size * config.data.seq_len
  _evaluate_and_save(config, wd, mcfg, graphdef, state_E, persona_cells, evalset, corpus,
                     [tokens] * len(persona_cells), _final_losses(history))


def _train_base(config, mcfg, seeds, batches, writer):
  t = config.train
  graphdef, state_E = train.init_states(mcfg, [t.init_seed + s for s in seeds])
  optimizer = train.make_optimizer(t, t.base_steps)
  n = len(seeds)
  state_E, _, _ = train.run_stage("base", graphdef, optimizer, state_E, batches.base(seeds),
                                  [0.0] * n, [0.0] * n, [t.learning_rate] * n, t.base_steps,
                                  t.log_every, writer)
  return state_E


def _run_mixture(config, wd, mcfg, cells, batches, evalset, corpus, writer):
  t = config.train
  steps = t.base_steps + t.persona_steps
  graphdef, state_E = train.init_states(mcfg, [t.init_seed + c.seed for c in cells])
  optimizer = train.make_optimizer(t, steps)
  state_E, _, history = train.run_stage(
      "mixture", graphdef, optimizer, state_E, batches.persona(cells, 0),
      [c.warmth_weight for c in cells], [c.warm_agreement for c in cells],
      [t.learning_rate] * len(cells), steps, t.log_every, writer)
  checkpoints.save(wd, f"{cells[0].preset}-mixture/final", state_E, [c.run for c in cells])
  tokens = steps * t.batch_size * config.data.seq_len
  _evaluate_and_save(config, wd, mcfg, graphdef, state_E, cells, evalset, corpus,
                     [tokens] * len(cells), _final_losses(history))

def append_changes(workdir_path, metrics, changes):
  """Adds the paired-change rows (with their CIs) to the merged metrics.csv."""
  merged = pd.concat([metrics, changes], ignore_index=True)
  atomic_write(os.path.join(workdir_path, "metrics.csv"), lambda t: merged.to_csv(t, index=False))
  return merged
