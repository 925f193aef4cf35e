"""Extensions: optional analyses and training methods an experiment runs when its config names them.

`config.extensions = ("persona", "objectives")` chooses them by name, as big_vision chooses
evaluators; the experiment calls each one's hooks at fixed points and never imports their modules.
An extension is a class deriving from Extension; every hook defaults to doing nothing:

  derive(config)                      (a classmethod) the derived fields of the extension's own
                                      section, {field: value}, before it is loaded: each is
                                      resolved here once, and config.json records it
  validate()                          after the core config checks; one sentence per bad field
  cells(cells)                        extra cells beside the grid's (steered twins, new objectives)
  trains(cell)                        True for cells it trains itself (not in the persona stage)
  after_base(ctx, pack)               once a finetune pack's base models exist; per-pack state
  intervention(pack_state, members)   a training-time intervention of the persona stage, or None
  evaluate(ctx, pack_state, graphdef, state_E, cells, frames)
                                      per cell (metrics rows, extra item frames), or None;
                                      may add columns to `frames` (the cells' graded items)
  summarize(workdir, metrics, items)  rows joining metrics.csv after the merge, and printed text
  report(metrics, doc, summary, figs, staging, items=None, n_boot=None)
                                      (a classmethod) report sections from the files; items.csv
                                      (None without one) and the report's bootstrap draws

An extension is constructed with the resolved config (experiments/resolve.py `Config`) and reads
its own section through `config.section(name)`. `ctx` (experiment.RunContext) lets after_base train
and save cells through the experiment's own stage runner and evaluation, so an extension's cells
checkpoint, resume and stop like any other.
"""

import dataclasses
import importlib

import ml_collections
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

  @classmethod
  def derive(cls, config):
    del config
    return {}

  def validate(self):
    pass

  def cells(self, cells):
    del cells
    return []

  def trains(self, cell):
    del cell
    return False

  def after_base(self, ctx, pack):
    del ctx, pack

  def intervention(self, pack_state, members):
    del pack_state, members

  def evaluate(self, ctx, pack_state, graphdef, state_E, cells, frames):
    del ctx, pack_state, graphdef, state_E, cells, frames

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
  """`config` (a resolve.Config of the core sections) with its extensions loaded, in the order the
  config lists them: each one's section resolved (its `derive`d fields filled in), then each
  instantiated and validated against the result."""
  names = list(config.asked.get("extensions", ()))
  if len(set(names)) != len(names):
    raise ValueError(f"extensions={names} lists an extension twice.")
  classes = [extension_class(n) for n in names]
  sections = {n: config.asked[n] for n in names if n in config.asked}
  config = dataclasses.replace(config, sections=sections)
  derived = dict(config.derived)
  for cls in classes:
    fields = cls.derive(config)
    if fields:
      section = config.asked[cls.name].to_dict()
      section.update(fields)
      sections[cls.name] = ml_collections.FrozenConfigDict(section)
      derived.update({f"{cls.name}.{f}": v for f, v in fields.items()})
  config = dataclasses.replace(config, sections=sections, derived=derived)
  loaded = tuple(cls(config) for cls in classes)
  for ext in loaded:
    ext.validate()
  return dataclasses.replace(config, extensions=loaded)
