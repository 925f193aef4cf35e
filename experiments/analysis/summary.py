"""The end-of-run table: warm and cold error changes at the largest λ, as the run prints them."""
import pandas as pd

from tasks.config import RELIABILITY_TASKS, SCREENING_TASKS


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
