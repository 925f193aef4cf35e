"""Persona geometry in full: vectors, Assistant axis, drift, the capping and steering sweeps.

  python -m experiments.main --config=experiments/configs/persona.py --workdir=/tmp/persona

Hardware: a 2-core CPU. Wall time: 18.5 minutes measured (nano and micro, 48 cells of which 16
steered twins, 9 + 15 capping settings; `:runlocal` 2 minutes).
The demo's models (same world, steps and learning rates) with ρ ∈ {0, 0.5} so that sycophancy
varies across cells, capping swept over percentiles {5, 25, 50} × layer ranges (each layer, the
back half, all) on the base and λ = 1 cells, and preventative steering at α ∈ {2, 8} on the warm
λ = 1 cells. Expected: the metrics of the demo plus persona_geometry rows, capped (`cap@...`) and
steered (`train-steer...`) cells, and WORKDIR/persona/{defaults.json, capping_tradeoff.csv,
steering_tradeoff.csv, <preset>-finetune/geometry-s*.npz, top_examples.csv}. defaults.json holds
the setting each preset's trade-off picks; experiments/persona/defaults.py records it as the
preset's tested default (with the run it came from).
"""

from experiments.configs import demo


def get_config(arg=None):
  c = demo.get_config(arg)  # `:runlocal` and `:preset=` act exactly as on the demo
  c.grid.warm_agreements = (0.0, 0.5)
  c.persona.sweep = True
  c.persona.cap_cells = "all"
  c.persona.sweep_percentiles = (5, 25, 50)
  c.persona.steer_alphas = (2.0, 8.0)
  return c
