"""Preventative steering: α·v added to the residual stream during the persona phase only.

For every warm cell at the grid's largest λ and every α in `persona.steer_alphas`, a steered twin
trains in the same packed program (same base model, same data order) with α times the base
model's raw trait vector (warmth by default; α = 1 is one warm-minus-cold mean difference at that
layer) added at the chosen layers, at every token of the persona rows (prompt and reply; the
base rows are left alone, so L_base still anchors the model as it is). Evaluation removes it: the twin is scored
plainly, labelled `train-steer+4:L1` in the intervention column, so paired statistics compare it
with its plain twin (`none`).

Plain cells of a steered pack get a switched-off layer mask: their forward pass is the same
arithmetic as without the hook (tests/persona/test_steering.py checks α = 0 equals plain fine-tuning).
"""

import dataclasses

import numpy as np

from experiments import grid
from experiments.persona.capping import layers_label, parse_layers
from experiments.persona.vectors import VECTORS
from models.interventions import Intervention


def label(vector, alpha, layers):
  """`train-steer+4:L1` for the warmth vector, `train-steer[sycophancy]-2:L0-1` otherwise."""
  name = "train-steer" if vector == "warmth" else f"train-steer[{vector}]"
  return f"{name}{alpha:+g}:{layers_label(layers)}"


@dataclasses.dataclass(frozen=True)
class SteeredCell(grid.Cell):
  """A persona cell trained with preventative steering; everything else as its plain twin."""

  alpha: float = 0.0
  vector: str = "warmth"
  layers: tuple = ()

  @property
  def id(self):
    name = "psteer" if self.vector == "warmth" else f"psteer-{self.vector}"
    return f"{super().id}-{name}{self.alpha:g}-{layers_label(self.layers)}"

  @property
  def plain(self):
    """The twin trained without steering."""
    return grid.Cell(*(getattr(self, f.name) for f in dataclasses.fields(grid.Cell)))

  @property
  def intervention(self):
    return label(self.vector, self.alpha, self.layers)


def extra_cells(cells, alphas, vector, layers_for):
  """Steered twins of the warm finetune cells at the largest λ; layers_for(preset) gives layers."""
  warm = [c for c in cells if c.protocol == "finetune" and c.persona == "warm"]
  top = max((c.warmth_weight for c in warm), default=0.0)
  out = []
  for c in warm:
    if c.warmth_weight != top or top <= 0:
      continue
    for alpha in alphas:
      out.append(
        SteeredCell(
          *dataclasses.astuple(c),
          alpha=float(alpha),
          vector=vector,
          layers=tuple(layers_for(c.preset)),
        )
      )
  return out


def steer_layers(spec, n_layers):
  return parse_layers(spec, n_layers, "persona.steer_layers")


def training_intervention(cells, geoms_by_seed):
  """The persona-phase intervention of a pack (leading axis E), or None if no cell steers."""
  if not any(isinstance(c, SteeredCell) for c in cells):
    return None
  some = next(iter(geoms_by_seed.values()))
  n_layers, width = some.vectors_VLD.shape[1:]
  direction_ELD = np.zeros((len(cells), n_layers, width), np.float32)
  mask_EL = np.zeros((len(cells), n_layers), np.float32)
  add_EL1 = np.zeros((len(cells), n_layers, 1), np.float32)
  for e, c in enumerate(cells):
    if not isinstance(c, SteeredCell):
      continue  # mask stays off: the exact plain forward pass
    raw_LD = np.nan_to_num(geoms_by_seed[c.seed].vectors_VLD[VECTORS.index(c.vector)])
    direction_ELD[e] = raw_LD
    on = list(c.layers)
    mask_EL[e, on] = 1.0
    add_EL1[e, on, 0] = c.alpha * np.linalg.norm(raw_LD[on], axis=-1)
  inf_E1 = np.full((len(cells), 1), np.inf, np.float32)
  return Intervention(direction_ELD, mask_EL, add_EL1, -inf_E1, inf_E1, None)
