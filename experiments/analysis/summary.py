"""What a run prints at the end: a bottom line of a few lines, and (verbose) the full table of warm
and cold error changes at the largest λ."""

import pandas as pd

from experiments.analysis import competence, power
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
  deltas = deltas[
    (deltas.intervention == "none") & deltas.task.isin(RELIABILITY_TASKS + SCREENING_TASKS)
  ]
  top = deltas.warmth_weight.max()
  d = deltas[deltas.warmth_weight == top]
  d = d[d.warm_agreement == d.warm_agreement.min()]
  order = {t: i for i, t in enumerate(RELIABILITY_TASKS + SCREENING_TASKS)}
  rows = []
  for (preset, task, context), g in sorted(
    d.groupby(["preset", "task", "context"], sort=True),
    key=lambda kv: (kv[0][0], order[kv[0][1]], kv[0][2]),
  ):
    pick = lambda persona, comp: g[(g.persona == persona) & (g.comparison == comp)]
    cells = {
      "warm Δ vs λ=0": pick("warm", "vs_base"),
      "cold Δ vs λ=0": pick("cold", "vs_base"),
      "warm − cold": pick("warm", "vs_cold"),
      "warm − length_matched": pick("warm", "vs_length_matched"),
    }
    row = {"preset": preset, "λ": top, "task": task, "context": context}
    for name, sel in cells.items():
      row[name] = _fmt(sel.iloc[0] if len(sel) else None)
    primary = g[(g.test_family == "primary") & (g.persona == "warm")]
    row["q (primary)"] = (
      "/".join(f"{q:.2g}" if pd.notna(q) else "n.e." for q in primary.q_value)
      if len(primary)
      else ""
    )
    base = g[(g.persona == "warm") & (g.comparison == "vs_base")]
    row["error λ=0"] = f"{100 * base.ref_mean.iloc[0]:.0f}%" if len(base) else "—"
    rows.append(row)
  return pd.DataFrame(rows)


def format_table(table):
  if table.empty:
    return "(no λ > 0 cells: nothing to compare)"
  return (
    "error-rate change in percentage points [95% crossed-bootstrap CI: seeds × item "
    "clusters]; q (primary): Benjamini–Hochberg over the primary family, warm − cold / "
    "warm − length_matched\n" + table.to_string(index=False)
  )


def in_words(estimate, lo, hi):
  """'+5.1 [+1.2, +9.0] (warm errs more)' in points, or '(inconclusive)' when the interval spans 0."""
  if pd.isna(estimate) or pd.isna(lo):
    return "not estimable"
  verdict = "inconclusive" if lo <= 0 <= hi else "warm errs more" if lo > 0 else "warm errs less"
  return f"{100 * estimate:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] ({verdict})"


def _duration(seconds):
  m, s = divmod(int(round(seconds)), 60)
  return f"{m} min {s} s" if m else f"{s} s"


def answer_lines(items, n_boot):
  """One line per preset, smallest first: warm − cold error at its largest λ, pooled over the
  reliability tasks its base model can answer (competence.measurable), per context with the 95%
  interval in words (the primary contrast)."""
  pooled = power.pooled_by_context(items, n_boot)
  table = competence.base_competence(items)
  order = items.groupby("preset").n_params.first().to_dict()
  # A line for each protocol (finetune and mixture) and each regime when there are several.
  several = pooled.protocol.nunique() > 1
  regimes = pooled.regime.nunique() > 1
  lines = []
  for (preset, protocol, regime), g in sorted(
    pooled.groupby(["preset", "protocol", "regime"]), key=lambda kv: kv[0][1:]
  ):
    g = g.set_index("context")
    parts = [
      f"{ctx} {in_words(g.estimate[ctx], g.ci_low[ctx], g.ci_high[ctx])}"
      for ctx in CONTEXT_ORDER
      if ctx in g.index
    ]
    name = f"{preset} ({protocol})" if several else preset
    name += f" [regime {regime}]" if regimes else ""
    tasks = table[table.preset == preset]
    which = (
      f"{(~tasks.at_floor).sum()} of {len(tasks)} reliability tasks pooled"
      if len(tasks)
      else "reliability tasks pooled"
    )
    lines.append(
      (
        order.get(preset),
        f"{name}: warm − cold error at "
        f"λ={g.warmth_weight.iloc[0]:g}, {which}, points [95% CI]: " + "; ".join(parts) + ".",
      )
    )
  blind = set(table.preset[table.at_floor]) - set(table.preset[~table.at_floor])
  lines += [
    (
      order.get(preset),
      f"{preset}: no reliability task measurable (its base model is at "
      "floor or no better than a constant answer on each): nothing to compare.",
    )
    for preset in blind
  ]
  return [line for _, line in sorted(lines, key=lambda kv: kv[0])] or [
    "no warm and cold runs at a λ > 0: nothing to compare."
  ]


def bottom_line(items, n_boot, seconds, report_path=None):
  """At most 2 + presets lines: the run's size and wall time, answer_lines, where the rest is."""
  lines = [
    f"done: {items.run.nunique()} cells ({items.preset.nunique()} preset(s), "
    f"{items.seed.nunique()} seed(s)) in {_duration(seconds)}."
  ]
  lines += answer_lines(items, n_boot)
  where = f"report: {report_path}" if report_path else "no report (runtime.report=False)"
  lines.append(f"{where}; full tables with --config.runtime.verbose=True.")
  return "\n".join(lines)


CONTEXT_ORDER = ("neutral", "emotional", "false_belief", "emotional+false_belief")
