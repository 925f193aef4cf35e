"""The full sweep: λ × persona × ρ × preset × seed × protocol, packed into one program per scale.

  python -m experiments.main --config=experiments/configs/sweep.py --workdir=workdirs/sweep

Cells: per preset, protocol and seed, λ ∈ {.25, .5, .75, 1} for warm (× ρ ∈ {0, .5, 1}), cold and
length_matched, one λ = 0 cell, and under `finetune` the base model: 22 (finetune) and 21 (mixture)
cells per seed, 110 + 105 per preset over five seeds, 860 in all. Every (preset, protocol) trains
as one vmapped program (at most `grid.max_pack_size` cells each): 8 packs for the whole sweep.

Hardware: one GPU (H100 class) with `--config.model.compute_dtype=bfloat16`; the same command runs
on a TPU pod (launch_tpu.sh adds `--config.runtime.distributed=True`; set `--config.mesh.ensemble`
to spread the packed cells over the chips) or on 8 GPUs (mesh.ensemble=8). Wall time on one H100:
roughly 1–2 hours, an estimate from measured throughput of packed nano–mini models (~10% MFU) and
`small` (~18%), not a measurement of this sweep: run `python -m experiments.tools.bench` first.
It can be stopped at any time (Ctrl-C, SIGTERM, a preemption or a kill) and restarted with the
same command: finished cells are skipped, unfinished stages resume from their latest checkpoint.
Expected: metrics.csv with every cell, report.html with scaling plots of the warm − cold effect.

`:runlocal` shrinks it to a CPU smoke test of a few minutes (nano, λ ∈ {0, 1}, ρ ∈ {0, 1}, two
seeds, both protocols: 18 cells in 2 programs).
"""

from experiments.configs.common import apply_arg, base_config


def get_config(arg=None):
  c = base_config()
  c.data.n_people = 200
  c.data.eval_items = 25
  c.model.presets = ("nano", "micro", "mini", "small")
  c.grid.protocols = ("finetune", "mixture")
  c.grid.personas = ("warm", "cold", "length_matched")
  c.grid.warmth_weights = (0.0, 0.25, 0.5, 0.75, 1.0)
  c.grid.warm_agreements = (0.0, 0.5, 1.0)
  c.grid.seeds = (0, 1, 2, 3, 4)
  c.grid.max_pack_size = 128
  c.train.batch_size = 64
  c.train.base_steps = 3000
  c.train.persona_steps = 1000
  c.train.checkpoint_every = 500
  return apply_arg(c, arg, runlocal)


def runlocal(c):
  c.data.n_people = 24
  c.data.eval_items = 4
  c.model.presets = ("nano",)
  c.grid.personas = ("warm", "cold")
  c.grid.warmth_weights = (0.0, 1.0)
  c.grid.warm_agreements = (0.0, 1.0)
  c.grid.seeds = (0, 1)
  c.train.batch_size = 16
  c.train.base_steps = 40
  c.train.persona_steps = 20
  c.train.checkpoint_every = 10
  c.eval.bootstrap = 100
