"""The report's objectives section: the comparison table and a frontier, one marker per method."""
import pandas as pd
from matplotlib.figure import Figure

from experiments.analysis import plots
from experiments.objectives.compare import COMPARISON_TASK, HEADLINE, TABLE_METHODS

MARKERS = {"base": "o", "cold": "s", "warm": "D", "affect": "v", "emotion_rl": "*",
           "warm+capping": "P", "warm+steering": "X"}


def headline(metrics):
  """Wide table (preset × method) from the `objectives_comparison` rows of metrics.csv."""
  rows = metrics[(metrics.task == COMPARISON_TASK) & (metrics.context == "all")]
  if rows.empty or "method" not in rows:
    return pd.DataFrame()
  rows = rows.assign(name=rows.metric.str.extract(r"cmp:(\w+)\[")[0])
  wide = rows.pivot_table(index=["preset", "method"], columns="name", values="value").reset_index()
  wide = wide.assign(_order=wide.method.map({m: k for k, m in enumerate(TABLE_METHODS)}))
  return wide.sort_values(["preset", "_order"])[
      ["preset", "method"] + [c for c in HEADLINE if c in wide]].reset_index(drop=True)


def by_task_context(metrics):
  """Reliability error (%) per task × context (rows) and method (columns), per preset."""
  rows = metrics[(metrics.task == COMPARISON_TASK) & (metrics.context != "all")]
  if rows.empty or "method" not in rows:
    return pd.DataFrame()
  rows = rows.assign(task_=rows.metric.str.extract(r"\[(\w+)\]")[0], value=100 * rows.value)
  wide = rows.pivot_table(index=["preset", "task_", "context"], columns="method", values="value")
  cols = [m for m in TABLE_METHODS if m in wide.columns]
  return wide[cols].round(1).reset_index().rename(columns={"task_": "task"})


def frontier(table, out_dir):
  """warmth_score against reliability error_rate, one marker per method and preset."""
  name = "objectives_frontier"
  if table.empty:
    return plots.Plot(name, "", skipped="no objectives_comparison rows in metrics.csv.")
  fig = Figure(figsize=(5.5, 4.2))
  ax = fig.subplots()
  for k, (preset, g) in enumerate(table.groupby("preset")):
    for _, r in g.iterrows():
      ax.scatter(r.warmth_score, 100 * r.error_rate, marker=MARKERS.get(r.method, "o"), s=60,
                 color=f"C{k}", label=f"{preset} {r.method}")
      ax.annotate(r.method, (r.warmth_score, 100 * r.error_rate), fontsize=6, xytext=(4, 3),
                  textcoords="offset points")
  ax.set(xlabel="warmth score of replies", ylabel="error rate, reliability tasks (%)",
         title="Warmth objectives on one budget")
  ax.legend(fontsize=6)
  return plots.save(fig, out_dir, name, "Mean warmth score against mean reliability error (every "
                     "task × context but the screening checks), one marker per method.")


def add(metrics, doc, summary, figs, staging):
  """Appends the section (and its figure) when the workdir holds a comparison; else nothing."""
  table = headline(metrics)
  if table.empty:
    return
  doc += [("h2", "Warmth objectives compared on one budget"),
          ("p", "Every method trains the same persona-phase steps and rows from the same stage-1 "
                "base model; error_rate and mc_error_rate are means over reliability task × "
                "context cells (screening checks excluded), pass rates are the screening checks. "
                "Per task × context errors are the cmp:error_rate[task] rows of metrics.csv."),
          ("table", table.round(3))]
  detail = by_task_context(metrics)
  if not detail.empty:
    doc += [("h3", "Reliability error (%) per task × context"), ("table", detail)]
  best = table.sort_values("error_rate").iloc[0]
  summary.append(f"Objectives comparison: lowest reliability error {100 * best.error_rate:.1f}% "
                 f"for {best.method} ({best.preset}); warmth score ranges "
                 f"{table.warmth_score.min():.2f}–{table.warmth_score.max():.2f} across methods.")
  figs.append(frontier(table, staging))
