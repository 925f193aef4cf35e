"""The end-of-run table and the paired-change rows that join metrics.csv."""
import numpy as np
import pandas as pd

from experiments import stats
from experiments.workdir import METRIC_COLUMNS

CHANGE_METRICS = {"vs_base": "change_vs_lambda0", "vs_cold": "change_vs_cold"}


def change_rows(items, metric="error", n_boot=1000):
  """Paired changes (vs λ=0, vs cold at the same λ) per cell × task × context, as metric rows.

  Seeds are pooled (the bootstrap resamples them), so these rows carry seed = -1.
  """
  deltas = stats.paired_deltas(items, metric=metric, n_boot=n_boot)
  if deltas.empty:
    return pd.DataFrame(columns=list(METRIC_COLUMNS) + ["ci_low", "ci_high", "q_value"])
  meta = items.drop_duplicates("preset").set_index("preset")
  out = deltas.assign(
      run=lambda d: [f"{r.preset}-{r.protocol}-{r.persona}-l{r.warmth_weight:g}-r{r.warm_agreement:g}"
                     for r in d.itertuples()],
      n_params_nonembed=np.nan, seed=-1, tokens=np.nan,
      metric=lambda d: f"{metric}_rate_" + d.comparison.map(CHANGE_METRICS),
      value=lambda d: d.estimate, n=lambda d: d.n_obs)
  out["n_params"] = out.preset.map(meta["n_params"])
  return out[list(METRIC_COLUMNS) + ["ci_low", "ci_high", "q_value"]]


def _fmt(est, lo, hi):
  if pd.isna(est):
    return "—"
  return f"{100 * est:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def main_table(items, n_boot=1000):
  """Rows task × context; warm and cold change vs λ=0 at the largest λ, and warm − cold (points)."""
  deltas = stats.paired_deltas(items, metric="error", n_boot=n_boot)
  if deltas.empty:
    return pd.DataFrame()
  deltas = deltas[deltas.intervention == "none"]
  top = deltas.warmth_weight.max()
  d = deltas[deltas.warmth_weight == top]
  rows = []
  for (preset, task, context), g in d.groupby(["preset", "task", "context"], sort=True):
    pick = lambda persona, comp: g[(g.persona == persona) & (g.comparison == comp)]
    cells = {"warm Δ vs λ=0": pick("warm", "vs_base"), "cold Δ vs λ=0": pick("cold", "vs_base"),
             "warm − cold": pick("warm", "vs_cold")}
    row = {"preset": preset, "λ": top, "task": task, "context": context}
    for name, sel in cells.items():
      r = sel.iloc[0] if len(sel) else None
      row[name] = _fmt(r.estimate, r.ci_low, r.ci_high) if r is not None else "—"
    base = g[(g.persona == "warm") & (g.comparison == "vs_base")]
    row["error λ=0"] = f"{100 * base.ref_mean.iloc[0]:.0f}%" if len(base) else "—"
    rows.append(row)
  return pd.DataFrame(rows)


def format_table(table):
  if table.empty:
    return "(no λ > 0 cells: nothing to compare)"
  return ("error-rate change in percentage points, 95% cluster-bootstrap CI over seeds and items\n"
          + table.to_string(index=False))
