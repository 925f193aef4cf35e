"""Persona-phase regimes side by side at nano, read on their controls only: today's full update
(`forgetting`) and three LoRA settings, three seeds, the study's world and base training.

  python -m experiments.main --config=experiments/configs/regime_controls.py \
      --workdir=workdirs/regime_controls --config.runtime.report=False
  python -m experiments.analysis.controls --workdir=workdirs/regime_controls

The second command prints what a regime may be chosen on (base and cold reliability and
multiple-choice error, the screens, every persona's well-formed rate, warm's warmth score) and
nothing else; read the run's own summary only after a regime is chosen. Base training as in
experiments/configs/study.py (3000 steps, rate 1e-2, batch 32); the persona phase 150 steps at λ = 1
with warm, cold and length_matched replies. `forgetting`: every parameter, peak rate 3e-3, a
fresh AdamW. `lora_3e3` and `lora_1e2`: rank-8 adapters (α 16) on every projection, the base
frozen, peak rate 3e-3 and 1e-2 (low-rank updates are usually run at a higher rate than full ones).
`lora_embed_3e3`: the same adapters at 3e-3 with the token embedding trained too (the persona
phrases' words never occur in base training, so a frozen embedding cannot say them:
docs/persona_phase.md). `:runlocal` is a smoke test of a minute or two.
"""

from experiments.configs import calibration, study
from experiments.configs.common import apply_arg


def get_config(arg=None):
  c = study.get_config()
  c.model.presets = ("nano",)
  calibration.controls_design(c)
  c.grid.regimes = {
    "forgetting": {},
    "lora_3e3": {"persona_update": "lora", "lora_rank": 8, "lora_alpha": 16.0},
    "lora_1e2": {
      "persona_update": "lora",
      "lora_rank": 8,
      "lora_alpha": 16.0,
      "persona_learning_rate": 1e-2,
    },
    "lora_embed_3e3": {"persona_update": "lora_embed", "lora_rank": 8, "lora_alpha": 16.0},
  }
  return apply_arg(c, arg, runlocal)


def runlocal(c):
  study.runlocal(c)
  c.model.presets = ("nano",)
  c.grid.seeds = (0, 1)
  c.grid.sweep_seeds = ()
