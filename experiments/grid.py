"""The factor grid: cells with stable ids, grouped into packs that train as one compiled program."""

import dataclasses
import itertools

from experiments import data
from experiments.runtime.results import UNTAGGED_REGIMES, cell_id
from experiments.sections import from_section
from models.presets import PRESETS
from tasks.mixtures import PERSONAS

PROTOCOLS = ("finetune", "mixture")


@dataclasses.dataclass(frozen=True)
class Cell:
  """One trained model: a preset and a level of every factor."""

  preset: str
  protocol: str
  persona: str  # none (the base model) or one of tasks.mixtures.PERSONAS
  warmth_weight: float  # λ
  warm_agreement: float  # ρ
  seed: int  # replicate: initialisation and data order both derive from it
  # The persona phase's regime (experiments/regimes.py); `none` for a base model or a mixture cell.
  regime: str = "default"
  # Replicate of the persona phase on base seed `seed`: its own persona-data order and adapter
  # initialisation (grid.finetune_seeds); 0 for base models, mixture cells and the first replicate.
  finetune_seed: int = 0

  @property
  def id(self):
    """A stable id: the same cell gets the same id in every rerun and every sweep."""
    return cell_id(
      self.preset,
      self.protocol,
      self.persona,
      self.warmth_weight,
      self.warm_agreement,
      self.seed,
      self.regime,
      self.finetune_seed,
    )

  @property
  def pack(self):
    """Cells of one pack differ only in array-valued factors and share one compiled program:
    each regime is a pack of its own (its shapes, steps and optimizer differ), the base models
    are in the pack of the train section's regime, `default`."""
    if self.regime in UNTAGGED_REGIMES:
      return (self.preset, self.protocol)
    return (self.preset, f"{self.protocol}@{self.regime}")


@dataclasses.dataclass(frozen=True)
class GridConfig:
  """The `grid` section: the factors every cell takes a level of (defaults in configs/common.py)."""

  protocols: tuple
  personas: tuple
  warmth_weights: tuple
  warm_agreements: tuple
  seeds: tuple
  finetune_seeds: int  # persona-phase replicates per base seed (nested in it)
  lambda0_per_persona: bool
  max_pack_size: int
  mechanism_weights: tuple
  sweep_seeds: tuple
  regimes: dict  # name → overrides of the train section's persona-phase fields
  # preset → the seeds of grid.seeds it trains (a preset it leaves out: every seed); optional.
  preset_seeds: dict = dataclasses.field(default_factory=dict)

  @classmethod
  def from_config(cls, config):
    grid = from_section(cls, config.grid, "grid")
    regimes = {name: dict(fields or {}) for name, fields in dict(grid.regimes or {}).items()}
    preset_seeds = {p: tuple(s) for p, s in dict(grid.preset_seeds).items()}
    return dataclasses.replace(grid, regimes=regimes, preset_seeds=preset_seeds).validate()

  def validate(self):
    """One sentence per bad grid value, naming the field and the allowed values."""
    for p in self.protocols:
      if p not in PROTOCOLS:
        raise ValueError(f"grid.protocols contains {p!r}: allowed are {', '.join(PROTOCOLS)}.")
    for p in self.personas:
      if p not in PERSONAS:
        raise ValueError(f"grid.personas contains {p!r}: allowed are {', '.join(PERSONAS)}.")
    for field, symbol in (
      ("warmth_weights", "λ"),
      ("warm_agreements", "ρ"),
      ("mechanism_weights", "λ"),
    ):
      for v in getattr(self, field):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
          raise ValueError(f"grid.{field} contains {v!r}: {symbol} must lie in [0, 1].")
    if (
      not self.seeds
      or len(set(self.seeds)) != len(self.seeds)
      or not all(isinstance(s, int) and not isinstance(s, bool) for s in self.seeds)
    ):
      raise ValueError(
        f"grid.seeds={list(self.seeds)!r} must be a non-empty list of distinct integers."
      )
    k = self.finetune_seeds
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
      raise ValueError(
        f"grid.finetune_seeds={k!r} must be an integer >= 1 (persona-phase "
        "replicates per base seed)."
      )
    if k > 1 and any(not 0 <= s < data.FINETUNE_SEED_STRIDE for s in self.seeds):
      raise ValueError(
        f"grid.seeds={list(self.seeds)!r} must lie in [0, "
        f"{data.FINETUNE_SEED_STRIDE}) with grid.finetune_seeds > 1, so that "
        "every replicate reads its own persona-data stream."
      )
    stray = [v for v in self.mechanism_weights if v not in self.warmth_weights or v == 0]
    if stray:
      raise ValueError(
        f"grid.mechanism_weights contains {stray[0]!r}: it must be a λ > 0 of "
        f"grid.warmth_weights {list(self.warmth_weights)}."
      )
    stray = [s for s in self.sweep_seeds if s not in self.seeds]
    if stray or len(set(self.sweep_seeds)) != len(self.sweep_seeds):
      raise ValueError(
        f"grid.sweep_seeds={list(self.sweep_seeds)!r} must be distinct seeds of "
        f"grid.seeds {list(self.seeds)} (empty: every seed)."
      )
    for preset, seeds in self.preset_seeds.items():
      if (
        preset not in PRESETS
        or not seeds
        or len(set(seeds)) != len(seeds)
        or any(s not in self.seeds for s in seeds)
      ):
        raise ValueError(
          f"grid.preset_seeds.{preset}={list(seeds)!r} must name a preset and a "
          f"non-empty list of distinct seeds of grid.seeds {list(self.seeds)}."
        )
    if not isinstance(self.max_pack_size, int) or self.max_pack_size < 0:
      raise ValueError(
        f"grid.max_pack_size={self.max_pack_size!r} must be an integer >= 0 (0: no limit)."
      )
    return self

  def seeds_of(self, preset):
    """The seeds `preset` trains, in grid.seeds' order: its base models and their cells."""
    chosen = self.preset_seeds.get(preset)
    return [s for s in self.seeds if chosen is None or s in chosen]

  def regime_trains(self, regime, seed):
    """Whether seed `seed`'s persona cells train in `regime` (its `seeds` entry)."""
    seeds = self.regimes[regime].get("seeds")
    return seeds is None or seed in seeds

  def sweeps(self, seed):
    """Whether `seed` trains every cell, or only the primary ones (see `expand`)."""
    return not self.sweep_seeds or seed in self.sweep_seeds


def validate_presets(presets):
  for p in presets:
    if p not in PRESETS:
      raise ValueError(
        f"model.presets contains unknown preset {p!r}: allowed are {', '.join(PRESETS)}."
      )


def expand(grid, presets):
  """Every cell of the grid (a GridConfig) for each of `presets`, in a deterministic order;
  `none` cells are the base models.

  At λ = 0 the persona data get zero weight, so every persona trains the same model: the grid keeps
  one λ = 0 cell per seed (under the first persona) unless `grid.lambda0_per_persona` asks for all,
  which turns the identity into a visible check at the price of extra cells. The mechanism cells
  (warm_after, and warm with ρ > 0) are trained at every λ > 0, or only at `grid.mechanism_weights`
  when given.

  Finetune cells are repeated in every regime of `grid.regimes` (one base model per seed serves
  them all; a regime with `seeds` trains only those), and each persona cell `grid.finetune_seeds` times (fine-tuning seeds nested in the
  base seed); mixture cells have no persona phase, so no regime (`none`).

  A preset trains the seeds `grid.preset_seeds` gives it (default: every seed). With
  `grid.sweep_seeds`, seeds outside it train only what the primary comparisons need: the
  base model and each persona but warm_after at the largest λ, ρ = 0. Replicates are spent where
  the intervals are read first (warm − cold, warm − length_matched), and the λ sweep and the
  mechanism cells keep the sweep seeds.
  """
  cells = []
  top = max(grid.warmth_weights)
  for preset, protocol in itertools.product(presets, grid.protocols):
    regimes = list(grid.regimes) if protocol == "finetune" else ["none"]
    for seed in grid.seeds_of(preset):
      if protocol == "finetune":
        cells.append(Cell(preset, protocol, "none", 0.0, 0.0, int(seed), "none"))
      for regime, persona, lam in itertools.product(regimes, grid.personas, grid.warmth_weights):
        if protocol == "finetune" and not grid.regime_trains(regime, seed):
          continue
        if lam == 0 and persona != grid.personas[0] and not grid.lambda0_per_persona:
          continue
        if not grid.sweeps(seed) and (lam != top or persona == "warm_after"):
          continue
        mechanism = (
          lam > 0
          and (not grid.mechanism_weights or lam in grid.mechanism_weights)
          and grid.sweeps(seed)
        )
        if persona == "warm_after" and lam > 0 and not mechanism:
          continue
        rhos = grid.warm_agreements if persona == "warm" and mechanism else [0.0]
        replicates = range(grid.finetune_seeds) if protocol == "finetune" else [0]
        for rho, k in itertools.product(dict.fromkeys(float(r) for r in rhos), replicates):
          cells.append(Cell(preset, protocol, persona, float(lam), rho, int(seed), regime, k))
  return cells


def packs(cells, max_size=0):
  """Cells grouped by pack key, order preserved.

  max_size > 0 splits a pack into consecutive chunks of at most that many cells (keys gain the
  chunk index), bounding one program's memory; the split depends on the grid only, never on which
  cells are finished, so chunk names stay stable across reruns.
  """
  out = {}
  for c in cells:
    out.setdefault(c.pack, []).append(c)
  if max_size <= 0:
    return out
  return {
    key + (k,): pack[i : i + max_size]
    for key, pack in out.items()
    for k, i in enumerate(range(0, len(pack), max_size))
  }
