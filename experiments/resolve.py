"""A config checked and its derived values resolved, before anything is written.

`validate` is every check that can run before a file exists: each section read by its frozen
dataclass, the grid and regimes, every preset's model, the mesh and the extensions. The training
pipeline (experiment.py), the tools and the instrument's own checks (analysis/validate.py) all read
a config through it, so a value is checked, and the generation budget derived, in one place.
"""

from experiments import extensions, grid, regimes
from experiments.runtime import members, sharding
from experiments.runtime.base_store import BaseStore
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


def model_config(config, preset, vocab_size, backend=None):
  """The preset's ModelConfig for this data; `backend` (jax.default_backend()) resolves `auto`."""
  overrides = {
    "compute_dtype": config.model.compute_dtype,
    "positional": config.model.positional,
    "tied_embeddings": config.model.tied_embeddings,
  }
  for field in ("n_heads", "d_model"):
    if config.model[field]:
      overrides[field] = config.model[field]
  cfg = get_config(
    preset, vocab_size, config.data.seq_len + config.eval.max_new_tokens, **overrides
  )
  impl = resolve_attention_impl(
    config.model.attention_impl, cfg.compute_dtype, cfg.head_dim, backend
  )
  cfg = get_config(preset, vocab_size, cfg.max_len, attention_impl=impl, **overrides)
  cfg.validate()
  return cfg


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


def validate(config):
  """Everything that can be checked before any file is written: (world, extensions); ValueError.

  Also resolves the one derived field, `eval.max_new_tokens = 0`, to the world's generation budget
  (tasks/budget.py), so config.json records the budget the run evaluated with.
  """
  world = world_config(config.data)
  _check_ints(
    config,
    (
      ("eval.batch_size", 1),
      ("eval.bootstrap", MIN_BOOTSTRAP),
      ("runtime.num_processes", 0),
      ("runtime.process_id", -1),
    ),
  )
  if not isinstance(config.runtime.base_store, str):
    raise ValueError(
      f"runtime.base_store={config.runtime.base_store!r} must be a directory path, "
      'or "" to train base models in every run.'
    )
  if config.runtime.base_store:
    BaseStore(config.runtime.base_store)  # a remote URL is refused here, before any file
  for section, field in (("runtime", "report"), ("runtime", "verbose"), ("eval", "blind")):
    if not isinstance(config[section][field], bool):
      raise ValueError(f"{section}.{field}={config[section][field]!r} must be True or False.")
  if not config.model.presets:
    raise ValueError("model.presets is empty: list at least one preset, e.g. ('nano',).")
  if config.eval.max_new_tokens < 0:
    raise ValueError(
      f"eval.max_new_tokens={config.eval.max_new_tokens} must be 0 (derived from "
      "the world) or a positive number of tokens."
    )
  config.eval.max_new_tokens = generation_budget(World(world), config.eval.max_new_tokens)
  regimes.of_config(config, TrainConfig.from_config(config))
  grid.GridConfig.from_config(config)
  grid.validate_presets(config.model.presets)
  for preset in config.model.presets:
    model_config(config, preset, vocab_size=64)
  if config.data.source not in ("memory", "tfds"):
    raise ValueError(f"data.source={config.data.source!r} is not allowed: choose memory or tfds.")
  sharding.validate(config.mesh)
  members.validate(config.mesh.members)
  return world, extensions.load(config)
