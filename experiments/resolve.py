"""A config checked, and every derived value resolved, before anything is written.

`resolve(config)` reads each section of the ConfigDict a config file gives into its frozen
dataclass (experiments/sections.py, WorldConfig, TrainConfig, GridConfig), checks them, the regimes,
every preset's model, the mesh and the extensions, and derives what a field leaves to the world
(the generation budget of `eval.max_new_tokens = 0`, and each extension's, e.g.
`objectives.max_new_tokens`). It returns a `Config` that the pipeline, the tools and the
instrument's own checks read; the ConfigDict itself is never written to. config.json records both
(`Config.record`): the config as asked, and as resolved.
"""

import dataclasses
import types

import ml_collections

from experiments import extensions, grid, regimes
from experiments.runtime import members, sharding
from experiments.runtime.base_store import BaseStore
from experiments.sections import (
  DataSource,
  EvalSection,
  MeshSection,
  ModelSection,
  RuntimeSection,
  from_section,
)
from experiments.train_config import TrainConfig
from models import get_config
from models.config import resolve_attention_impl
from tasks.budget import generation_budget
from tasks.config import WorldConfig
from tasks.world import World


def world_config(data_section):
  fields = {f: data_section[f] for f in WorldConfig.__dataclass_fields__}
  fields["tasks"] = tuple(fields["tasks"])
  fields["eval_contexts"] = tuple(fields["eval_contexts"])
  return WorldConfig(**fields).validate()


def model_config(cfg, preset, vocab_size, backend=None):
  """The preset's ModelConfig for a resolved config (`Config`) and this vocabulary; `backend`
  (jax.default_backend()) resolves `auto`."""
  overrides = {
    "compute_dtype": cfg.model.compute_dtype,
    "positional": cfg.model.positional,
    "tied_embeddings": cfg.model.tied_embeddings,
  }
  for field in ("n_heads", "d_model"):
    if getattr(cfg.model, field):
      overrides[field] = getattr(cfg.model, field)
  mcfg = get_config(preset, vocab_size, cfg.world.seq_len + cfg.eval.max_new_tokens, **overrides)
  impl = resolve_attention_impl(
    cfg.model.attention_impl, mcfg.compute_dtype, mcfg.head_dim, backend
  )
  mcfg = get_config(preset, vocab_size, mcfg.max_len, attention_impl=impl, **overrides)
  mcfg.validate()
  return mcfg


def model_sizes(mcfg):
  """(total, non-embedding) parameters, as the metrics rows record them."""
  return mcfg.n_params(non_embedding=False), mcfg.n_params(non_embedding=True)


# Fewer resamples cannot place a 95% interval's ends (2.5% of 20 draws is half a draw).
MIN_BOOTSTRAP = 20


def _check_ints(config, fields):
  """Each `section.field` must be an integer >= its least value; ValueError naming the first not."""
  for name, least in fields:
    section, field = name.split(".")
    value = config[section][field]
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
      raise ValueError(f"{name}={value!r} must be an integer >= {least}.")


@dataclasses.dataclass(frozen=True)
class Config:
  """A resolved config: every section as a frozen object, derived values filled in.

  `asked` is the config as given; `derived` maps each derived field ("eval.max_new_tokens") to the
  value it resolved to; `sections` holds each extension's own section (a FrozenConfigDict, its
  derived fields filled in), read through `section(name)`. `extensions` are the loaded extensions
  (experiments/extensions.py), each validated against this config.
  """

  asked: ml_collections.FrozenConfigDict
  world: WorldConfig
  data: DataSource
  model: ModelSection
  train: TrainConfig
  eval: EvalSection
  grid: grid.GridConfig
  regimes: dict  # name → regimes.Regime, in grid.regimes' order
  runtime: RuntimeSection
  mesh: MeshSection
  derived: dict
  sections: dict
  extensions: tuple = ()

  def __post_init__(self):
    # Read-only views: a frozen dataclass alone would still let a reader add to its dicts.
    for name in ("regimes", "derived", "sections"):
      object.__setattr__(self, name, types.MappingProxyType(dict(getattr(self, name))))

  def section(self, name):
    """An extension's own section (e.g. "persona"), resolved; ValueError if the config lacks it."""
    if name not in self.sections:
      raise ValueError(
        f"extensions lists {name} but the config has no {name} section: add c.{name} (defaults "
        "in experiments/configs/common.py)."
      )
    return self.sections[name]

  def cells(self):
    """Every cell this config trains: the grid's (grid.expand), then each extension's."""
    cells = grid.expand(self.grid, self.model.presets)
    return cells + [c for ext in self.extensions for c in ext.cells(list(cells))]

  def record(self):
    """The config as config.json's `config` holds it: as asked, each derived field resolved."""
    out = self.asked.to_dict()
    for name, value in self.derived.items():
      section, field = name.split(".")
      out[section][field] = value
    return out


def resolve(config):
  """The resolved `Config` of a ConfigDict; ValueError, one sentence, naming the first bad field.

  Everything that can be checked before any file is written is checked here, once."""
  asked = ml_collections.FrozenConfigDict(config)
  world = world_config(asked.data)
  _check_ints(
    asked,
    (
      ("eval.batch_size", 1),
      ("eval.bootstrap", MIN_BOOTSTRAP),
      ("runtime.num_processes", 0),
      ("runtime.process_id", -1),
    ),
  )
  runtime = from_section(RuntimeSection, asked.runtime, "runtime")
  if not isinstance(runtime.base_store, str):
    raise ValueError(
      f"runtime.base_store={runtime.base_store!r} must be a directory path, "
      'or "" to train base models in every run.'
    )
  if runtime.base_store:
    BaseStore(runtime.base_store)  # a scheme other than gs:// is refused here, before any file
  for section, field in (("runtime", "report"), ("runtime", "verbose"), ("eval", "blind")):
    if not isinstance(asked[section][field], bool):
      raise ValueError(f"{section}.{field}={asked[section][field]!r} must be True or False.")
  model = from_section(ModelSection, asked.model, "model")
  if not model.presets:
    raise ValueError("model.presets is empty: list at least one preset, e.g. ('nano',).")
  grid.validate_presets(model.presets)
  requested = asked.eval.max_new_tokens
  if requested < 0:
    raise ValueError(
      f"eval.max_new_tokens={requested} must be 0 (derived from the world) or a positive number "
      "of tokens."
    )
  derived = {"eval.max_new_tokens": generation_budget(World(world), requested)}
  evaluation = from_section(EvalSection, asked.eval, "eval")
  evaluation = dataclasses.replace(evaluation, max_new_tokens=derived["eval.max_new_tokens"])
  train = TrainConfig.from_config(asked)
  design = grid.GridConfig.from_config(asked)
  data = DataSource(asked.data.source, asked.data.tfds_dir)
  if data.source not in ("memory", "tfds"):
    raise ValueError(f"data.source={data.source!r} is not allowed: choose memory or tfds.")
  sharding.validate(asked.mesh)
  members.validate(asked.mesh.members)
  mesh = from_section(MeshSection, asked.mesh, "mesh")
  cfg = Config(
    asked=asked,
    world=world,
    data=data,
    model=model,
    train=train,
    eval=evaluation,
    grid=design,
    regimes={r.name: r for r in regimes.resolve(design, train)},
    runtime=runtime,
    mesh=mesh,
    derived=derived,
    sections={},
  )
  for preset in model.presets:
    model_config(cfg, preset, vocab_size=64)
  return extensions.load(cfg)
