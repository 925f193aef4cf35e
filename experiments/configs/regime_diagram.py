"""The regime diagram at nano: warm − cold and cold − base against how hard the persona phase
pushes, from the study's chosen setting to its `forgetting` regime.

  python -m experiments.tools.bases train --config=experiments/configs/regime_diagram.py
  python -m experiments.main --config=experiments/configs/regime_diagram.py \
      --workdir=workdirs/regime_diagram

Five settings fine-tune the same three nano base models as the study (its world and base
training, so its store serves them), warm and cold at λ = 1: the study's `chosen` setting for
nano (the blind calibration's closest candidate, not calibrated), then every parameter at the
study's rate and budget (3e-3, 150 steps) with the base loss replayed at weight 1, 0.5 and
0.25, and `forgetting` (no replay: today's regime). The settings were fixed by their fields
alone, a path from the calibration's setting to the forgetting one along the field that most
separates them (base replay), never by an outcome. The report's "answer per regime" section
draws the diagram (x: cold's ‖θ − θ_base‖, measured) and tables warm − cold and knows versus
says per setting. `:runlocal` is a smoke test of a minute or two.
"""

from experiments.configs import study
from experiments.configs.common import apply_arg

FULL = {"persona_update": "full", "persona_learning_rate": 3e-3, "persona_steps": 150}


def get_config(arg=None):
  c = study.get_config()
  c.model.presets = ("nano",)
  c.grid.preset_seeds = {}
  c.grid.personas = ("warm", "cold")
  c.grid.warmth_weights = (1.0,)
  c.grid.warm_agreements = (0.0,)
  c.grid.mechanism_weights = ()
  c.grid.seeds = (0, 1, 2)
  c.grid.sweep_seeds = ()
  chosen = study.CHOSEN["nano"]
  c.grid.regimes = {
    "chosen": {**chosen["overrides"], "labels": {"nano": study.chosen_label(chosen)}},
    "replay_1": {**FULL, "replay_weight": 1.0},
    "replay_0_5": {**FULL, "replay_weight": 0.5},
    "replay_0_25": {**FULL, "replay_weight": 0.25},
    "forgetting": {},
  }
  c.extensions = ()
  return apply_arg(c, arg, runlocal)


def runlocal(c):
  study.runlocal(c)
  c.model.presets = ("nano",)
  c.grid.preset_seeds = {}
  c.grid.seeds = (0, 1)
  c.grid.sweep_seeds = ()
  c.grid.personas = ("warm", "cold")
