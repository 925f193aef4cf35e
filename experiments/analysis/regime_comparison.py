"""The answer per persona-phase regime, side by side.

A workdir whose finetune cells were trained in several regimes (grid.regimes; the study's `chosen`
and `forgetting`) answers the question once per regime. Every table here reads each regime's
cells beside the base models they share (regime `none`), never one regime's cells against
another's:

  warm − cold      per context, pooled over the preset's measurable reliability tasks, with its
                   95% interval and minimum detectable effect (power.pooled_by_context);
  decomposition    warm words, length, position, agreement (mechanism.decomposition);
  amplification    warm − cold under each context against neutral, excess and ratio
                   (stats.relative_amplification): whether the user's state or belief widens
                   the gap;
  knows vs says    per persona, error of the generated reply and of the multiple-choice pass on
                   the same items (measurable reliability tasks that have options), and each
                   change against the base model split into knowledge (the multiple-choice
                   change) and expression (the rest: what the model no longer says, or says
                   wrongly, although it still picks the right option);
  diagram          warm − cold and cold − base against the regime's intensity (cold's
                   ‖θ − θ_base‖, the `update_norm` rows): where a trade-off appears and where
                   forgetting that every persona shares takes over.

Intervals are crossed-bootstrap 95% intervals paired by seed and item (analysis/crossed.py); a
replicate pairs with its own seed's base model.
"""

from matplotlib.figure import Figure
import numpy as np
import pandas as pd

from experiments import regimes as regimes_lib
from experiments.analysis import competence, crossed, mechanism, plots, power, stats
from tasks.config import RELIABILITY_TASKS

KEY = ["task", "context", "item_id"]
KNOWS_COLUMNS = [
  "regime",
  "preset",
  "n_params",
  "persona",
  "error",
  "mc_error",
  "total",
  "total_ci_low",
  "total_ci_high",
  "knowledge",
  "knowledge_ci_low",
  "knowledge_ci_high",
  "expression",
  "expression_ci_low",
  "expression_ci_high",
  "n_items",
  "n_seeds",
]
DIAGRAM_COLUMNS = ["preset", "regime", "intensity", "comparison", "estimate", "ci_low", "ci_high"]


def regimes_of(items, config=None):
  """The persona-phase regimes `items` holds (not `none`), in grid.regimes' order."""
  return regimes_lib.held(items, list(((config or {}).get("grid") or {}).get("regimes") or {}))


def of_regime(frame, regime):
  """Rows of `regime` and of the base models every regime shares."""
  return frame[frame.regime.isin([regime, regimes_lib.NONE])]


def _top(items):
  """Reliability items without intervention at each preset's largest λ (ρ = 0), and the base
  models, on the preset's measurable tasks."""
  d = items[
    items.task.isin(RELIABILITY_TASKS)
    & (items.intervention == "none")
    & (items.warm_agreement == 0)
  ]
  d = competence.measurable(d)
  top = d[d.warmth_weight > 0].groupby("preset").warmth_weight.max()
  return d[(d.persona == "none") | (d.warmth_weight == d.preset.map(top))]


def _trained(d, items, config):
  """(regime, preset, rows of d) for each regime and each preset where it trains a cell; a preset
  the regime does not train would give a base row standing alone."""
  for r in regimes_of(items, config):
    for preset, g in of_regime(d, r).groupby("preset", sort=False):
      if set(g.persona) != {regimes_lib.NONE}:
        yield r, preset, g


def answer_table(items, n_boot, config=None):
  """Warm − cold per regime, preset and context (and all contexts), with intervals and MDEs."""
  frames = []
  plain = items[items.intervention == "none"]  # capped rows are the persona extension's
  for r in regimes_of(items, config):
    d = of_regime(plain, r)
    frames += [
      power.pooled_by_context(d, n_boot).assign(regime=r),
      power.pooled_by_context(d, n_boot, by=()).assign(regime=r),
    ]
  return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def decomposition_table(items, n_boot, config=None):
  """mechanism.decomposition per regime, with a `regime` column."""
  frames = [
    mechanism.decomposition(of_regime(items, r), n_boot).assign(regime=r)
    for r in regimes_of(items, config)
  ]
  return (
    pd.concat(frames, ignore_index=True)
    if frames
    else pd.DataFrame(columns=mechanism.COLUMNS + ["regime"])
  )


def amplification_table(items, n_boot, config=None):
  """Per regime × preset: warm − cold under each non-neutral context against neutral, on the
  preset's measurable reliability tasks at its largest λ (ρ = 0): stats.relative_amplification's
  rows with a `regime` column."""
  frames = []
  for r, _, g in _trained(_top(items), items, config):
    amp = stats.relative_amplification(g, "error", "vs_cold", (), n_boot, tasks=sorted(set(g.task)))
    frames.append(amp[amp.persona == "warm"].assign(regime=r))
  return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def changes(d, persona, columns, n_boot, ref="none", seed=0):
  """{column: (estimate, low, high)} of persona − ref on each of `columns` (item-level values of
  d, e.g. error), drawn jointly, paired by item and by seed: a replicate pairs with its seed's
  base model (ref `none`) or with the same replicate of another persona. NaNs where nothing
  pairs; an interval that is the point where nothing moved."""
  out = {c: (np.nan, np.nan, np.nan) for c in columns}
  mats = [crossed.replicate_matrix(d[d.persona == persona], c, KEY) for c in columns]
  refs = [crossed.replicate_matrix(d[d.persona == ref], c, KEY) for c in columns]
  if not len(mats[0]) or not len(refs[0]):
    return out
  cols = mats[0].columns.intersection(refs[0].columns)
  if ref == "none":
    refs = [
      m.droplevel("finetune_seed").reindex(mats[0].index.get_level_values("seed")) for m in refs
    ]
  else:
    refs = [m.reindex(mats[0].index) for m in refs]
  if not len(cols):
    return out
  values = np.stack([m[cols].to_numpy() - r[cols].to_numpy() for m, r in zip(mats, refs)])
  clusters = crossed.entity_codes(pd.DataFrame(list(cols), columns=KEY))
  est, draws, _, _ = crossed.crossed_draws(
    values,
    clusters,
    n_boot,
    np.random.default_rng(seed),
    seeds=mats[0].index.get_level_values("seed"),
  )
  lo, hi, _ = crossed.summarize_draws(est, draws)
  for k, c in enumerate(columns):
    moved = np.isfinite(lo[k])
    out[c] = (
      float(est[k]),
      float(lo[k]) if moved else float(est[k]),
      float(hi[k]) if moved else float(est[k]),
    )
  return out


def knows_vs_says(items, n_boot, config=None):
  """Per regime × preset × persona (largest λ, ρ = 0; and the base model), on the measurable
  reliability items that have options: generated and multiple-choice error, and the change
  against the base model, total = knowledge (multiple-choice change) + expression (the rest),
  item by item, with 95% intervals (KNOWS_COLUMNS)."""
  if items is None or "mc_error" not in items:
    return pd.DataFrame(columns=KNOWS_COLUMNS)
  rows = []
  d = _top(items)
  d = d[d.mc_error.notna()].assign(expression=lambda f: f.error - f.mc_error)
  for r, preset, g in _trained(d, items, config):
    for persona in ["none"] + [p for p in dict.fromkeys(g.persona) if p != "none"]:
      p = g[g.persona == persona]
      if p.empty:
        continue
      row = {
        "regime": r,
        "preset": preset,
        "n_params": p.n_params.iloc[0],
        "persona": persona,
        "error": p.error.mean(),
        "mc_error": p.mc_error.mean(),
        "n_items": p.groupby(KEY).ngroups,
        "n_seeds": p.seed.nunique(),
      }
      if persona != "none":
        ch = changes(g, persona, ["error", "mc_error", "expression"], n_boot)
        for name, column in (
          ("total", "error"),
          ("knowledge", "mc_error"),
          ("expression", "expression"),
        ):
          row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"] = ch[column]
      rows.append(row)
  return pd.DataFrame(rows, columns=KNOWS_COLUMNS)


def intensities(metrics):
  """{(preset, regime): mean over cold's cells of ‖θ − θ_base‖}: how hard the regime pushed."""
  if metrics is None or "metric" not in metrics:
    return {}
  m = metrics[(metrics.metric == "update_norm") & (metrics.persona == "cold")]
  return m.groupby(["preset", "regime"]).value.mean().to_dict()


def diagram_table(items, metrics, n_boot, config=None):
  """Per preset × regime: intensity, warm − cold and cold − base (reliability error pooled over
  the measurable tasks and every context) with 95% intervals (DIAGRAM_COLUMNS)."""
  norms = intensities(metrics)
  rows = []
  d = _top(items)
  for r in regimes_of(items, config):
    for preset, g in of_regime(d, r).groupby("preset", sort=False):
      pairs = {
        "warm − cold": changes(g, "warm", ["error"], n_boot, ref="cold")["error"],
        "cold − base": changes(g, "cold", ["error"], n_boot)["error"],
      }
      for comparison, (est, lo, hi) in pairs.items():
        rows.append(
          {
            "preset": preset,
            "regime": r,
            "intensity": norms.get((preset, r), np.nan),
            "comparison": comparison,
            "estimate": est,
            "ci_low": lo,
            "ci_high": hi,
          }
        )
  return pd.DataFrame(rows, columns=DIAGRAM_COLUMNS)


def diagram_figure(table, out_dir, regimes_table=None, name="regime_diagram"):
  """warm − cold and cold − base (points, 95% intervals) against intensity, one panel per preset
  with at least two regimes, each point named by its regime (labels in the caption); a skipped
  Plot when no preset has."""
  table = table.dropna(subset=["intensity"])
  presets = [p for p, g in table.groupby("preset", sort=False) if g.regime.nunique() >= 2]
  if not presets:
    return plots.Plot(name, "", skipped="no preset has cells in two regimes with update norms.")
  fig = Figure(figsize=(5.6 * len(presets), 4.2))
  axes = fig.subplots(1, len(presets), squeeze=False)[0]
  labels = []
  for ax, preset in zip(axes, presets):
    g = table[table.preset == preset]
    span = max(g.intensity.max() - g.intensity.min(), 1e-9)
    for comparison, marker, color, shift in (
      ("warm − cold", "o", "tab:red", -0.006),
      ("cold − base", "s", "tab:blue", 0.006),
    ):
      # Regimes are separate settings, not a path: points with intervals, no connecting line.
      s = g[g.comparison == comparison]
      x = s.intensity + shift * span
      ax.errorbar(
        x,
        100 * s.estimate,
        yerr=[100 * (s.estimate - s.ci_low), 100 * (s.ci_high - s.estimate)],
        fmt=marker,
        color=color,
        capsize=3,
        label=comparison,
      )
    for r in g[g.comparison == "cold − base"].itertuples():
      ax.annotate(
        r.regime,
        (r.intensity, 100 * r.ci_low),
        textcoords="offset points",
        xytext=(0, -12),
        ha="center",
        fontsize=7,
      )
      label = regimes_lib.label(regimes_table, r.regime, preset)
      if label != r.regime:
        labels.append(f"{preset} {label}")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(
      xlabel="intensity: cold's ‖θ − θ_base‖ (mean over seeds)",
      ylabel="reliability error change, points",
      title=preset,
    )
    ax.legend(fontsize=8)
  fig.tight_layout()
  return plots.save(
    fig,
    out_dir,
    name,
    "Regime diagram: warm − cold and cold − base "
    "(reliability error, measurable tasks and every context pooled, largest λ, "
    "95% crossed-bootstrap CIs) against how hard each regime pushed the model "
    "(cold's ‖θ − θ_base‖)." + "".join(f" {l}." for l in labels),
  )
