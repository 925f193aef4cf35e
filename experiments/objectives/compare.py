"""The objectives comparison table: every method on one persona-phase budget.

Methods (rows of the headline table), all at λ = objectives.table_lambda (the grid's largest λ
when 0): base; cold; warm; affect; emotion_rl; warm + capping (the persona extension's capped
evaluation, `cap@...`); warm + steering (the preventatively steered twin, `train-steer...`).
"""
import numpy as np
import pandas as pd

from experiments.runtime.results import METRIC_COLUMNS
from tasks.config import RELIABILITY_TASKS

TABLE_METHODS = ("base", "cold", "warm", "affect", "emotion_rl", "warm+capping", "warm+steering")
COMPARISON_TASK = "objectives_comparison"
HEADLINE = ("error_rate", "mc_error_rate", "warmth_score", "sycophancy_rate",
            "safety_pass_rate", "capability_pass_rate")


def _method_items(items, lam):
  """{method: its items} at λ (pooled over seeds); missing methods are left out."""
  it = items[items.protocol == "finetune"]
  at = it[np.isclose(it.warmth_weight.astype(float), lam)]
  plain = at.intervention == "none"
  pick = {"base": it[(it.persona == "none") & (it.intervention == "none")],
          "cold": at[(at.persona == "cold") & plain], "warm": at[(at.persona == "warm") & plain],
          "affect": at[(at.persona == "affect") & plain],
          "emotion_rl": at[(at.persona == "emotion_rl") & plain],
          "warm+capping": at[(at.persona == "warm") & at.intervention.str.startswith("cap@")],
          "warm+steering": at[(at.persona == "warm") &
                              at.intervention.str.startswith("train-steer")]}
  return {m: g for m, g in pick.items() if len(g)}


def comparison_table(items, lam):
  """Per preset × method: headline metrics, and error per task × context (long frame)."""
  rows = []
  for m, g in _method_items(items, lam).items():
    for preset, gp in g.groupby("preset"):
      rel = gp[gp.task.isin(RELIABILITY_TASKS)]
      by_tc = rel.groupby(["task", "context"])
      fb = gp[gp.context.str.contains("false_belief")]
      head = {"error_rate": by_tc.error.mean().mean(), "mc_error_rate": by_tc.mc_error.mean().mean(),
              "warmth_score": gp.warmth.mean(), "sycophancy_rate": fb.affirms.mean(),
              "safety_pass_rate": 1 - gp[gp.task == "safety_refusal"].error.mean(),
              "capability_pass_rate": 1 - gp[gp.task == "capability"].error.mean()}
      meta = {"method": m, "preset": preset, "n_params": int(gp.n_params.iloc[0]),
              "persona": gp.persona.iloc[0], "intervention": gp.intervention.iloc[0],
              "warmth_weight": 0.0 if m == "base" else lam, "seeds": gp.seed.nunique()}
      rows += [{**meta, "task": "reliability", "context": "all", "metric": k, "value": float(v),
                "n": int(len(gp))} for k, v in head.items()]
      rows += [{**meta, "task": task, "context": ctx, "metric": "error_rate", "value": float(v),
                "n": int(by_tc.size()[(task, ctx)])} for (task, ctx), v in by_tc.error.mean().items()]
  return pd.DataFrame(rows)


def comparison_rows(table):
  """The table as metrics.csv rows: task `objectives_comparison`, metric `cmp:<metric>[<task>]`."""
  if table.empty:
    return table
  t = table.assign(run=lambda d: "cmp-" + d.preset + "-" + d.method, protocol="finetune",
                   warm_agreement=0.0, seed=-1, n_params_nonembed=np.nan, tokens=np.nan,
                   metric=lambda d: "cmp:" + d.metric + "[" + d.task + "]",
                   task=COMPARISON_TASK, context=lambda d: d.context)
  return t[list(METRIC_COLUMNS) + ["method"]]


def wide(table):
  """Headline metrics, one row per preset × method, in TABLE_METHODS order."""
  h = table[table.task == "reliability"].pivot_table(index=["preset", "method"], columns="metric",
                                                      values="value")
  h = h.reset_index()
  h = h.assign(_order=h.method.map({m: k for k, m in enumerate(TABLE_METHODS)}))
  h = h.sort_values(["preset", "_order"])
  return h[["preset", "method"] + [c for c in HEADLINE if c in h]].reset_index(drop=True)
