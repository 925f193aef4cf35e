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
