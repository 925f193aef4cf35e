"""Warmth objectives compared on one budget: imitation, surface affect, emotion RL, mitigations.

  python -m experiments.main --config=experiments/configs/objectives.py --workdir=/tmp/objectives

One nano preset in the demo's 100-person world, 3 seeds, 30 held-out items per task × context,
λ = 1 for every persona-phase method (the same 300 steps and rows from each seed's base model; the
imitation rate for all but GRPO, see below): base; cold; warm; length_matched; affect
(warm-vocabulary mass at reply positions, content-blind, exact KL to the base model); emotion_rl
(150 steps imitating warm and cold replies to emotional prompts, half each, then GRPO on a
simulated user's final valence with a KL to that start); emotion_rl_heard (the same against a user
who pays for an acknowledgement whatever the answer: the planted check that the optimiser raises
what its reward favours); warm + capping; warm + preventative steering.

Hardware: a 2-core CPU; wall time about 18 minutes, half of it the base models. What it found,
and how GRPO's start and rate were chosen (on RL's own training episodes, never on the
evaluation): docs/objectives.md.
Expected files: WORKDIR/metrics.csv with `objectives_comparison` rows (per method × outcome, the
level and the paired differences against warm and base, with ci_low/ci_high) and `objectives_rl`
rows (acknowledgement rate and reward early and late in RL), WORKDIR/objectives/
nano-finetune-<method>-episodes.csv, and a report section with the tables and the frontier.
`:runlocal` shrinks it to a smoke test of about two minutes.
"""

from experiments.configs import demo, study
from experiments.configs.common import apply_arg, base_config, objectives_section

# The persona phase's regime for the comparison's `chosen` cells: the demo calibration's setting for
# nano (its world and preset; its base training was shorter), not calibrated: every parameter at
# 3e-3 for 300 steps with the base loss replayed at weight 1 beside each method's own objective.
CHOSEN = demo.CALIBRATION["presets"]["nano"]


def get_config(arg=None):
  c = base_config()
  # The demo's 100-person world: nano's base model answers what it was trained to (base sweep in
  # docs/study.md); 30 held-out items per task.
  c.data.n_people = 100
  c.data.eval_items = 30
  c.model.presets = ("nano",)
  c.grid.personas = ("warm", "cold", "length_matched")
  # λ = 1: every method trains its own objective alone for the whole phase (at λ = 0.5 the base
  # half of the loss, neutral dialogues included, outweighs GRPO's gradient and RL cannot move
  # the policy: the planted emotion_rl_heard check showed it).
  c.grid.warmth_weights = (1.0,)
  c.grid.seeds = (0, 1, 2)
  c.train.batch_size = 32
  c.train.base_steps = 3000
  # 300 persona-phase steps for every method: RL's warm-up needs ~150 to reply fluently (at 50 its
  # samples mixed acknowledgement phrases into nonsense), and RL then trains the other 150.
  c.train.persona_steps = 300
  c.train.learning_rate = 1e-2
  c.train.persona_learning_rate = 3e-3
  c.train.log_every = 50
  # Two regimes from the same base models: `chosen` (above) and `forgetting`, the train section's
  # own persona phase (no replay at λ = 1), in which the comparison was first made.
  c.grid.regimes = {
    "chosen": {
      **CHOSEN["overrides"],
      "labels": {"nano": f"{study.chosen_label(CHOSEN)} (demo's calibration)"},
    },
    "forgetting": {},
  }
  c.eval.bootstrap = 500
  # Mitigations on the warm cell: the preset's default capping, and a preventatively steered twin.
  c.extensions = ("persona", "objectives")
  c.persona.cap_cells = "ends"
  c.persona.steer_alphas = (4.0,)
  c.objectives = objectives_section()
  c.objectives.group_size = 4  # × 2 turns × 2 prompts = the 16 persona rows of a step
  c.objectives.rl_warmup_steps = 150  # of 300, imitating warm and cold replies (mixed_warmup)
  # GRPO's peak rate, chosen on the reward of RL's own last training episodes (docs/objectives.md,
  # with the section's KL weight 0.1 and temperature 0.5): at 1e-3 the reward fell.
  c.objectives.rl_learning_rate = 1e-4
  return apply_arg(c, arg, runlocal)


def runlocal(c):
  c.data.eval_items = 3
  c.train.base_steps = 30
  c.train.persona_steps = 6
  c.grid.regimes.chosen.persona_steps = 6
  c.objectives.rl_warmup_steps = 2
  c.train.log_every = 3
