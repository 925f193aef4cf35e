"""The `persona` config section as a frozen dataclass that checks itself (defaults: configs/common.py).

Layer specs: all | back | 3 | 1-2 | 0,2, or `auto` for the preset's tested default
(persona/defaults.py); cap_percentile -1 is `auto` likewise.
"""

import dataclasses

from experiments.persona import capping, defaults, steering
from experiments.persona.vectors import VECTORS
from experiments.sections import from_section
from models.decode import INTERVENTION_ON
from models.presets import PRESETS


@dataclasses.dataclass(frozen=True)
class PersonaConfig:
  cap_vector: str  # axis (a floor) | warmth | sycophancy (a ceiling)
  cap_layers: str
  cap_percentile: int  # of the default assistant's projections; -1: auto
  intervention_on: str  # token positions capping touches: prompt | response | both
  cap_cells: str  # all plain cells | ends: only the base and max-λ cells
  sweep: bool  # also sweep percentiles × layer ranges on base and max-λ cells
  sweep_percentiles: tuple
  sweep_layers: tuple  # empty: each single layer, the back half, all layers
  max_capability_loss: float  # a swept default may raise capability error at most this
  steer_alphas: tuple  # preventative steering: α × the raw trait vector; () = off
  steer_default: bool  # also a steered twin at the preset's tested α
  steer_vector: str
  steer_layers: str
  extract_rows: int  # persona training rows projected for projection differences
  top_examples: int  # training rows listed per vector in persona/top_examples.csv

  @classmethod
  def from_config(cls, config):
    return from_section(cls, config.section("persona"), "persona").validate(config.model.presets)

  def validate(self, presets):
    """Raises ValueError naming the first bad persona field."""
    if self.intervention_on not in INTERVENTION_ON:
      raise ValueError(
        f"persona.intervention_on={self.intervention_on!r} must be one of "
        f"{', '.join(INTERVENTION_ON)}."
      )
    if not -1 <= int(self.cap_percentile) <= 100:
      raise ValueError(
        f"persona.cap_percentile={self.cap_percentile!r} must be -1 (auto) or 0..100."
      )
    if self.steer_vector not in VECTORS:  # cap_vector: CapSetting checks it
      raise ValueError(
        f"persona.steer_vector={self.steer_vector!r} must be one of {', '.join(VECTORS)}."
      )
    for q in self.sweep_percentiles:
      if isinstance(q, bool) or not isinstance(q, int) or not 0 <= q <= 100:
        raise ValueError(
          f"persona.sweep_percentiles contains {q!r}: each must be an integer 0..100."
        )
    if self.cap_cells not in ("all", "ends"):
      raise ValueError(f"persona.cap_cells={self.cap_cells!r} must be all or ends.")
    for field in ("extract_rows", "top_examples"):
      if getattr(self, field) < 1:
        raise ValueError(f"persona.{field}={getattr(self, field)} must be a positive integer.")
    for preset in presets:
      n = PRESETS[preset]["n_layers"]
      self.cap_setting(preset)
      self.steer_layers_of(preset)
      capping.sweep_settings(self.cap_vector, self.sweep_percentiles, self.sweep_layers, n)
    return self

  def cap_setting(self, preset):
    """The capping setting every cell is evaluated with (the preset's tested default unless set)."""
    n = PRESETS[preset]["n_layers"]
    layers = capping.parse_layers(defaults.cap_layers(self, preset), n)
    return capping.CapSetting(self.cap_vector, defaults.cap_percentile(self, preset), layers)

  def steer_layers_of(self, preset):
    return steering.steer_layers(defaults.steer_layers(self, preset), PRESETS[preset]["n_layers"])

  def steer_alphas_of(self, preset):
    """The α of every steered twin: steer_alphas, plus the preset's tested α if steer_default."""
    alphas = [float(a) for a in self.steer_alphas]
    if self.steer_default:
      alphas.append(float(defaults.for_preset(preset)["steer_alpha"]))
    return list(dict.fromkeys(alphas))
