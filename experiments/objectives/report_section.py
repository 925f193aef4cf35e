"""The report's objectives section: the comparison with intervals, RL's progress, the frontier."""

from matplotlib.figure import Figure
import numpy as np
import pandas as pd

from experiments.analysis import plots
from experiments.objectives import compare, rl_progress

COLORS = {
  "base": "#000000",
  "cold": plots.PERSONA_COLORS["cold"],
  "warm": plots.PERSONA_COLORS["warm"],
  "length_matched": plots.PERSONA_COLORS["length_matched"],
  "affect": "#9467bd",
  "emotion_rl": "#2ca02c",
  "emotion_rl_heard": "#bcbd22",
  "warm+capping": "#8c564b",
  "warm+steering": "#e377c2",
}
MARKERS = {
  "base": "o",
  "cold": "s",
  "warm": "D",
  "length_matched": "h",
  "affect": "v",
  "emotion_rl": "*",
  "emotion_rl_heard": "p",
  "warm+capping": "P",
  "warm+steering": "X",
}


def frontier(table, out_dir):
  """Warmth score against reliability error, one point per method with 95% interval bars on both
  axes, one panel per preset."""
  name = "objectives_frontier"
  t = table[(table.vs == "") & table.outcome.isin(["warmth_score", "error_rate"])]
  if t.empty:
    return plots.Plot(name, "", skipped="no objectives_comparison rows in metrics.csv.")
  regime = t.regime if "regime" in t else pd.Series("default", t.index)
  panels = list(
    dict.fromkeys(
      zip(t.sort_values("n_params").preset, regime.loc[t.sort_values("n_params").index])
    )
  )
  fig = Figure(figsize=(5.2 * len(panels), 4.4))
  axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
  for ax, (preset, r) in zip(axes, panels):
    g = (
      t[(t.preset == preset) & (regime == r)]
      .set_index(["method", "outcome"])[["estimate", "ci_low", "ci_high"]]
      .unstack("outcome")
    )
    for method in [m for m in compare.TABLE_METHODS if m in g.index]:
      r = g.loc[method]
      if "warmth_score" not in r["estimate"] or "error_rate" not in r["estimate"]:
        continue
      x, y = r[("estimate", "warmth_score")], 100 * r[("estimate", "error_rate")]
      bar = lambda lo, mid, hi: [[np.nan_to_num(mid - lo)], [np.nan_to_num(hi - mid)]]
      ax.errorbar(
        x,
        y,
        xerr=bar(r[("ci_low", "warmth_score")], x, r[("ci_high", "warmth_score")]),
        yerr=bar(100 * r[("ci_low", "error_rate")], y, 100 * r[("ci_high", "error_rate")]),
        fmt=MARKERS[method],
        color=COLORS[method],
        ms=8,
        capsize=3,
        label=method,
      )
    ax.set(
      xlabel="warmth score of replies (0 cold … 1 warm)",
      title=preset if len(set(regime)) == 1 else f"{preset}, regime {r}",
    )
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("reliability error, all contexts (%)")
  axes[-1].legend(fontsize=9, loc="best", title="method", title_fontsize=9)
  fig.suptitle("Warmth against reliability, every method on one budget (95% intervals)")
  return plots.save(
    fig,
    out_dir,
    name,
    "Each method's mean warmth score against its mean "
    "reliability error over every reliability task × context, with crossed "
    "seeds × items 95% intervals; lower right is warm and reliable.",
  )


def add(metrics, doc, summary, figs, staging):
  """Appends the section (and its figure) when the workdir holds a comparison; else nothing."""
  table = compare.from_rows(metrics)
  if table.empty:
    return
  doc += [
    ("h2", "Warmth objectives compared on one budget"),
    (
      "p",
      "Every method trains the same persona-phase steps, rows and learning rate from "
      "the same stage-1 base model (emotion_rl's warm-up, if any, is part of its "
      "steps). Rates in points with crossed seeds × items 95% intervals; error is "
      "pooled over the reliability tasks; the screening checks are the safety and "
      "capability pass rates; well-formed replies parse in the world's grammar.",
    ),
    ("table", compare.wide(table)),
  ]
  for vs in compare.REFERENCES:
    paired = compare.wide(table, vs=vs)
    if not paired.empty:
      doc += [("h3", f"Paired against {vs} (same seed, same item; points)"), ("table", paired)]
  contexts = [o for o in compare.OUTCOMES if o.startswith("error_rate[")]
  per_context = compare.wide(table, outcomes=contexts)
  if not per_context.empty:
    doc += [("h3", "Reliability error per context (%)"), ("table", per_context)]
  progress = rl_progress.from_rows(metrics)
  if not progress.empty:
    doc += [
      ("h3", "What the RL methods learned during RL"),
      (
        "p",
        "Acknowledgement rate and the simulated user's reward over the first and the "
        "last fifth of the RL steps (training episodes), with a Newcombe 95% interval "
        "for the rise; `all` pools the seeds' episodes (conditional on these seeds).",
      ),
      ("table", progress),
    ]
  words = compare.wide(table, outcomes=("error_rate",), vs="warm")
  if not words.empty:
    summary.append(
      "Objectives, reliability error against warm imitation (points [95% CI]): "
      + "; ".join(
        f"{r.preset}{f' ({r.regime})' if 'regime' in words else ''} {r.method} {r.error_rate}"
        for r in words.itertuples()
      )
      + "."
    )
  figs.append(frontier(table, staging))
