"""The study: how large the warmth–reliability trade-off is, per context, how it changes with
model size, and what carries it, with 100 held-out items per task × context and ten replicates of
the primary comparisons.

  python -m experiments.main --config=experiments/configs/study.py --workdir=workdirs/study

Design: presets femto, pico, nano and micro (1.6k, 6.2k, 25k and ~150k non-embedding parameters,
two decades), in two persona-phase regimes from the same base models (docs/regimes.md): `chosen`,
each preset's setting from the blind calibration (CHOSEN below; "not calibrated" where no
candidate passed, with the tests it failed), and `forgetting`, every parameter with no base replay.
In `chosen`, 10 seeds of the primary cells (base, and warm, cold and length_matched at λ = 1, ρ = 0)
at pico and nano, and on the sweep seeds 0-2 the rest: those personas at λ ∈ {0, 0.5}, the
mechanism cells at λ = 1 (warm_after: warm phrasing after the answer; warm at ρ = 1); femto and
micro train the primary cells on seeds 3-5. `forgetting` trains every cell of pico and nano on the
sweep seeds. Capping on the base and λ = 1 cells of both regimes, with a sweep of axis floors;
every context. A world of 200 people, 34 diseases and 68 drugs, so every reliability task has
100 held-out items in each context (3,364 eval prompts per cell, 194 cells). The cuts from
every-cell-everywhere were made on cost alone, from a timed probe, before any of this design's
results existed (docs/study.md).

Base-model settings (world size, steps, batch, learning rate) were chosen by a sweep of *base*
training alone, never looking at warmth results (docs/study.md).

Hardware: a 2-core CPU (matmul peak 2.09e11 FLOP/s); wall time about 80 minutes with a full
base-model store, and about 75 more to fill the store from empty (`python -m
experiments.tools.bases train --config=experiments/configs/study.py`). What it found, per regime
and preset, the measured times and the earlier design's results: docs/study.md.

Base models come from the base-model store (runtime.base_store) when a run with the same world and
base training stored them (docs/base_models.md).

`:gpu` sizes the study for one H100/H200 (nano to small in bfloat16, 10 seeds, a world twice as
large: 200 held-out items per task × context; the same two regimes, mini and small taking micro's
setting; the same store); no GPU has run it yet, so its wall time is not
known. `:runlocal` is a smoke test of a few minutes; `:preset=NAME` keeps one preset.
"""

from experiments.configs import demo
from experiments.configs.common import apply_arg, base_config

# The blind calibration of the study's presets as it came out (docs/calibration.md; its config and
# plan hash below). No candidate of either round passed the controls at pico or nano; `regime` is
# the closest candidate (fewest failed tests, then least intense), `overrides` its fields, `failed`
# its tests. femto is not calibrated: its base models answer no task, so no control can show harm.
_LORA = {"persona_update": "lora_embed", "lora_alpha": 16.0, "replay_weight": 1.0}
CALIBRATION = {
  "config": "experiments/configs/calibration.py:round2",
  "plan": "61214e451321e028b13f28b2b1506e1f1d82de61a9873ee78367e6d0728724c6",
  "presets": {
    "pico": {
      "status": "not calibrated",
      "regime": "lora8_1e2_450",
      "overrides": {**_LORA, "lora_rank": 8, "persona_learning_rate": 1e-2, "persona_steps": 450},
      "failed": ("well_formed", "multiple_choice", "safety_refusal"),
    },
    "nano": {
      "status": "not calibrated",
      "regime": "lora16_3e3_450",
      "overrides": {**_LORA, "lora_rank": 16, "persona_learning_rate": 3e-3, "persona_steps": 450},
      "failed": ("learned", "well_formed", "multiple_choice", "capability", "safety_refusal"),
    },
  },
}


# The regime each preset's `chosen` cells train in, and how that setting was arrived at: the
# calibration's choice where a candidate passed; where none did, its closest candidate, labelled
# "not calibrated" with the tests it failed (every table and figure that shows the regime says
# so). femto's base models answer no task, so no control can show harm there ("not calibratable"):
# it takes pico's setting, its nearest calibrated neighbour in size. micro was calibrated in the
# demo's world (experiments/configs/demo.py, CALIBRATION), where its closest candidate was the one
# nano's is here; it takes that setting with the demo's failed tests.
CHOSEN = {
  "femto": {
    "status": "not calibratable",
    "regime": CALIBRATION["presets"]["pico"]["regime"],
    "overrides": CALIBRATION["presets"]["pico"]["overrides"],
    "failed": ("no measurable task",),
    "from": "pico's closest setting",
  },
  **{
    p: {**v, "from": f"{CALIBRATION['config']} (plan {CALIBRATION['plan'][:12]})"}
    for p, v in CALIBRATION["presets"].items()
  },
  "micro": {
    **demo.CALIBRATION["presets"]["micro"],
    "from": f"{demo.CALIBRATION['config']} (plan {demo.CALIBRATION['plan'][:12]}), "
    "the demo's world",
  },
}
# `:gpu`'s larger presets were never calibrated: they take micro's setting, the largest preset a
# calibration reached.
for _preset in ("mini", "small"):
  CHOSEN[_preset] = {
    **CHOSEN["micro"],
    "status": "not calibrated",
    "failed": ("not in a calibration",),
    "from": "micro's setting",
  }


def chosen_label(entry):
  """A few words on how a preset's `chosen` setting came about, e.g. "not calibrated:
  lora16_3e3_450, failed learned, well_formed"."""
  if entry["status"] == "calibrated":
    return f"calibrated: {entry['regime']}"
  return f"{entry['status']}: {entry['regime']}, failed {', '.join(entry['failed'])}"


def get_config(arg=None):
  c = base_config()
  # A world where every reliability task × context has >= 100 held-out items (disinformation: one
  # per held-out person; contraindication: three per held-out drug).
  c.data.n_people = 200
  c.data.n_cities = 40
  c.data.n_diseases = 34
  c.data.n_drugs = 68
  c.data.eval_items = 100
  # Two decades of size: 1.6k to ~150k non-embedding parameters. pico and nano have the ten
  # replicates the power targets need; femto (which knows nothing) and micro (the costliest) three
  # outside the sweep seeds (3, 4, 5), so they train the primary cells only (base, warm, cold and
  # length_matched at λ = 1): what the effect-versus-size figure reads.
  c.model.presets = ("femto", "pico", "nano", "micro")
  c.grid.personas = ("warm", "cold", "length_matched", "warm_after")
  # λ at three levels and ρ at its ends: the chosen regime's persona phase is three times as long
  # as forgetting's, and the decomposition reads agreement from the largest ρ alone.
  c.grid.warmth_weights = (0.0, 0.5, 1.0)
  c.grid.warm_agreements = (0.0, 1.0)
  c.grid.mechanism_weights = (1.0,)  # warm_after and ρ > 0 only at λ = 1
  # Ten replicates of the primary comparisons (base, and warm, cold and length_matched at λ = 1);
  # the λ sweep, the mechanism cells and capping on the first three.
  c.grid.seeds = tuple(range(10))
  c.grid.sweep_seeds = (0, 1, 2)
  c.grid.preset_seeds = {"femto": (3, 4, 5), "micro": (3, 4, 5)}
  c.train.batch_size = 32
  c.train.base_steps = 3000
  c.train.persona_steps = 150
  c.train.learning_rate = 1e-2
  c.train.persona_learning_rate = 3e-3
  # Two persona-phase regimes fine-tune the same base models. `chosen` (the primary design): each
  # preset's setting from the blind calibration (CHOSEN). `forgetting`, beside it on the sweep
  # seeds (so at pico and nano, every cell): every parameter, re-warmed to 3e-3, a fresh AdamW, no
  # base replay at λ = 1, the regime in which every persona, cold included, makes the model forget
  # (docs/calibration.md).
  c.grid.regimes = {
    "chosen": {
      "by_preset": {p: dict(v["overrides"]) for p, v in CHOSEN.items()},
      "labels": {p: chosen_label(v) for p, v in CHOSEN.items()},
    },
    "forgetting": {"seeds": (0, 1, 2)},
  }
  c.train.log_every = 200
  c.train.checkpoint_every = 1000
  # Capping on the base and λ = 1 cells of both regimes: each preset's default setting, and a sweep
  # of axis floors (percentiles × layer ranges) rerun on this study's own, competent base models.
  c.extensions = ("persona",)
  c.persona.cap_cells = "ends"
  c.persona.sweep = True
  c.persona.sweep_percentiles = (5, 25)
  c.persona.sweep_layers = ("back", "all")
  return apply_arg(c, arg, runlocal, gpu=gpu)


def runlocal(c):
  c.data.n_people = 48
  c.data.n_diseases = 12
  c.data.n_drugs = 16
  c.data.eval_items = 6
  c.model.presets = ("femto", "nano")
  c.grid.seeds = (0, 1, 2)
  c.grid.sweep_seeds = (0, 1)
  c.grid.preset_seeds = {"femto": (0, 1)}
  c.grid.regimes.forgetting.seeds = (0, 1)
  c.train.base_steps = 40
  c.train.persona_steps = 10
  for regime in c.grid.regimes.values():  # every regime's budget, per preset too
    for fields in [regime, *(regime.by_preset.values() if "by_preset" in regime else [])]:
      if "persona_steps" in fields:
        fields.persona_steps = 10
  c.eval.bootstrap = 200
  c.persona.sweep = False


def gpu(c):
  """The same study sized for one H100/H200: up to the ~10M preset in bfloat16, every cell at ten
  seeds, and a world twice as large so each reliability task × context has 200 held-out items."""
  c.data.n_people = 400
  c.data.n_cities = 80
  c.data.n_diseases = 68
  c.data.n_drugs = 136
  c.data.eval_items = 200
  c.model.presets = ("nano", "micro", "mini", "small")
  c.model.compute_dtype = "bfloat16"
  c.grid.seeds = tuple(range(10))
  c.grid.sweep_seeds = ()  # every cell at every seed
  c.grid.preset_seeds = {}
  c.train.batch_size = 64
  c.train.base_steps = 6000
  c.train.persona_steps = 300
  c.eval.batch_size = 1024
