"""Extensions: optional analyses and training methods an experiment runs when its config names them.

`config.extensions = ("persona", "objectives")` chooses them by name, as big_vision chooses
evaluators; the experiment calls each one's hooks at fixed points and never imports their modules.
An extension is a class deriving from Extension; every hook defaults to doing nothing:

  validate()                          after the core config checks; one sentence per bad field
  cells(cells)                        extra cells beside the grid's (steered twins, new objectives)
  trains(cell)                        True for cells it trains itself (not in the persona stage)
  after_base(run, pack)               once a finetune pack's base models exist; per-pack state
  intervention(pack_state, members)   a training-time intervention of the persona stage, or None
  evaluate(run, pack_state, graphdef, state_E, cells, frames)
                                      per cell (metrics rows, extra item frames), or None;
                                      may add columns to `frames` (the cells' graded items)
  summarize(workdir, metrics, items)  rows joining metrics.csv after the merge, and printed text
  report(metrics, doc, summary, figs, staging, items=None, n_boot=None)
                                      (a classmethod) report sections from the files; items.csv
                                      (None without one) and the report's bootstrap draws

`run` (experiment.RunContext) lets after_base train and save cells through the experiment's own
stage runner and evaluation, so an extension's cells checkpoint, resume and stop like any other.
"""

import importlib

import pandas as pd

# name → "module:Class"; importing a module happens only when a config names it.
REGISTRY = {
  "persona": "experiments.persona.persona_extension:PersonaGeometry",
  "objectives": "experiments.objectives.objectives_extension:Objectives",
}


class Extension:
  """The hooks, each a no-op; see the module docstring."""

  name = ""

  def __init__(self, config):
    self.config = config

  def validate(self):
    pass

  def cells(self, cells):
    del cells
    return []

  def trains(self, cell):
    del cell
    return False

  def after_base(self, run, pack):
    del run, pack

  def intervention(self, pack_state, members):
    del pack_state, members

  def evaluate(self, run, pack_state, graphdef, state_E, cells, frames):
    del run, pack_state, graphdef, state_E, cells, frames

  def summarize(self, workdir, metrics, items):
    del workdir, metrics, items
    return pd.DataFrame(), ""

  @classmethod
  def report(cls, metrics, doc, summary, figs, staging, items=None, n_boot=None):
    del metrics, doc, summary, figs, staging, items, n_boot


def extension_class(name):
  if name not in REGISTRY:
    raise ValueError(f"extensions contains {name!r}: allowed are {', '.join(REGISTRY)}.")
  module, cls = REGISTRY[name].split(":")
  return getattr(importlib.import_module(module), cls)


def load(config):
  """The config's extensions, instantiated and validated, in the order the config lists them."""
  names = list(config.get("extensions", ()))
  if len(set(names)) != len(names):
    raise ValueError(f"extensions={names} lists an extension twice.")
  out = [extension_class(n)(config) for n in names]
  for ext in out:
    ext.validate()
  return out
