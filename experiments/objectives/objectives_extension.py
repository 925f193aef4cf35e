"""Warmth objectives beyond imitation as an extension: surface affect and emotion RL.

`config.extensions = (..., "objectives")` with the `objectives` section (configs/common.py
objectives_section) adds an `affect` and an `emotion_rl` cell for every preset × positive λ × seed.
They train in each finetune pack right after its base models (after_base), through the experiment's
own stage runner, so they checkpoint, resume bit-identically and stop cleanly like every other cell;
their episodes land in WORKDIR/objectives/<pack>-episodes.csv. After the merge the comparison rows
(task `objectives_comparison`) join metrics.csv, and the report gains a section.
"""
import os

import jax

from experiments import data, extensions, grid, stage
from experiments.objectives import compare, phase, report_section
from experiments.runtime.workdir import atomic_write
from tasks.simulated_user import SIMULATED_USER_VERSION, UserConfig


def user_config(o):
  """The UserConfig of the run; refuses a config written for another simulator version."""
  if o.user.version != SIMULATED_USER_VERSION:
    raise ValueError(f"objectives.user.version={o.user.version!r}, but the simulator is version "
                     f"{SIMULATED_USER_VERSION!r}; use a new --workdir.")
  return UserConfig(**{f: o.user[f] for f in UserConfig.__dataclass_fields__}).validate()


def objective_cells(config):
  """affect / emotion_rl cells: every method × positive λ of the grid × preset × seed."""
  lams = [float(l) for l in config.grid.warmth_weights if l > 0]
  return [grid.Cell(p, "finetune", m, lam, 0.0, int(s)) for p in config.model.presets
          for m in config.objectives.methods for lam in lams for s in config.grid.seeds]


def table_lambda(config):
  return float(config.objectives.table_lambda or max(config.grid.warmth_weights))


class Objectives(extensions.Extension):
  """The objectives extension; see the module docstring."""
  name = "objectives"

  def validate(self):
    c = self.config
    if "objectives" not in c:
      raise ValueError("extensions lists objectives but the config has no objectives section: "
                       "add c.objectives = common.objectives_section().")
    for m in c.objectives.methods:
      if m not in phase.METHODS:
        raise ValueError(f"objectives.methods contains {m!r}: allowed are "
                         f"{', '.join(phase.METHODS)}.")
    if "finetune" not in c.grid.protocols:
      raise ValueError("objectives need grid.protocols to include finetune (the base checkpoint).")
    if c.objectives.kl_beta < 0:
      raise ValueError(f"objectives.kl_beta={c.objectives.kl_beta} must be >= 0.")
    if c.runtime.distributed:
      raise ValueError("objectives sample replies on one process: run them without "
                       "runtime.distributed.")
    self.user = user_config(c.objectives)
    phase.prompts_per_step(c, self.user)

  def cells(self, cells):
    del cells
    return objective_cells(self.config)

  def trains(self, cell):
    return cell.persona in phase.METHODS

  def after_base(self, run, pack):
    """Trains and saves this pack's unfinished objective cells from its base models."""
    todo = [c for c in pack.todo if self.trains(c)]
    if not todo:
      return None
    if jax.process_count() > 1:  # a pod starts jax.distributed without runtime.distributed
      raise ValueError(f"objectives sample replies on one process, but this run has "
                       f"{jax.process_count()}: run the objectives config on one host.")
    name = f"{pack.label}/objectives"
    members = stage.members_to_train(run.workdir, name, todo,
                                     [c for c in pack.cells if self.trains(c)])
    index = [pack.seeds.index(c.seed) for c in members]
    ref_E = data.take(pack.base_E, index)
    objective = phase.objective_stage(run.config, run.corpus, pack, members, ref_E, self.user)
    init = lambda sh: jax.jit(lambda s: data.take(s, index), out_shardings=sh.state)(pack.base_E)
    graphdef, state_E, final, _ = run.train(objective, init)
    if run.workdir.writer:
      episodes = phase.episodes_frame(objective.batches.journal)
      atomic_write(os.path.join(run.workdir.path, "objectives", f"{pack.label}-episodes.csv"),
                   lambda t: episodes.to_csv(t, index=False))
    t = run.config.train
    run.evaluate_and_save(pack, graphdef, state_E, [members.index(c) for c in todo], todo,
                          run.tokens(t.base_steps + t.persona_steps),
                          phase.summaries(members, final, objective.batches.journal))
    return None

  def summarize(self, workdir, metrics, items):
    del workdir, metrics
    return compare.comparison_rows(compare.comparison_table(items, table_lambda(self.config))), ""

  @classmethod
  def report(cls, metrics, doc, summary, figs, staging):
    report_section.add(metrics, doc, summary, figs, staging)
