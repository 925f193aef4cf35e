"""Named model sizes; vocab_size and max_len come from the data."""

from models.config import ModelConfig

# Non-embedding parameters are given for the default (RoPE) configuration.
PRESETS: dict[str, dict] = {
  # ~1.6k and ~6.2k: the bottom of the CPU scaling study (a decade below nano).
  "femto": dict(d_model=8, n_layers=2, n_heads=2, d_ff=32),
  "pico": dict(d_model=16, n_layers=2, n_heads=2, d_ff=64),
  # ~25k: seconds-scale CPU runs and unit tests.
  "nano": dict(d_model=32, n_layers=2, n_heads=2, d_ff=128),
  # ~148k: the CPU demo size.
  "micro": dict(d_model=64, n_layers=3, n_heads=4, d_ff=256),
  # ~1.2M.
  "mini": dict(d_model=128, n_layers=6, n_heads=4, d_ff=512),
  # ~10.6M.
  "small": dict(d_model=384, n_layers=6, n_heads=6, d_ff=1536),
  # ~31.5M.
  "medium": dict(d_model=512, n_layers=10, n_heads=8, d_ff=2048),
  # ~85M: GPT-2-small body.
  "gpt2s": dict(d_model=768, n_layers=12, n_heads=12, d_ff=3072),
}


def get_config(name: str, vocab_size: int, max_len: int, **overrides) -> ModelConfig:
  """Returns preset `name` sized for the data, with field overrides."""
  if name not in PRESETS:
    raise ValueError(f"model.preset={name!r} must be one of {sorted(PRESETS)}.")
  fields = {f for f in ModelConfig.__dataclass_fields__}
  unknown = sorted(set(overrides) - fields)
  if unknown:
    raise ValueError(
      f"model override(s) {unknown} must be fields of ModelConfig: {sorted(fields)}."
    )
  kwargs = dict(PRESETS[name], vocab_size=vocab_size, max_len=max_len)
  kwargs.update(overrides)
  return ModelConfig(**kwargs)
