"""The demo: two presets, λ ∈ {0, 1}, warm, cold and length_matched, two seeds, every task, in a
world of 100 people.

  python -m experiments.main --config=experiments/configs/demo.py --workdir=/tmp/demo

Hardware: a 2-core CPU. Wall time: about 6 to 10 minutes (docs/demo.md has the measurements).
Expected: a bottom line per preset (warm − cold at λ = 1, pooled over the reliability tasks its
base model answers better than the floor and a constant answer, per context, with
crossed-bootstrap intervals in words: mostly "inconclusive" at this size), and report.html with
the table of error-rate changes per task × context and the primary family's q-values. micro's base
model gets 37.5% of held-out factual_qa wrong (neutral context). For narrow intervals see
experiments/configs/study.py.
`python -m experiments.analysis.validate --config=experiments/configs/demo.py` checks, without training,
that the instrument scores every reply style alike in this world.
`:runlocal` shrinks it to a smoke test of about a minute; `:preset=micro` keeps one preset.
"""

from experiments.configs.common import apply_arg, base_config

# The persona phase's regime for the demo's presets, as the blind calibration left it
# (docs/calibration.md; its config and plan hash below): no candidate of either round passed the
# controls at nano or micro, so the demo keeps the train section's own regime. `regime` is the
# closest candidate (fewest failed tests, then least intense), `overrides` its fields, `failed` the
# tests it failed.
CALIBRATION = {
  "config": "experiments/configs/calibration.py:demo,round2",
  "plan": "03e8f605edab26e0b65e3ba45434724baa048d2c26c1ec42af88a28c75f4d24f",
  "presets": {
    "nano": {
      "status": "not calibrated",
      "regime": "full_3e3_300",
      "overrides": {"persona_learning_rate": 3e-3, "persona_steps": 300, "replay_weight": 1.0},
      "failed": ("well_formed", "reliability", "multiple_choice", "capability", "safety_refusal"),
    },
    "micro": {
      "status": "not calibrated",
      "regime": "lora16_3e3_450",
      "overrides": {
        "persona_update": "lora_embed",
        "lora_rank": 16,
        "lora_alpha": 16.0,
        "persona_learning_rate": 3e-3,
        "persona_steps": 450,
        "replay_weight": 1.0,
      },
      "failed": (
        "learned",
        "well_formed",
        "reliability",
        "multiple_choice",
        "capability",
        "safety_refusal",
      ),
    },
  },
}


def get_config(arg=None):
  c = base_config()
  # 50 people trained on, 50 held out: enough question-answer pairs for micro to learn to answer
  # about people it only read of (held-out factual_qa error, seeds 0 and 1, neutral context:
  # 29% at 1500 base steps, 33% at 1000; nano needs more steps than the demo gives).
  c.data.n_people = 100
  c.data.eval_items = 12
  c.model.presets = ("nano", "micro")
  # length_matched: impersonal filler as long as the warm phrasing, so "warm words" and "longer
  # replies" can be told apart.
  c.grid.personas = ("warm", "cold", "length_matched")
  # λ = 0 and 1 only: the demo's 10-minute budget (the study and the sweep have the λ grid).
  c.grid.warmth_weights = (0.0, 1.0)
  c.grid.seeds = (0, 1)
  c.train.batch_size = 16  # rows; packed, they carry ~3x as many examples
  c.train.base_steps = 1000
  c.train.persona_steps = 100
  c.train.learning_rate = 1e-2  # small models tolerate (and need) a high rate in few steps
  c.train.persona_learning_rate = 3e-3
  # Persona geometry, small: the preset's tested capping setting on the base and λ = 1 cells.
  c.extensions = ("persona",)
  c.persona.cap_cells = "ends"
  return apply_arg(c, arg, runlocal)


def runlocal(c):
  c.data.eval_items = 4
  c.model.presets = ("nano",)
  c.train.base_steps = 30
  c.train.persona_steps = 10
  c.eval.bootstrap = 200
