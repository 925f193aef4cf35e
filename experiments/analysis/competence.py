"""Which reliability tasks a preset's base model can answer, so that warmth could change it.

A task is measurable at a preset when its base model beats both the floor and a constant answer:
an error at or above that of always giving the task's most common held-out gold answer (33% on
`medical_contraindication`, where two of every drug's three conditions are safe) means the model
answers by habit, not knowledge, and fine-tuning can only move the habit. Warmth then changes
which default the model falls back to, seed by seed, which is noise about reliability, not
evidence. Pooled contrasts (the bottom line, the power table, the mechanisms, the effect's
scaling) pool over the measurable tasks of each preset, and the primary family tests only them:
a choice made on the base models alone, before any warmth result is read.
"""

import numpy as np
import pandas as pd

from tasks.config import RELIABILITY_TASKS

FLOOR = 0.95  # base-model error at or above this: the task cannot show a warmth effect


def constant_answer_error(items):
  """Per task: the error of always giving its most common gold answer on the held-out items
  (NaN where items.csv has no `gold` column)."""
  if "gold" not in items:
    return pd.Series(np.nan, index=pd.Index(items.task.unique(), name="task"), name="chance")
  per_item = items.drop_duplicates(["task", "item_id"])
  share = per_item.groupby("task").gold.agg(lambda g: g.value_counts(normalize=True).iloc[0])
  return (1.0 - share).rename("chance")


def base_competence(items):
  """Per preset × reliability task: the base model's held-out error in neutral context
  (generated and multiple-choice), the constant-answer error `chance`, and `at_floor`: error at
  or above FLOOR or at or above `chance` (then `at_chance` too); such a task measures nothing."""
  d = items[
    items.task.isin(RELIABILITY_TASKS)
    & (items.context == "neutral")
    & (items.intervention == "none")
  ]
  base = d[d.persona == "none"] if (d.persona == "none").any() else d[d.warmth_weight == 0]
  if base.empty:
    return pd.DataFrame(
      columns=[
        "preset",
        "n_params",
        "task",
        "error",
        "mc_error",
        "n_items",
        "chance",
        "at_chance",
        "at_floor",
      ]
    )
  agg = {
    "error": ("error", "mean"),
    "n_items": ("item_id", "nunique"),
    "n_params": ("n_params", "first"),
  }
  if "mc_error" in base:
    agg["mc_error"] = ("mc_error", "mean")
  out = base.groupby(["preset", "task"], sort=False).agg(**agg).reset_index()
  out["chance"] = out.task.map(constant_answer_error(d))
  out["at_chance"] = (out.error >= out.chance) & (out.chance < FLOOR)
  out["at_floor"] = (out.error >= FLOOR) | out.at_chance
  order = {t: i for i, t in enumerate(RELIABILITY_TASKS)}
  return out.sort_values(
    ["n_params", "task"], key=lambda s: s.map(order) if s.name == "task" else s, kind="stable"
  ).reset_index(drop=True)


def measurable(items, frame=None):
  """Rows of `frame` (default: items itself; any frame with preset and task columns) outside the
  (preset, reliability task) pairs whose base model in `items` is at floor or at chance
  (base_competence): what pooled contrasts pool over. Other tasks' rows pass through."""
  frame = items if frame is None else frame
  table = base_competence(items)
  if table.empty:
    return frame
  unmeasurable = pd.MultiIndex.from_frame(table.loc[table.at_floor, ["preset", "task"]])
  return frame[~pd.MultiIndex.from_frame(frame[["preset", "task"]]).isin(unmeasurable)]
