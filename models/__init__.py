"""Transformers, size presets, KV-cache decoding and direction interventions."""

from models.config import ModelConfig
from models.decode import generate, generate_fn, score_continuations, score_fn
from models.interventions import Intervention, apply_intervention, cap, steer
from models.kv_cache import Cache, init_cache
from models.presets import PRESETS, get_config
from models.transformer import Output, Transformer

__all__ = [
  "Cache",
  "Intervention",
  "ModelConfig",
  "Output",
  "PRESETS",
  "Transformer",
  "apply_intervention",
  "cap",
  "generate",
  "generate_fn",
  "get_config",
  "init_cache",
  "score_continuations",
  "score_fn",
  "steer",
]
