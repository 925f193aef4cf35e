"""The blind calibration of the persona phase's regime, for the study's presets or the demo's.

  python -m experiments.tools.bases train --config=experiments/configs/calibration.py
  python -m experiments.tools.calibrate --config=experiments/configs/calibration.py \
      --workdir=workdirs/calibration
  python -m experiments.tools.calibrate --config=experiments/configs/calibration.py:demo \
      --workdir=workdirs/calibration

The first command fills the base-model store (once; the study's own runs reuse the same bases).
`:demo` calibrates the demo's presets (nano, micro) in the demo's world and base training;
`:runlocal` is a smoke test of a few minutes. The rule and its constants:
experiments/analysis/calibration.py; what came out: docs/calibration.md.

The candidates were fixed before any of them was trained, from what the controls alone had shown
(docs/persona_phase.md): today's full update at 3e-3 with no base replay makes
the control forget, and plain LoRA cannot say the persona words (their embeddings decayed in base
training), so the grid spans gentler full updates (rate × budget × replay) and LoRA with the
token embedding trained (rank × rate). Replay weight 1 keeps the base loss at full weight beside
the persona loss (λ = 1); -1 is w = 1 − λ = 0, no replay. Three seeds, warm, cold and
length_matched at λ = 1, every held-out item and context of the world calibrated.
"""

import ml_collections

from experiments.configs import demo, study
from experiments.configs.common import parse_arg

LORA = {"persona_update": "lora_embed", "lora_alpha": 16.0, "replay_weight": 1.0}
REPLAY = {"replay_weight": 1.0}
# Candidate regimes, per round. Every field not named is the calibrated config's own (train
# section): fresh AdamW, its warm-up. A ConfigDict keeps names sorted, so the plan's `order`, which
# the tie-break of equally intense candidates reads, is alphabetical.
# Round 1 (plans 7792c0d94b0d, study; 0abe0031e3ce, demo): gentle full updates (rate × budget ×
# replay) and LoRA with the embedding trained (rank × rate), all at most 150 steps.
ROUND1 = {
  "full_1e4": {**REPLAY, "persona_learning_rate": 1e-4, "persona_steps": 150},
  "full_3e4": {**REPLAY, "persona_learning_rate": 3e-4, "persona_steps": 150},
  "full_1e3": {**REPLAY, "persona_learning_rate": 1e-3, "persona_steps": 150},
  "full_3e4_short": {**REPLAY, "persona_learning_rate": 3e-4, "persona_steps": 50},
  "full_3e4_noreplay": {"persona_learning_rate": 3e-4, "persona_steps": 150, "replay_weight": -1.0},
  "lora8_1e3": {**LORA, "lora_rank": 8, "persona_learning_rate": 1e-3, "persona_steps": 150},
  "lora8_3e3": {**LORA, "lora_rank": 8, "persona_learning_rate": 3e-3, "persona_steps": 150},
  "lora2_3e3": {**LORA, "lora_rank": 2, "persona_learning_rate": 3e-3, "persona_steps": 150},
}
# Round 2, chosen on round 1's controls alone (docs/calibration.md): warm's style was learned only
# by the most intense candidates (LoRA at 3e-3: 0.58-0.76 of the ceiling) and below them every
# persona's replies lost their form, so this round spends more budget and rate: today's full rate
# with base replay, and LoRA with longer budgets, a higher rate and a higher rank.
ROUND2 = {
  "full_3e3": {**REPLAY, "persona_learning_rate": 3e-3, "persona_steps": 150},
  "full_3e3_300": {**REPLAY, "persona_learning_rate": 3e-3, "persona_steps": 300},
  "full_1e3_450": {**REPLAY, "persona_learning_rate": 1e-3, "persona_steps": 450},
  "lora8_3e3_300": {**LORA, "lora_rank": 8, "persona_learning_rate": 3e-3, "persona_steps": 300},
  "lora8_3e3_450": {**LORA, "lora_rank": 8, "persona_learning_rate": 3e-3, "persona_steps": 450},
  "lora8_1e2_150": {**LORA, "lora_rank": 8, "persona_learning_rate": 1e-2, "persona_steps": 150},
  "lora8_1e2_450": {**LORA, "lora_rank": 8, "persona_learning_rate": 1e-2, "persona_steps": 450},
  "lora16_3e3_450": {**LORA, "lora_rank": 16, "persona_learning_rate": 3e-3, "persona_steps": 450},
}
ROUNDS = {"round1": ROUND1, "round2": ROUND2}
CANDIDATES = ROUND2  # the default: the latest round


def get_config(arg=None):
  opts = parse_arg(arg, ("demo", *ROUNDS))
  source = demo if "demo" in opts["variants"] else study
  rounds = [v for v in opts["variants"] if v in ROUNDS]
  c = source.get_config("runlocal" if opts["runlocal"] else None)
  c.model.presets = ("nano", "micro") if source is demo else ("pico", "nano")
  controls_design(c)
  c.grid.regimes = dict(ROUNDS[rounds[-1]] if rounds else CANDIDATES)
  c.calibration = ml_collections.ConfigDict()
  c.calibration.of = f"experiments/configs/{source.__name__.rsplit('.', 1)[1]}.py"
  c.calibration.delta = 0.03  # cold − base within ±3 points
  c.calibration.ci_level = 0.90  # two one-sided tests at 5% each
  c.calibration.warmth_fraction = 0.9  # warm's warmth ≥ 90% of its training replies'
  c.calibration.well_formed_margin = 0.05  # no persona more than 5 points less well formed
  c.calibration.bootstrap = 1000
  c.calibration.bootstrap_seed = 0
  if opts["runlocal"]:
    runlocal(c)
  if opts["preset"]:
    c.model.presets = (opts["preset"],)
  return c


def controls_design(c):
  """The cells a regime is judged on: the base models and warm, cold and length_matched at λ = 1,
  ρ = 0, three seeds, each a full replicate; no extension."""
  c.grid.protocols = ("finetune",)
  c.grid.personas = ("warm", "cold", "length_matched")
  c.grid.warmth_weights = (1.0,)
  c.grid.warm_agreements = (0.0,)
  c.grid.mechanism_weights = ()
  c.grid.seeds = (0, 1, 2)
  c.grid.sweep_seeds = ()
  c.grid.finetune_seeds = 1
  if "preset_seeds" in c.grid:  # every preset on the same three seeds
    with c.grid.unlocked():
      del c.grid["preset_seeds"]
  c.extensions = ()


def runlocal(c):
  c.model.presets = ("nano",)
  c.grid.seeds = (0, 1)
  c.grid.regimes = {
    "full_3e4_short": dict(ROUND1["full_3e4_short"], persona_steps=10),
    "lora2_3e3": dict(ROUND1["lora2_3e3"], persona_steps=10),
  }
  c.calibration.bootstrap = 200
