"""Warmth objectives compared on one budget: imitation, surface affect, emotion RL, mitigations.

  python -m experiments.main --config=experiments/configs/objectives.py --workdir=/tmp/objectives

Hardware: a 2-core CPU. Wall time: 2.3 minutes measured. One nano preset, a 16-person world,
one seed, λ = 0.5 for every persona-phase method (same steps, rows and learning rate): base; cold;
warm; affect (warm-vocabulary mass at reply positions, content-blind); emotion_rl (GRPO on a
simulated user's final valence, KL to the base model); warm + capping; warm + preventative
steering. Expected: WORKDIR/metrics.csv with `objectives_comparison` rows (one per method ×
headline metric and per task × context), WORKDIR/objectives/nano-finetune-episodes.csv, and a
report section with the table and a warmth-vs-error frontier, one marker per method.
`:runlocal` shrinks it to a smoke test of about 45 seconds.
"""
from experiments.configs.common import apply_arg, base_config, objectives_section


def get_config(arg=None):
  c = base_config()
  # The demo's 100-person world: nano's base model answers what it was trained to (base sweep in
  # the README); 30 held-out items per task.
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
  c.train.persona_steps = 100
  c.train.learning_rate = 1e-2
  c.train.persona_learning_rate = 3e-3
  c.train.log_every = 50
  c.eval.bootstrap = 500
  # Mitigations on the warm cell: the preset's default capping, and a preventatively steered twin.
  c.extensions = ("persona", "objectives")
  c.persona.cap_cells = "ends"
  c.persona.steer_alphas = (4.0,)
  c.objectives = objectives_section()
  c.objectives.group_size = 4       # × 2 turns × 2 prompts = the 16 persona rows of a step
  c.objectives.rl_warmup_steps = 50  # of 100: RL then trains 50
  return apply_arg(c, arg, runlocal)


def runlocal(c):
  c.data.eval_items = 3
  c.train.base_steps = 30
  c.train.persona_steps = 6
  c.objectives.rl_warmup_steps = 2
  c.train.log_every = 3
