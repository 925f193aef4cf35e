"""Model hyperparameters: a frozen, hashable dataclass with size and cost."""

import dataclasses

POSITIONAL = ("rope", "learned")
DTYPES = ("float32", "bfloat16")
ATTENTION_IMPLS = ("xla", "cudnn")  # None in a ModelConfig: XLA's, chosen by the compiler
ATTENTION_CHOICES = ("auto",) + ATTENTION_IMPLS  # what a run config may ask for
# Projections a low-rank adapter may sit beside (models/transformer.py names them the same).
LORA_TARGETS = ("query", "key", "value", "out", "up", "down")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Shape and numerics of a decoder-only transformer."""

  vocab_size: int
  d_model: int
  n_layers: int
  n_heads: int
  d_ff: int
  max_len: int
  positional: str = "rope"
  tied_embeddings: bool = True
  compute_dtype: str = "float32"
  param_dtype: str = "float32"
  attention_impl: str | None = None
  # Low-rank adapters (nnx.LoRA) beside the `lora_targets` projections, their output scaled by
  # lora_alpha / lora_rank; rank 0: none. A base model has none; a LoRA persona phase adds them.
  lora_rank: int = 0
  lora_alpha: float = 16.0
  lora_targets: tuple = ()

  def __post_init__(self):
    # A config read back from JSON has a list here; a tuple keeps the dataclass hashable.
    object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
    # Fail at construction so a bad config never reaches a half-built model.
    self.validate()

  @property
  def lora_scale(self) -> float:
    return self.lora_alpha / self.lora_rank if self.lora_rank else 0.0

  def adapted(self, projection: str) -> bool:
    """Whether `projection` (one of LORA_TARGETS) has a low-rank adapter."""
    return self.lora_rank > 0 and projection in self.lora_targets

  @property
  def head_dim(self) -> int:
    return self.d_model // self.n_heads

  def validate(self) -> None:
    """Raises ValueError with one sentence naming the first bad field."""
    for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_len"):
      value = getattr(self, name)
      # bool is an int subclass; True as a layer count is a bug, not a 1.
      if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"model.{name}={value!r} must be a positive integer.")
    if self.d_model % self.n_heads:
      raise ValueError(f"model.n_heads={self.n_heads} must divide model.d_model={self.d_model}.")
    if self.positional not in POSITIONAL:
      raise ValueError(f"model.positional={self.positional!r} must be one of {POSITIONAL}.")
    if self.positional == "rope" and self.head_dim % 2:
      raise ValueError(
        f"model.d_model/model.n_heads={self.head_dim} must be even for model.positional='rope'."
      )
    if not isinstance(self.tied_embeddings, bool):
      raise ValueError(f"model.tied_embeddings={self.tied_embeddings!r} must be True or False.")
    for name in ("compute_dtype", "param_dtype"):
      value = getattr(self, name)
      if value not in DTYPES:
        raise ValueError(f"model.{name}={value!r} must be one of {DTYPES}.")
    if self.attention_impl is not None and self.attention_impl not in ATTENTION_IMPLS:
      raise ValueError(
        f"model.attention_impl={self.attention_impl!r} must be one of "
        f"{', '.join(ATTENTION_CHOICES)}."
      )
    if self.attention_impl == "cudnn" and self.compute_dtype != "bfloat16":
      raise ValueError(
        "model.attention_impl='cudnn' needs model.compute_dtype='bfloat16' "
        f"(got {self.compute_dtype!r})."
      )
    if self.attention_impl == "cudnn" and (self.head_dim % 8 or self.head_dim > 256):
      raise ValueError(
        "model.attention_impl='cudnn' needs model.d_model/model.n_heads="
        f"{self.head_dim} to be a multiple of 8 and at most 256."
      )

    if (
      isinstance(self.lora_rank, bool) or not isinstance(self.lora_rank, int) or self.lora_rank < 0
    ):
      raise ValueError(
        f"model.lora_rank={self.lora_rank!r} must be an integer >= 0 (0: no adapters)."
      )
    if not (
      isinstance(self.lora_alpha, (int, float))
      and not isinstance(self.lora_alpha, bool)
      and 0 < self.lora_alpha < float("inf")
    ):
      raise ValueError(f"model.lora_alpha={self.lora_alpha!r} must be a finite positive number.")
    stray = [t for t in self.lora_targets if t not in LORA_TARGETS]
    if stray or len(set(self.lora_targets)) != len(self.lora_targets):
      raise ValueError(
        f"model.lora_targets={list(self.lora_targets)!r} must be distinct names from "
        f"{', '.join(LORA_TARGETS)}."
      )
    if self.lora_rank and not self.lora_targets:
      raise ValueError(
        f"model.lora_rank={self.lora_rank} needs at least one projection in "
        f"model.lora_targets (from {', '.join(LORA_TARGETS)})."
      )

  def n_params(self, non_embedding: bool) -> int:
    """Parameter count, optionally without token/position tables and head; adapters are not
    counted (they are the fine-tuning's, not the model's size)."""
    d, f, l = self.d_model, self.d_ff, self.n_layers
    # Per block: q, k, v, o projections, two MLP matrices, two RMSNorm scales.
    per_block = 4 * d * d + 2 * d * f + 2 * d
    body = l * per_block + d  # + final RMSNorm scale
    if non_embedding:
      return body
    embedding = self.vocab_size * d
    if self.positional == "learned":
      embedding += self.max_len * d
    if not self.tied_embeddings:
      embedding += d * self.vocab_size
    return body + embedding

  def flops_per_token(self, seq_len: int) -> int:
    """Training FLOPs per token, 6N + 12*L*d*T (Kaplan/PaLM style)."""
    # N counts weights used in matmuls: non-embedding ones plus the output
    # projection (a real matmul even when tied); the embedding lookup is free.
    n = self.n_params(non_embedding=True) + self.d_model * self.vocab_size
    return 6 * n + 12 * self.n_layers * self.d_model * seq_len


def auto_attention_impl(compute_dtype: str, head_dim: int, backend: str) -> str | None:
  """cuDNN's fused attention on a GPU in bfloat16 where it applies; otherwise XLA's (None)."""
  fits = compute_dtype == "bfloat16" and head_dim % 8 == 0 and head_dim <= 256
  return "cudnn" if backend == "gpu" and fits else None


def resolve_attention_impl(
  choice: str, compute_dtype: str, head_dim: int, backend: str | None
) -> str | None:
  """A run config's choice (ATTENTION_CHOICES) as a ModelConfig field; `auto` per backend."""
  if choice not in ATTENTION_CHOICES:
    raise ValueError(
      f"model.attention_impl={choice!r} must be one of {', '.join(ATTENTION_CHOICES)}."
    )
  return auto_attention_impl(compute_dtype, head_dim, backend) if choice == "auto" else choice
