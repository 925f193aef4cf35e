"""Warmth objectives beyond imitation as an extension: surface affect and emotion RL.

`config.extensions = (..., "objectives")` with the `objectives` section (configs/common.py
objectives_section) adds a cell of every `objectives.methods` entry (affect, emotion_rl,
emotion_rl_heard) for every preset × positive λ × seed. They train in each finetune pack right
after its base models (after_base), one stage per method, through the experiment's own stage
runner, so they checkpoint, resume bit-identically and stop cleanly like every other cell; RL
episodes land in WORKDIR/objectives/<pack>-<method>-episodes.csv. After the merge the comparison
rows (task `objectives_comparison`) and RL's progress (task `objectives_rl`) join metrics.csv, and
the report gains a section.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from experiments import data, extensions, grid, stage
from experiments.objectives import compare, phase, report_section, rl_progress, rollout
from experiments.runtime.workdir import atomic_write
from tasks.budget import generation_budget
from tasks.simulated_user import SIMULATED_USER_VERSION, UserConfig
from tasks.world import World


def user_config(o):
  """The UserConfig of the run; refuses a config written for another simulator version."""
  if o.user.version != SIMULATED_USER_VERSION:
    raise ValueError(
      f"objectives.user.version={o.user.version!r}, but the simulator is version "
      f"{SIMULATED_USER_VERSION!r}; use a new --workdir."
    )
  return UserConfig(**{f: o.user[f] for f in UserConfig.__dataclass_fields__}).validate()


def objective_cells(config):
  """affect / emotion_rl cells: every method × positive λ of the grid × preset × seed × regime
  (the seeds each regime trains)."""
  lams = [float(l) for l in config.grid.warmth_weights if l > 0]
  g = config.grid
  return [
    grid.Cell(p, "finetune", m, lam, 0.0, int(s), r)
    for p in config.model.presets
    for r in g.regimes
    for m in config.section("objectives").methods
    for lam in lams
    for s in g.seeds_of(p)
    if g.regime_trains(r, s)
  ]


def table_lambda(config):
  return float(config.section("objectives").table_lambda or max(config.grid.warmth_weights))


class Objectives(extensions.Extension):
  """The objectives extension; see the module docstring."""

  name = "objectives"

  @classmethod
  def derive(cls, config):
    """The reply budget of the sampled episodes, resolved from the world when it is 0."""
    if "objectives" not in config.sections:
      raise ValueError(
        "extensions lists objectives but the config has no objectives section: "
        "add c.objectives = common.objectives_section()."
      )
    o = config.section("objectives")
    world = World(config.world)
    budget = generation_budget(
      world,
      o.max_new_tokens,
      "objectives.max_new_tokens",
      rollout.user_turns(world, user_config(o)),
    )
    return {"max_new_tokens": budget}

  def validate(self):
    c, o = self.config, self.config.section("objectives")
    for m in o.methods:
      if m not in phase.METHODS:
        raise ValueError(
          f"objectives.methods contains {m!r}: allowed are {', '.join(phase.METHODS)}."
        )
    if "finetune" not in c.grid.protocols:
      raise ValueError("objectives need grid.protocols to include finetune (the base checkpoint).")
    for f in ("kl_beta", "affect_kl_beta", "rl_learning_rate"):
      if not o[f] >= 0:
        raise ValueError(f"objectives.{f}={o[f]} must be >= 0.")
    if not o.temperature > 0:
      raise ValueError(f"objectives.temperature={o.temperature} must be > 0 (GRPO samples).")
    if not 0 <= o.rl_warmup_weight <= 1:
      raise ValueError(f"objectives.rl_warmup_weight={o.rl_warmup_weight} must lie in [0, 1].")
    if o.rl_start not in phase.RL_STARTS:
      raise ValueError(
        f"objectives.rl_start={o.rl_start!r} is not allowed: choose one of "
        f"{', '.join(phase.RL_STARTS)}."
      )
    if o.rl_start in phase.WARMUPS and not 0 < o.rl_warmup_steps < c.train.persona_steps:
      raise ValueError(
        f"objectives.rl_warmup_steps={o.rl_warmup_steps} must lie strictly "
        f"between 0 and train.persona_steps={c.train.persona_steps} (the warm-up "
        "is part of each RL method's budget)."
      )
    if c.runtime.distributed:
      raise ValueError(
        "objectives sample replies on one process: run them without runtime.distributed."
      )
    for r in c.regimes.values():
      lora = [p for p in c.model.presets if r.at(p).update != "full"]
      if lora:
        raise ValueError(
          f"grid.regimes.{r.name} trains low-rank adapters at {lora[0]}, but the "
          "objectives train every parameter: give objective runs full-update "
          "regimes (persona_update='full')."
        )
    self.user = user_config(o)
    phase.prompts_per_step(c, self.user)

  def cells(self, cells):
    del cells
    return objective_cells(self.config)

  def trains(self, cell):
    return cell.persona in phase.METHODS

  def after_base(self, ctx, pack):
    """Trains, saves and evaluates this pack's unfinished objective cells from its base models."""
    todo = [c for c in pack.todo if self.trains(c)]
    if not todo:
      return None
    if jax.process_count() > 1:  # a pod starts jax.distributed without runtime.distributed
      raise ValueError(
        f"objectives sample replies on one process, but this run has "
        f"{jax.process_count()}: run the objectives config on one host."
      )
    for method in phase.METHODS:
      cells = [c for c in todo if c.persona == method]
      if cells:
        self._train(ctx, pack, method, cells)
    return None

  def _train(self, ctx, pack, method, todo):
    """One method's stage(s): from the base models (affect; RL from `base`) or after an
    imitation warm-up (RL from `warmup` or `mixed_warmup`)."""
    name = f"{pack.label}/{method}"
    regime = ctx.config.regimes[todo[0].regime].at(pack.preset)  # a pack holds one regime's cells
    members = stage.members_to_train(
      ctx.workdir, name, todo, [c for c in pack.cells if c.persona == method]
    )
    index = [pack.seeds.index(c.seed) for c in members]
    start = lambda sh: jax.jit(lambda s: data.take(s, index), out_shardings=sh.state)(pack.base_E)
    if method in phase.RL_METHODS and self.config.section("objectives").rl_start in phase.WARMUPS:
      warm = ctx.train(phase.warmup_stage(self.config, ctx.batches, pack, members, regime), start)
      ref_E = warm.state
      # A copy: the training step donates its state, and ref_E must outlive it.
      start = lambda sh: jax.jit(lambda s: jax.tree.map(jnp.copy, s), out_shardings=sh.state)(
        warm.state
      )
    else:
      ref_E = data.take(pack.base_E, index)
    objective = phase.objective_stage(
      ctx.config, ctx.corpus, pack, members, ref_E, self.user, regime
    )
    graphdef, state_E, final, _, _ = ctx.train(objective, start)
    if ctx.workdir.writer and method in phase.RL_METHODS:
      episodes = phase.episodes_frame(objective.batches.journal)
      atomic_write(
        os.path.join(ctx.workdir.path, "objectives", f"{pack.label}-{method}-episodes.csv"),
        lambda t: episodes.to_csv(t, index=False),
      )
    t = regime.train
    ctx.evaluate_and_save(
      pack,
      graphdef,
      state_E,
      [members.index(c) for c in todo],
      todo,
      ctx.tokens(t.base_steps + t.persona_steps),
      phase.summaries(members, final, objective.batches.journal),
    )

  def summarize(self, workdir, metrics, items):
    """The comparison (levels and paired differences with intervals) and RL's progress as
    metrics.csv rows, and one line per preset in words."""
    del metrics
    lam = table_lambda(self.config)
    table = compare.comparison_table(items, lam, self.config.eval.bootstrap)
    progress = rl_progress.table(rl_progress.read_episodes(workdir))
    rows = pd.concat(
      [compare.comparison_rows(table, lam), rl_progress.rows(progress)], ignore_index=True
    )
    return rows, "\n".join(_in_words(table, progress))

  @classmethod
  def report(cls, metrics, doc, summary, figs, staging, items=None, n_boot=None):
    del items, n_boot  # the comparison rows are in metrics.csv
    report_section.add(metrics, doc, summary, figs, staging)


def _in_words(table, progress):
  """Per preset: each method's reliability error against warm imitation, and RL's ack rise."""
  lines = []
  rows = table[(table.vs == "warm") & (table.outcome == "error_rate")]
  for (preset, regime), g in rows.groupby(["preset", "regime"], sort=False):
    parts = [f"{r.method} {_interval(r.estimate, r.ci_low, r.ci_high)}" for r in g.itertuples()]
    lines.append(
      f"objectives, {preset}, regime {regime}: reliability error against warm "
      "imitation, points "
      f"[95% CI]: " + "; ".join(parts) + "."
    )
  for r in progress[progress.run == "all"].itertuples():
    lines.append(
      f"objectives, {r.preset}, regime {r.regime}: {r.method}'s acknowledgement rate "
      "changed by "
      f"{_interval(r.ack_rise, r.ci_low, r.ci_high)} points during RL "
      f"({100 * r.ack_first:.0f}% → {100 * r.ack_last:.0f}% of training episodes)."
    )
  return lines


def _interval(est, lo, hi):
  if not np.isfinite(lo):
    return f"{100 * est:+.1f} (no interval)"
  return f"{100 * est:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
