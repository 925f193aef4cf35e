"""The persona phase's regime: how hard fine-tuning pushes a base model, as named fields.

A regime is the `train` section's persona-phase fields (REGIME_FIELDS) with a config's overrides,
`grid.regimes`: name → {field: value}. The fields: a full update or low-rank adapters (rank, α,
which projections; with or without the token embedding), the peak rate and warm-up, the budget
(steps, or epochs of the persona dialogues), a fresh optimizer or base training's carried on, and
the base-replay weight w of w·L_base + λ·L_persona (-1: w = 1 − λ, the single-weight loss).
The regime named `default` is the train section's own fields; its cells' ids carry no regime.

How much a model forgets whatever the persona depends on these, so the regime is part of every
finetune cell (its id, metrics.csv's `regime` column), and every regime's cells fine-tune the same
base models. A base model (persona `none`) and a mixture cell went through no persona phase: their
regime is `none`.
"""
import dataclasses
import math
import re

from experiments.data import STAGE2_SEED_OFFSET
from experiments.train_config import TrainConfig

REGIME_FIELDS = ("persona_update", "lora_rank", "lora_alpha", "lora_targets",
                 "persona_learning_rate", "persona_warmup_steps", "persona_steps",
                 "persona_epochs", "persona_optimizer", "replay_weight")
NONE = "none"  # the regime of cells without a persona phase
_NAME = re.compile(r"[a-z][a-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class Regime:
  """One named regime: the train section with its persona-phase fields overridden."""
  name: str
  train: TrainConfig

  @property
  def update(self):
    return self.train.persona_update

  def fields(self):
    """{field: value} of REGIME_FIELDS, what the report and TensorBoard list."""
    return {f: getattr(self.train, f) for f in REGIME_FIELDS}

  def model_config(self, base_cfg):
    """The persona phase's ModelConfig: the base model's, with adapters under LoRA."""
    if self.update == "full":
      return base_cfg
    t = self.train
    return dataclasses.replace(base_cfg, lora_rank=t.lora_rank, lora_alpha=float(t.lora_alpha),
                               lora_targets=tuple(t.lora_targets))

  def steps(self, corpus):
    """The persona phase's steps: train.persona_steps, or persona_epochs passes over the persona
    dialogues at batch_size / 2 persona rows per step (packed: the rows one pass of replicate
    0's persona order fills; other seeds' passes differ by a row or two)."""
    t = self.train
    if not t.persona_epochs:
      return t.persona_steps
    seed = t.data_seed + STAGE2_SEED_OFFSET
    rows = corpus.rows_per_epoch("persona", seed, t.pack_sequences)
    return max(1, math.ceil(t.persona_epochs * rows / (t.batch_size // 2)))

  def inputs(self, n):
    """Per-member inputs the regime adds to the imitation loss: the replay weight w, if set (none:
    w = 1 − λ, computed in the step exactly as the single-weight loss does)."""
    if self.train.replay_weight == -1:
      return {}
    return {"replay": [float(self.train.replay_weight)] * n}


def of_config(config, train_cfg=None):
  """[Regime] of grid.regimes in their order; ValueError, one sentence, naming a bad one."""
  train_cfg = train_cfg or TrainConfig.from_config(config)
  regimes = config.grid.regimes
  if not regimes:
    raise ValueError("grid.regimes is empty: name at least one regime, e.g. "
                     "{'default': {}} (the train section's own persona-phase fields).")
  out = []
  for name, overrides in regimes.items():
    if not isinstance(name, str) or not _NAME.match(name) or name == NONE:
      raise ValueError(f"grid.regimes has a regime named {name!r}: a name is lower-case letters, "
                       f"digits and _, starting with a letter, and not {NONE!r}.")
    overrides = dict(overrides or {})
    stray = sorted(set(overrides) - set(REGIME_FIELDS))
    if stray:
      raise ValueError(f"grid.regimes.{name}.{stray[0]} is not a regime field: allowed are "
                       f"{', '.join(REGIME_FIELDS)}.")
    if "lora_targets" in overrides:
      overrides["lora_targets"] = tuple(overrides["lora_targets"])
    try:
      cfg = dataclasses.replace(train_cfg, **overrides).validate()
    except (ValueError, TypeError) as e:
      raise ValueError(str(e).replace("train.", f"grid.regimes.{name}.", 1)) from None
    out.append(Regime(name, cfg))
  return out


def by_name(config):
  return {r.name: r for r in of_config(config)}
