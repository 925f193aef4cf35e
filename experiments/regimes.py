"""The persona phase's regime: how hard fine-tuning pushes a base model, as named fields.

A regime is the `train` section's persona-phase fields (REGIME_FIELDS) with a config's overrides,
`grid.regimes`: name → {field: value}. The fields: a full update or low-rank adapters (rank, α,
which projections; with or without the token embedding), the peak rate and warm-up, the budget
(steps, or epochs of the persona dialogues), a fresh optimizer or base training's carried on, and
the base-replay weight w of w·L_base + λ·L_persona (-1: w = 1 − λ, the single-weight loss).
The regime named `default` is the train section's own fields; its cells' ids carry no regime.

Three entries of a regime's table are not fields: `by_preset` (preset → {field: value}, laid over
the regime's own fields for that preset's cells, so one named regime can be each preset's own
calibrated setting), `seeds` (the base seeds whose persona cells train in this regime; absent:
every seed, so a regime kept beside the primary one can cost fewer cells) and `labels` (preset →
a few words on how its setting was chosen, e.g. "not calibrated: failed learned", which every
table and figure that shows the regime prints beside it).

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
from models.presets import PRESETS

REGIME_FIELDS = (
  "persona_update",
  "lora_rank",
  "lora_alpha",
  "lora_targets",
  "persona_learning_rate",
  "persona_warmup_steps",
  "persona_steps",
  "persona_epochs",
  "persona_optimizer",
  "replay_weight",
)
SPEC_KEYS = ("by_preset", "seeds", "labels")  # a regime's entries that are not REGIME_FIELDS
NONE = "none"  # the regime of cells without a persona phase
_NAME = re.compile(r"[a-z][a-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class Regime:
  """One named regime: the train section with its persona-phase fields overridden."""

  name: str
  train: TrainConfig
  seeds: tuple = None  # base seeds whose persona cells train in this regime; None: every seed
  by_preset: dict = dataclasses.field(default_factory=dict)  # preset → its TrainConfig
  labels: dict = dataclasses.field(default_factory=dict)  # preset → how its setting was chosen

  def at(self, preset):
    """The regime as `preset`'s cells train in it: its `by_preset` fields over its own."""
    if preset not in self.by_preset:
      return self
    return dataclasses.replace(self, train=self.by_preset[preset], by_preset={})

  def trains(self, seed):
    """Whether seed `seed`'s persona cells train in this regime."""
    return self.seeds is None or seed in self.seeds

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
    return dataclasses.replace(
      base_cfg,
      lora_rank=t.lora_rank,
      lora_alpha=float(t.lora_alpha),
      lora_targets=tuple(t.lora_targets),
    )

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


def resolve(design, train_cfg):
  """[Regime] of grid.regimes (design: grid.GridConfig) in their order, each the train section
  (train_cfg: TrainConfig) with its overrides; ValueError, one sentence, naming a bad one."""
  regimes = design.regimes
  if not regimes:
    raise ValueError(
      "grid.regimes is empty: name at least one regime, e.g. "
      "{'default': {}} (the train section's own persona-phase fields)."
    )
  out = []
  for name, spec in regimes.items():
    if not isinstance(name, str) or not _NAME.match(name) or name == NONE:
      raise ValueError(
        f"grid.regimes has a regime named {name!r}: a name is lower-case letters, "
        f"digits and _, starting with a letter, and not {NONE!r}."
      )
    spec = dict(spec or {})
    by_preset, seeds = dict(spec.pop("by_preset", None) or {}), spec.pop("seeds", None)
    labels = {p: str(v) for p, v in dict(spec.pop("labels", None) or {}).items()}
    cfg = _resolve(train_cfg, spec, f"grid.regimes.{name}")
    for preset, fields in by_preset.items():
      if preset not in PRESETS:
        raise ValueError(
          f"grid.regimes.{name}.by_preset names preset {preset!r}: allowed are "
          f"{', '.join(PRESETS)}."
        )
      by_preset[preset] = _resolve(
        cfg, dict(fields or {}), f"grid.regimes.{name}.by_preset.{preset}"
      )
    if seeds is not None:
      grid_seeds = list(design.seeds)
      seeds = tuple(seeds)
      if not seeds or any(s not in grid_seeds for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(
          f"grid.regimes.{name}.seeds={list(seeds)!r} must be distinct seeds of "
          f"grid.seeds {grid_seeds} (leave it out for every seed)."
        )
    out.append(Regime(name, cfg, seeds, by_preset, labels))
  return out


def _resolve(train_cfg, overrides, where):
  """train_cfg with `overrides` of REGIME_FIELDS; ValueError, one sentence, naming `where`."""
  stray = sorted(set(overrides) - set(REGIME_FIELDS))
  if stray:
    raise ValueError(
      f"{where}.{stray[0]} is not a regime field: allowed are "
      f"{', '.join(REGIME_FIELDS)}"
      + (f", and {', '.join(SPEC_KEYS)}" if where.count(".") == 2 else "")
      + "."
    )
  if "lora_targets" in overrides:
    overrides["lora_targets"] = tuple(overrides["lora_targets"])
  try:
    return dataclasses.replace(train_cfg, **overrides).validate()
  except (ValueError, TypeError) as e:
    raise ValueError(str(e).replace("train.", f"{where}.", 1)) from None


def held(frame, named=()):
  """The persona-phase regimes a results frame (items or metrics) holds, `none` left out: those
  of `named` (grid.regimes' order) first, then the others in order of appearance; [] for a frame
  from before regimes."""
  if frame is None or "regime" not in frame:
    return []
  found = [r for r in dict.fromkeys(frame["regime"].astype(str)) if r != NONE]
  return [r for r in named if r in found] + [r for r in found if r not in named]


def label(regimes_table, regime, preset):
  """`regime` as a table names it for `preset`: with its label (how its setting was chosen) when
  grid.regimes (config.json's, a plain dict) gives one, e.g. "chosen (not calibrated: failed
  learned)"."""
  text = (((regimes_table or {}).get(regime) or {}).get("labels") or {}).get(preset)
  return f"{regime} ({text})" if text else regime
