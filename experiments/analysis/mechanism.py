"""Which mechanism carries the warm − cold change: one table per preset and context, and its
scaling figure.

At each preset's largest λ, pooled over the reliability tasks its base model can answer
(competence.measurable), with crossed-bootstrap intervals
(stats.paired_deltas, paired by seed and item):

  total        warm − cold
  warm words   warm − length_matched  (same length, impersonal filler instead of warm phrasing)
  length       length_matched − cold  (longer replies as such)
  position     warm_after − warm      (warm phrasing after rather than before the answer)
  agreement    (warm at ρ − warm at ρ = 0) / ρ, the largest ρ: the slope per unit of validation

total = warm words + length exactly (the same items and seeds); position and agreement are
separate contrasts, present only where the grid trained warm_after and ρ > 0 cells.
"""

from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
import numpy as np
import pandas as pd

from experiments.analysis import competence, plots, stats
from tasks.config import RELIABILITY_TASKS

# (part, persona, comparison): which paired_deltas rows give each part.
PARTS = (
  ("total (warm − cold)", "warm", "vs_cold"),
  ("warm words (warm − length_matched)", "warm", "vs_length_matched"),
  ("length (length_matched − cold)", "length_matched", "vs_cold"),
  ("position (after − before)", "warm_after", "vs_warm"),
  ("agreement (per unit ρ)", "warm", "vs_rho0"),
)
COLUMNS = [
  "preset",
  "n_params",
  "context",
  "part",
  "estimate",
  "ci_low",
  "ci_high",
  "n_items",
  "n_seeds",
  "warmth_weight",
  "warm_agreement",
]


def decomposition(items, n_boot, seed=0):
  """Long table (COLUMNS) of every part per preset and context (and pooled over contexts)."""
  d = items[items.task.isin(RELIABILITY_TASKS) & (items.intervention == "none")]
  d = competence.measurable(d)
  top = d[d.warmth_weight > 0].groupby("preset").warmth_weight.max()
  d = d[d.warmth_weight == d.preset.map(top)]
  if d.empty:
    return pd.DataFrame(columns=COLUMNS)
  frames = [
    stats.paired_deltas(d, "error", ("context",), n_boot, seed=seed, primary=()),
    stats.paired_deltas(d, "error", (), n_boot, seed=seed, primary=()).assign(
      context="all contexts"
    ),
  ]
  deltas = pd.concat(frames, ignore_index=True)
  rows = []
  for part, persona, comparison in PARTS:
    sel = deltas[(deltas.persona == persona) & (deltas.comparison == comparison)]
    if comparison == "vs_rho0":
      sel = sel[sel.warm_agreement == sel.groupby("preset").warm_agreement.transform("max")]
      scale = 1.0 / sel.warm_agreement
    else:
      sel = sel[sel.warm_agreement == 0]
      scale = pd.Series(1.0, sel.index)
    for r, k in zip(sel.itertuples(), scale):
      rows.append(
        dict(
          preset=r.preset,
          n_params=r.n_params,
          context=r.context,
          part=part,
          estimate=k * r.estimate,
          ci_low=k * r.ci_low,
          ci_high=k * r.ci_high,
          n_items=r.n_items,
          n_seeds=r.n_seeds,
          warmth_weight=r.warmth_weight,
          warm_agreement=r.warm_agreement,
        )
      )
  return pd.DataFrame(rows, columns=COLUMNS)


def change_text(estimate, lo, hi):
  """'+4.2 [-1.0 to +9.3]': a change and its interval in points."""
  if pd.isna(estimate):
    return "n/a"
  if pd.isna(lo):  # no paired item moved: nothing to estimate a spread from
    return f"{100 * estimate:+.1f} (not estimable)"
  return f"{100 * estimate:+.1f} [{100 * lo:+.1f} to {100 * hi:+.1f}]"


def wide(table, contexts):
  """One row per preset × context, one column per part: 'Δ [95% CI]' in points."""
  if table.empty:
    return table
  cell = [change_text(e, a, b) for e, a, b in zip(table.estimate, table.ci_low, table.ci_high)]
  t = table.assign(cell=cell).pivot_table(
    index=["n_params", "preset", "context"],
    columns="part",
    values="cell",
    aggfunc="first",
    sort=False,
  )
  t = t[[p for p, _, _ in PARTS if p in t.columns]].reset_index()
  rank = {c: i for i, c in enumerate(contexts)}
  t = t.sort_values(
    ["n_params", "context"],
    key=lambda s: s.map(rank).fillna(99) if s.name == "context" else s,
    kind="stable",
  )
  return t.drop(columns="n_params").fillna("n/a")


def scaling_figure(table, out_dir, name="mechanism_scaling"):
  """Each part against non-embedding parameters (log axis), one panel per context, 95% CIs."""
  d = table[table.context != "all contexts"]
  if d.empty or d.preset.nunique() < 2:
    return plots.Plot(name, "", skipped="fewer than two presets have warm and cold cells.")
  contexts = [c for c in plots.CONTEXT_COLORS if c in set(d.context)]
  fig = Figure(figsize=(3.4 * len(contexts) + 2.4, 3.4), layout="constrained")
  axes = np.atleast_1d(fig.subplots(1, len(contexts), sharey=True))
  markers = "osD^v"
  for ax, context in zip(axes, contexts):
    for k, (part, _, _) in enumerate(PARTS):
      p = d[(d.context == context) & (d.part == part)].sort_values("n_params")
      if p.empty:
        continue
      # Parts side by side at each size (a small multiplicative offset), so bars do not overlap.
      x = p.n_params * (1.06 ** (k - 2))
      ax.errorbar(
        x,
        100 * p.estimate,
        yerr=[100 * (p.estimate - p.ci_low), 100 * (p.ci_high - p.estimate)],
        marker=markers[k],
        ms=4,
        capsize=2,
        lw=1.1,
        label=part,
      )
    ax.axhline(0, color="#888", lw=0.8)
    ax.set(xscale="log", title=context, xlabel="non-embedding parameters")
    ax.xaxis.set_minor_formatter(NullFormatter())  # decades only: the presets are few
  axes[0].set_ylabel("error-rate change (points)")
  handles, labels = axes[0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="outside right center", fontsize=8)
  return plots.save(
    fig,
    out_dir,
    name,
    "Warm − cold and its parts against model size, per "
    "context (measurable reliability tasks pooled, largest λ, 95% "
    "crossed-bootstrap CIs).",
  )
