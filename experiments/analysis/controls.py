"""The controls and manipulation checks of a persona phase, and nothing else.

What a regime is judged on before any warm outcome is read: did the control (cold) leave the base
model's knowledge and screens alone, did every persona learn to reply in form, did warm learn to
sound warm. The table reads only these columns of items.csv:

  base (`none`) and cold cells: reliability error, multiple-choice error, capability and
                                safety_refusal error (the screens);
  every persona:                well-formed rate;
  warm cells:                   warmth score;
  base cells:                   each item's gold answer (what a constant answer would score).

Warm's, length_matched's and warm_after's errors never enter: `blind` drops them before anything is
computed, so a choice made on this table cannot be steered by the warm − control outcome.

  python -m experiments.analysis.controls --workdir=workdirs/regimes
"""

import os

from absl import app, flags
from etils import epath
import pandas as pd

from experiments.runtime.workdir import read_csv
from tasks import config as task_config

CONTROLS = ("none", "cold")
SCREENS = ("capability", "safety_refusal")
# (column, personas whose values the table may read; None: every persona)
WHITELIST = (
  ("error", CONTROLS),
  ("mc_error", CONTROLS),
  ("well_formed", None),
  ("warmth", ("warm",)),
  ("gold", ("none",)),
)
KEYS = (
  "preset",
  "regime",
  "persona",
  "warmth_weight",
  "seed",
  "finetune_seed",
  "task",
  "context",
  "item_id",
)


def blind(items):
  """items.csv rows reduced to the whitelisted outcomes: every other value is gone (NaN), warm's
  and every other non-control persona's errors above all; capped and steered evaluations out."""
  items = items[items.intervention == "none"]
  if "finetune_seed" not in items:  # written before nested fine-tuning seeds
    items = items.assign(finetune_seed=0)
  out = items[list(KEYS)].copy()
  for column, personas in WHITELIST:
    if column not in items:
      out[column] = float("nan")
    else:
      out[column] = (
        items[column] if personas is None else items[column].where(items.persona.isin(personas))
      )
  return out


def controls_table(items):
  """One row per preset × regime × persona × λ (λ > 0, or the base model): the whitelisted
  outcomes, each the mean over seeds of the per-seed mean, with the spread of those means (sd)."""
  d = blind(items)
  d = d[(d.warmth_weight > 0) | (d.persona == "none")]
  reliability = d.task.isin(task_config.RELIABILITY_TASKS)
  parts = {
    "reliability error": d.error.where(reliability),
    "reliability MC error": d.mc_error.where(reliability),
    **{f"{task} error": d.error.where(d.task == task) for task in SCREENS},
    "well-formed": d.well_formed.where(reliability | d.task.isin(SCREENS)),
    "warmth": d.warmth.where(reliability),
  }
  cell = ["preset", "regime", "persona", "warmth_weight"]
  frame = d[cell + ["seed"]].assign(**parts)
  per_seed = frame.groupby(cell + ["seed"]).mean()
  grouped = per_seed.groupby(level=cell)
  mean, sd = grouped.mean(), grouped.std()
  out = mean.round(3).astype(object)
  for column in mean:
    out[column] = [
      f"{100 * m:.1f} ± {100 * s:.1f}"
      if pd.notna(m) and pd.notna(s)
      else f"{100 * m:.1f}"
      if pd.notna(m)
      else ""
      for m, s in zip(mean[column], sd[column])
    ]
  out["seeds"] = grouped.size()
  return out.reset_index()


def main(argv):
  del argv
  workdir = flags.FLAGS.workdir
  path = os.path.join(workdir or "", "items.csv")
  if not workdir or not epath.Path(path).is_file():
    raise app.UsageError(
      f"--workdir={workdir!r} must be a finished run's workdir: {path} is not there."
    )
  items = read_csv(
    path,
    low_memory=False,
    usecols=lambda c: c in set(KEYS) | {"intervention", *(column for column, _ in WHITELIST)},
  )
  with pd.option_context("display.width", 200, "display.max_columns", 20):
    print(
      "Controls and manipulation checks, % (mean ± sd over seeds of per-seed means): base and "
      "cold errors, every persona's well-formed rate, warm's warmth score."
    )
    print(controls_table(items).to_string(index=False))


if __name__ == "__main__":
  # Defined only when run, so that importing the table (the calibration does) claims no flag.
  flags.DEFINE_string("workdir", None, "A finished run's workdir (its items.csv).")
  app.run(main)
