"""The `train` section as a frozen dataclass: base training, and the persona phase's regime
fields (experiments/regimes.py names variants of them); defaults in configs/common.py."""

import dataclasses
import math

from experiments.sections import from_section
from models.config import LORA_TARGETS

LOSS_NORMALIZATIONS = ("token", "row")
# Every parameter; low-rank adapters beside a frozen base; or adapters and the token embedding
# (tied: the output head too), as PEFT's modules_to_save trains tokens a base model has not learned.
PERSONA_UPDATES = ("full", "lora", "lora_embed")
PERSONA_OPTIMIZERS = ("fresh", "continue")  # a new AdamW, or base training's moments carried on


# The fields base training (stage 1) depends on, and so the base-model store's key; the persona
# phase's fields and the runtime cadence (checkpoints, divergence check) are not among them. The
# log cadence is: the loss curve kept with a base model is read at its logged steps.
BASE_TRAIN_FIELDS = (
  "batch_size",
  "base_steps",
  "learning_rate",
  "warmup_steps",
  "weight_decay",
  "grad_clip",
  "loss_normalization",
  "pack_sequences",
  "init_seed",
  "data_seed",
  "log_every",
)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """The `train` section (defaults and what each field means: configs/common.py)."""

  batch_size: int
  base_steps: int
  persona_steps: int
  learning_rate: float
  persona_learning_rate: float
  warmup_steps: int
  weight_decay: float
  grad_clip: float
  loss_normalization: str
  pack_sequences: bool
  init_seed: int
  data_seed: int
  log_every: int
  checkpoint_every: int
  checkpoints_to_keep: int
  async_checkpoints: bool
  divergence_factor: float  # a logged loss above this × the median of the earlier ones diverged
  # The persona phase's regime (experiments/regimes.py; grid.regimes overrides these per regime).
  persona_update: str
  lora_rank: int
  lora_alpha: float
  lora_targets: tuple
  persona_warmup_steps: int  # -1: warmup_steps
  persona_optimizer: str
  persona_epochs: float  # > 0: the budget in passes over the persona dialogues, not steps
  replay_weight: float  # w of w·L_base + λ·L_persona; -1: 1 − λ

  @classmethod
  def from_config(cls, config):
    return from_section(cls, config.train, "train").validate()

  def validate(self):
    """Raises ValueError naming the first bad field and what is allowed."""
    for field, least in (
      ("batch_size", 1),
      ("base_steps", 1),
      ("persona_steps", 1),
      ("warmup_steps", 0),
      ("log_every", 1),
      ("checkpoint_every", 0),
      ("checkpoints_to_keep", 1),
      ("init_seed", 0),
      ("data_seed", 0),
    ):
      value = getattr(self, field)
      if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"train.{field}={value!r} must be an integer >= {least}.")
    if self.batch_size % 2:
      raise ValueError(
        f"train.batch_size={self.batch_size} must be even (the persona phase "
        "draws half its rows from each mixture)."
      )
    for field in ("learning_rate", "persona_learning_rate", "grad_clip"):
      value = getattr(self, field)
      if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"train.{field}={value!r} must be a finite positive number.")
    if not 0 <= self.weight_decay < math.inf:
      raise ValueError(f"train.weight_decay={self.weight_decay!r} must be a finite number >= 0.")
    if not 1 < self.divergence_factor < math.inf:
      raise ValueError(
        f"train.divergence_factor={self.divergence_factor!r} must be a finite "
        "number > 1 (a logged loss this many times the running median stops "
        "the stage)."
      )
    if not isinstance(self.pack_sequences, bool):
      raise ValueError(f"train.pack_sequences={self.pack_sequences!r} must be True or False.")
    if self.loss_normalization not in LOSS_NORMALIZATIONS:
      raise ValueError(
        f"train.loss_normalization={self.loss_normalization!r} is not allowed: "
        f"choose one of {', '.join(LOSS_NORMALIZATIONS)}."
      )
    return self.validate_regime()

  def validate_regime(self):
    """The persona-phase fields; ValueError naming the first bad one."""
    for field, allowed in (
      ("persona_update", PERSONA_UPDATES),
      ("persona_optimizer", PERSONA_OPTIMIZERS),
    ):
      if getattr(self, field) not in allowed:
        raise ValueError(
          f"train.{field}={getattr(self, field)!r} is not allowed: choose one of "
          f"{', '.join(allowed)}."
        )
    if self.persona_update != "full" and self.persona_optimizer == "continue":
      raise ValueError(
        "train.persona_optimizer='continue' needs train.persona_update='full': "
        "base training has no optimizer state for the adapters to continue."
      )
    w = self.persona_warmup_steps
    if isinstance(w, bool) or not isinstance(w, int) or w < -1:
      raise ValueError(
        f"train.persona_warmup_steps={w!r} must be an integer >= 0, or -1 (train.warmup_steps)."
      )
    r = self.lora_rank
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
      raise ValueError(f"train.lora_rank={r!r} must be an integer >= 1.")
    if isinstance(self.lora_alpha, bool) or not 0 < self.lora_alpha < math.inf:
      raise ValueError(f"train.lora_alpha={self.lora_alpha!r} must be a finite positive number.")
    targets = tuple(self.lora_targets)
    if not targets or len(set(targets)) != len(targets) or set(targets) - set(LORA_TARGETS):
      raise ValueError(
        f"train.lora_targets={list(targets)!r} must be distinct names from "
        f"{', '.join(LORA_TARGETS)} (at least one)."
      )
    e = self.persona_epochs
    if isinstance(e, bool) or not isinstance(e, (int, float)) or not 0 <= e < math.inf:
      raise ValueError(
        f"train.persona_epochs={e!r} must be a finite number >= 0 (0: "
        "train.persona_steps sets the budget)."
      )
    w = self.replay_weight
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not (w == -1 or 0 <= w <= 1):
      raise ValueError(f"train.replay_weight={w!r} must lie in [0, 1], or be -1 (1 − λ).")
    return self

  @property
  def persona_warmup(self):
    """The persona phase's warm-up steps."""
    return self.warmup_steps if self.persona_warmup_steps == -1 else self.persona_warmup_steps
