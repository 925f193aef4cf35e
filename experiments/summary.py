"""The end-of-run table and the paired-change rows that join metrics.csv."""
import numpy as np
import pandas as pd

from experiments.workdir import METRIC_COLUMNS
from tasks.config import RELIABILITY_TASKS, SCREENING_TASKS

CHANGE_METRICS = {"vs_base": "change_vs_lambda0", "vs_cold": "change_vs_cold",
                  "vs_length_matched": "change_vs_length_matched"}


CHANGE_COLUMNS = ["ci_low", "ci_high", "q_value", "test_family", "estimable"]


def change_rows(deltas, items, metric="error"):
  """stats.paired_deltas rows (vs λ=0, vs cold and vs length_matched at the same λ, per cell ×
  task × context) as metrics rows. Seeds are pooled (the bootstrap resamples them): seed = -1.
  """
  if deltas.empty:
    return pd.DataFrame(columns=list(METRIC_COLUMNS) + CHANGE_COLUMNS)
  meta = items.drop_duplicates("preset").set_index("preset")
  out = deltas.assign(
      run=lambda d: [f"{r.preset}-{r.protocol}-{r.persona}-l{r.warmth_weight:g}-r{r.warm_agreement:g}"
                     for r in d.itertuples()],
      n_params_nonembed=np.nan, seed=-1, tokens=np.nan,
      metric=lambda d: f"{metric}_rate_" + d.comparison.map(CHANGE_METRICS),
      value=lambda d: d.estimate, n=lambda d: d.n_obs)
  out["n_params"] = out.preset.map(meta["n_params"])
  return out[list(METRIC_COLUMNS) + CHANGE_COLUMNS]


def _fmt(r):
  """'+4.2 [-1.0, +9.3]' in points; 'not estimable' where no paired item moved."""
  if r is None or pd.isna(r.estimate):
    return "—"
  if not r.estimable:
    return "0 (no item moved)"
  return f"{100 * r.estimate:+.1f} [{100 * r.ci_low:+.1f}, {100 * r.ci_high:+.1f}]"


def main_table(deltas):
  """Rows: reliability task × context, then the screening checks, at the largest λ. Columns: warm
  and cold change vs λ=0, warm − cold and warm − length_matched (points), the q-value of the
  primary family, and the λ = 0 error. `deltas`: stats.paired_deltas of the error."""
  if deltas.empty:
    return pd.DataFrame()
  deltas = deltas[(deltas.intervention == "none") &
                  deltas.task.isin(RELIABILITY_TASKS + SCREENING_TASKS)]
  top = deltas.warmth_weight.max()
  d = deltas[deltas.warmth_weight == top]
  d = d[d.warm_agreement == d.warm_agreement.min()]
  order = {t: i for i, t in enumerate(RELIABILITY_TASKS + SCREENING_TASKS)}
  rows = []
  for (preset, task, context), g in sorted(d.groupby(["preset", "task", "context"], sort=True),
                                           key=lambda kv: (kv[0][0], order[kv[0][1]], kv[0][2])):
    pick = lambda persona, comp: g[(g.persona == persona) & (g.comparison == comp)]
    cells = {"warm Δ vs λ=0": pick("warm", "vs_base"), "cold Δ vs λ=0": pick("cold", "vs_base"),
             "warm − cold": pick("warm", "vs_cold"),
             "warm − length_matched": pick("warm", "vs_length_matched")}
    row = {"preset": preset, "λ": top, "task": task, "context": context}
    for name, sel in cells.items():
      row[name] = _fmt(sel.iloc[0] if len(sel) else None)
    primary = g[(g.test_family == "primary") & (g.persona == "warm")]
    row["q (primary)"] = ("/".join(f"{q:.2g}" if pd.notna(q) else "n.e." for q in primary.q_value)
                          if len(primary) else "")
    base = g[(g.persona == "warm") & (g.comparison == "vs_base")]
    row["error λ=0"] = f"{100 * base.ref_mean.iloc[0]:.0f}%" if len(base) else "—"
    rows.append(row)
  return pd.DataFrame(rows)


def format_table(table):
  if table.empty:
    return "(no λ > 0 cells: nothing to compare)"
  return ("error-rate change in percentage points [95% crossed-bootstrap CI: seeds × item "
          "clusters]; q (primary): Benjamini–Hochberg over the primary family, warm − cold / "
          "warm − length_matched\n" + table.to_string(index=False))
