"""Config sections as frozen dataclasses: one place that turns a ConfigDict section into one."""

import dataclasses


def from_section(cls, section, name):
  """cls(**section), lists as tuples; a field the dataclass lacks is refused with one sentence,
  and one it needs (a field without a default) must be there."""
  fields = [f.name for f in dataclasses.fields(cls)]
  unknown = sorted(set(section.keys()) - set(fields))
  if unknown:
    raise ValueError(
      f"{name}.{unknown[0]} is not a field of the {name} section: allowed are {', '.join(fields)}."
    )
  optional = {
    f.name
    for f in dataclasses.fields(cls)
    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
  }
  missing = [f for f in fields if f not in section and f not in optional]
  if missing:
    raise ValueError(
      f"{name}.{missing[0]} is missing from the config: start configs from "
      "experiments/configs/common.py base_config()."
    )
  value = lambda v: tuple(v) if isinstance(v, (list, tuple)) else v
  return cls(**{f: value(section[f]) for f in fields if f in section})


# The sections below are read as they are given; their checks are in resolve.py (the runtime and
# eval fields), runtime/sharding.py and runtime/members.py (the mesh), and grid.py (the presets).


@dataclasses.dataclass(frozen=True)
class DataSource:
  """Where the tokens come from: the `data` section's fields beside the world's (WorldConfig)."""

  source: str  # memory | tfds (a prepared `python -m tasks.tfds_builder` directory)
  tfds_dir: str


@dataclasses.dataclass(frozen=True)
class ModelSection:
  """The `model` section: the presets trained and the overrides every preset takes."""

  presets: tuple
  compute_dtype: str
  positional: str
  tied_embeddings: bool
  n_heads: int  # 0: the preset's
  d_model: int  # 0: the preset's
  attention_impl: str  # auto | xla | cudnn


@dataclasses.dataclass(frozen=True)
class EvalSection:
  """The `eval` section, resolved: `max_new_tokens` is the generation budget itself, never 0."""

  max_new_tokens: int
  batch_size: int
  bootstrap: int
  blind: bool


@dataclasses.dataclass(frozen=True)
class RuntimeSection:
  """The `runtime` section: how this invocation runs; no result depends on it."""

  distributed: bool
  coordinator_address: str
  num_processes: int
  process_id: int
  base_store: str
  report: bool
  verbose: bool


@dataclasses.dataclass(frozen=True)
class MeshSection:
  """The `mesh` section: axis sizes (-1: the devices the others leave), rules, members."""

  ensemble: int
  data: int
  fsdp: int
  tensor: int
  rules: tuple
  members: str
