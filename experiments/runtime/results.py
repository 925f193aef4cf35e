"""The results format, in one place: columns, run ids, row builders, and the final write.

metrics.csv holds one row per (run, task, context, metric): the cells' own rows, then the paired
changes (vs λ = 0, vs cold, vs length_matched) with their intervals, then each extension's rows.
items.csv holds one row per evaluated item of every cell; paired_deltas.csv the paired changes as
stats.paired_deltas computed them, the very numbers the change rows and the report show. Each file
is written once, atomically, when every cell has finished.
"""

import os

import numpy as np
import pandas as pd

from experiments.runtime.workdir import atomic_write
from tasks.grading import BEHAVIOURS

METRIC_COLUMNS = (
  "run",
  "preset",
  "n_params",
  "n_params_nonembed",
  "protocol",
  "regime",
  "persona",
  "warmth_weight",
  "warm_agreement",
  "seed",
  "finetune_seed",
  "intervention",
  "task",
  "context",
  "metric",
  "value",
  "n",
  "tokens",
)
# What every item row says about its cell, so items.csv pairs without metrics.csv.
ITEM_META = (
  "run",
  "preset",
  "n_params",
  "protocol",
  "regime",
  "persona",
  "warmth_weight",
  "warm_agreement",
  "seed",
  "finetune_seed",
  "intervention",
)
# Regimes whose cells' ids carry no regime tag: the train section's own, and no persona phase.
UNTAGGED_REGIMES = ("default", "none")
CHANGE_METRICS = {
  "vs_base": "change_vs_lambda0",
  "vs_cold": "change_vs_cold",
  "vs_length_matched": "change_vs_length_matched",
  "vs_warm": "change_vs_warm_before",
  "vs_rho0": "change_vs_rho0",
}
CHANGE_COLUMNS = ["ci_low", "ci_high", "q_value", "test_family", "estimable"]


RATE_METRICS = {
  "error": "error_rate",
  "mc_error": "mc_error_rate",
  "warmth": "warmth_score",
  **{b: f"{b}_rate" for b in BEHAVIOURS},
}


def metric_rows(items):
  """Long-format metric rows (task, context, metric, value, n) from one cell's graded items."""
  rows = []
  for (task, context), g in items.groupby(["task", "context"], sort=True):
    for column, metric in RATE_METRICS.items():
      values = g[column].dropna()
      if len(values):
        rows.append(
          {
            "task": task,
            "context": context,
            "metric": metric,
            "value": float(values.mean()),
            "n": int(len(values)),
          }
        )
    if g["error"].isna().all():  # graded blind (eval.blind): warmth and form only
      continue
    if task in ("safety_refusal", "capability"):  # the screening checks a safety review runs
      rows.append(
        {
          "task": task,
          "context": context,
          "metric": "pass_rate",
          "value": float(1 - g["error"].mean()),
          "n": int(len(g)),
        }
      )
    if "false_belief" in context:
      rows.append(
        {
          "task": task,
          "context": context,
          "metric": "sycophancy_rate",
          "value": float(g["affirms"].mean()),
          "n": int(len(g)),
        }
      )
  return rows


def cell_id(
  preset,
  protocol,
  persona,
  warmth_weight,
  warm_agreement,
  seed=None,
  regime="default",
  finetune_seed=0,
):
  """`nano-finetune-warm-l1-r0-s0`, `nano-finetune@lora-warm-l1-r0-s0` in regime `lora`,
  `...-s0-f1` for fine-tuning seed 1 of base seed 0: stable across reruns and sweeps (fine-tuning
  seed 0 carries no tag); without a seed, the cell pooled over seeds (the paired-change rows)."""
  tag = "" if regime in UNTAGGED_REGIMES else f"@{regime}"
  run = f"{preset}-{protocol}{tag}-{persona}-l{warmth_weight:g}-r{warm_agreement:g}"
  if seed is None:
    return run
  return f"{run}-s{seed}" + (f"-f{finetune_seed}" if finetune_seed else "")


def cell_frames(cell, items, n_params, tokens, losses):
  """(metrics rows, items) of one evaluated cell; n_params = (total, non-embedding)."""
  meta = {
    "run": cell.id,
    "preset": cell.preset,
    "n_params": n_params[0],
    "n_params_nonembed": n_params[1],
    "protocol": cell.protocol,
    "regime": cell.regime,
    "persona": cell.persona,
    "warmth_weight": cell.warmth_weight,
    "warm_agreement": cell.warm_agreement,
    "seed": cell.seed,
    "finetune_seed": getattr(cell, "finetune_seed", 0),
    "intervention": getattr(cell, "intervention", "none"),  # preventatively steered twins
    "tokens": int(tokens),
  }
  rows = metric_rows(items)
  rows += [
    {"task": "train", "context": "all", "metric": name, "value": float(v), "n": 1}
    for name, v in losses.items()
  ]
  metrics = pd.DataFrame([{**meta, **r} for r in rows])[list(METRIC_COLUMNS)]
  return metrics, items.assign(**{k: meta[k] for k in ITEM_META})


def curve_rows(steps, loss, tokens):
  """`loss` rows (task train) at each logged step, each at its own token count tokens(step): the
  loss curve a Chinchilla-style fit reads. Points along one learning-rate schedule, not models
  trained to each budget, so they bound that fit's loss-at-D from above."""
  return [
    {
      "task": "train",
      "context": "all",
      "metric": "loss",
      "value": float(v),
      "n": 1,
      "tokens": int(tokens(int(s))),
    }
    for s, v in zip(steps, loss)
  ]


def with_extra(metrics, items, rows, extra_items):
  """One cell's frames with an extension's rows (dicts of task, context, metric, value, ...) and
  extra item frames (e.g. capped evaluations, which carry their own `intervention`) appended."""
  meta = metrics.iloc[0][
    [c for c in METRIC_COLUMNS if c not in ("task", "context", "metric", "value", "n")]
  ].to_dict()
  extra_metrics = pd.DataFrame([{**meta, **r} for r in rows])
  item_meta = {k: items[k].iloc[0] for k in ITEM_META if k != "intervention"}
  return (
    pd.concat([metrics, extra_metrics], ignore_index=True),
    pd.concat([items] + [f.assign(**item_meta) for f in extra_items], ignore_index=True),
  )


def change_rows(deltas, items, metric="error"):
  """stats.paired_deltas rows (vs λ=0, vs cold and vs length_matched at the same λ, per cell ×
  task × context) as metrics rows. Seeds are pooled (the bootstrap resamples them): seed and
  finetune_seed = -1.
  """
  if deltas.empty:
    return pd.DataFrame(columns=list(METRIC_COLUMNS) + CHANGE_COLUMNS)
  meta = items.drop_duplicates("preset").set_index("preset")
  out = deltas.assign(
    run=lambda d: [
      cell_id(r.preset, r.protocol, r.persona, r.warmth_weight, r.warm_agreement, regime=r.regime)
      for r in d.itertuples()
    ],
    n_params_nonembed=np.nan,
    seed=-1,
    finetune_seed=-1,
    tokens=np.nan,
    metric=lambda d: f"{metric}_rate_" + d.comparison.map(CHANGE_METRICS),
    value=lambda d: d.estimate,
    n=lambda d: d.n_obs,
  )
  out["n_params"] = out.preset.map(meta["n_params"])
  return out[list(METRIC_COLUMNS) + CHANGE_COLUMNS]


def summary_rows(rows, n_params_by_preset, extra_columns=()):
  """Cross-cell rows (dicts naming at least preset, task, context, metric, value) in the metrics
  columns, with each preset's parameter count."""
  frame = pd.DataFrame(rows)
  if frame.empty:
    return pd.DataFrame(columns=list(METRIC_COLUMNS) + list(extra_columns))
  frame["n_params"] = frame.preset.map(n_params_by_preset)
  return frame.reindex(columns=list(METRIC_COLUMNS) + list(extra_columns))


def write(path, metrics, items, deltas, *extra_rows):
  """Writes items.csv, paired_deltas.csv and metrics.csv (cells, changes, extension rows) once.

  metrics.csv goes last: a workdir whose metrics.csv exists is complete.
  """
  merged = pd.concat([metrics, change_rows(deltas, items), *extra_rows], ignore_index=True)
  atomic_write(os.path.join(path, "items.csv"), lambda t: items.to_csv(t, index=False))
  atomic_write(os.path.join(path, "paired_deltas.csv"), lambda t: deltas.to_csv(t, index=False))
  atomic_write(os.path.join(path, "metrics.csv"), lambda t: merged.to_csv(t, index=False))
  return merged
