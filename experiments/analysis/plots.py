"""Report figures, each saved as PNG and SVG, or skipped with the reason the data cannot support."""

import dataclasses
import os
import re

# The object-oriented Figure renders through Agg/SVG canvases with no pyplot
# global state, as matplotlib recommends for non-interactive use.
from matplotlib.figure import Figure
import numpy as np
import pandas as pd
from scipy import stats as sps

from experiments.analysis import scaling
from experiments.runtime.workdir import atomic_write
from tasks.config import FAMILIES, RELIABILITY_TASKS, family

FAMILY_TITLES = {
  "reliability": "reliability tasks",
  "screening": "screening checks",
  "clinical_probe": "clinical probes (own scale)",
}
CONTEXT_COLORS = {
  "neutral": "#4c72b0",
  "emotional": "#dd8452",
  "false_belief": "#55a868",
  "emotional+false_belief": "#c44e52",
}
# A colour per persona and a marker per context, the same in every figure.
PERSONA_COLORS = {
  "warm": "#d62728",
  "cold": "#1f77b4",
  "length_matched": "#7f7f7f",
  "warm_after": "#ff7f0e",
}
CONTEXT_MARKERS = {
  "neutral": "o",
  "emotional": "s",
  "false_belief": "^",
  "emotional+false_belief": "D",
}


# Words for the column names a figure plots.
WORDS = {
  "error_rate": "error rate",
  "mc_error_rate": "multiple-choice error rate",
  "warmth_score": "warmth score of replies",
  "n_params": "parameters N",
  "n_params_nonembed": "non-embedding parameters",
  "tokens": "training tokens D",
  "flops": "training FLOPs",
  "sycophancy_rate": "sycophancy rate",
  "pass_rate": "pass rate",
  "axis": "the Assistant axis",
  "warmth": "the warmth vector",
  "sycophancy": "the sycophancy vector",
}


def words(name):
  """A column name in words: 'drift_vs_neutral[axis]' -> 'drift from neutral along the Assistant
  axis'; unknown names lose their underscores."""
  m = re.fullmatch(r"(\w+)\[(\w+)(?::(\w+))?\]", name)
  if m:
    base = {
      "drift_vs_neutral": "drift from neutral",
      "projection_difference": "projection difference",
      "projection_mean": "mean projection",
    }.get(m.group(1), words(m.group(1)))
    return f"{base} along {words(m.group(2))}" + (f" ({m.group(3)})" if m.group(3) else "")
  return WORDS.get(name, name.replace("_", " "))


@dataclasses.dataclass
class Plot:
  """A saved figure (png, svg) or the reason it was skipped."""

  name: str
  caption: str
  png: str = None
  svg: str = None
  skipped: str = None


def save(fig, out_dir, name, caption):
  """Writes name.png and name.svg, each atomically."""
  paths = []
  for fmt in ("png", "svg"):
    paths.append(os.path.join(out_dir, f"{name}.{fmt}"))
    atomic_write(
      paths[-1],
      lambda tmp, fmt=fmt: fig.savefig(
        tmp,
        format=fmt,
        dpi=300,
        bbox_inches="tight",
        metadata={"Date": None} if fmt == "svg" else None,
      ),
    )
  return Plot(name, caption, *paths)


def _eval_rows(metrics_df, metric):
  m = metrics_df[
    (metrics_df.metric == metric)
    & (metrics_df.intervention == "none")
    & ~metrics_df.task.isin(scaling.NON_EVAL_TASKS)
  ]
  return m[m.protocol == scaling.pick_protocol(m, None)] if len(m) else m


def _base_rows(agg):
  """The λ = 0 rows that anchor every persona's line: the λ=0 persona-phase model if the sweep
  has one (as the statistics use), else the base model."""
  base = agg[agg.warmth_weight == 0]
  return base[base.persona != "none"] if (base.persona != "none").any() else base


def _presets_by_size(m):
  return list(m[m.warmth_weight > 0].sort_values("n_params").preset.unique())


def error_vs_lambda(metrics_df, out_dir, metric="error_rate"):
  """Error vs λ: a row of panels per preset (task families across), a colour per persona and a
  marker per context, mean ± s.e. over seeds."""
  name, m = f"{metric}_vs_lambda", _eval_rows(metrics_df, metric)
  if m.empty or m.warmth_weight.nunique() < 2:
    return Plot(name, "", skipped=f"{metric} rows span fewer than two λ values.")
  presets = _presets_by_size(m)
  m = m[m.preset.isin(presets)].assign(family=lambda d: d.task.map(family))
  families = [f for f in FAMILIES if f in set(m.family)]
  fig = Figure(figsize=(3.4 * len(families) + 2.2, 2.9 * len(presets)), layout="constrained")
  axes = np.atleast_2d(fig.subplots(len(presets), len(families), sharex=True, squeeze=False))
  for row, preset in zip(axes, presets):
    for ax, fam in zip(row, families):
      d = m[(m.preset == preset) & (m.family == fam)]
      per_seed = d.groupby(["persona", "warmth_weight", "context", "seed"])["value"].mean()
      agg = per_seed.groupby(level=[0, 1, 2]).agg(["mean", "sem"]).reset_index()
      base = _base_rows(agg)
      for persona, color in PERSONA_COLORS.items():
        for ctx, marker in CONTEXT_MARKERS.items():
          b = base[base.context == ctx].groupby("warmth_weight")[["mean", "sem"]].mean()
          line = agg[(agg.persona == persona) & (agg.context == ctx) & (agg.warmth_weight > 0)]
          if line.empty:
            continue
          line = pd.concat([b.reset_index(), line]).sort_values("warmth_weight")
          ax.errorbar(
            line.warmth_weight,
            100 * line["mean"],
            yerr=100 * line["sem"].fillna(0),
            color=color,
            marker=marker,
            capsize=2,
            ms=4,
            lw=1.2,
            label=f"{persona}, {ctx.replace('+', ' + ')}",
          )
      ax.set_title(f"{preset}: {FAMILY_TITLES[fam]}", fontsize=9)
      ax.set_xlabel("warmth weight λ")
    row[0].set_ylabel(f"{words(metric)} (%)")
  handles, labels = max(
    (ax.get_legend_handles_labels() for ax in axes.flat), key=lambda h: len(h[0])
  )
  if handles:
    fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncols=4)
  fig.suptitle(f"{words(metric).capitalize()} against the warmth weight (mean ± s.e. over seeds)")
  return save(
    fig,
    out_dir,
    name,
    f"{words(metric).capitalize()} against warmth weight λ, one row "
    f"of panels per preset ({', '.join(presets)}): colour = persona, marker = context; "
    "λ = 0 is the shared base model.",
  )


def frontier(metrics_df, out_dir):
  """Warmth–reliability frontier per preset: mean warmth score against mean reliability error,
  one point per persona and λ with 95% intervals over seeds on both axes."""
  name = "frontier"
  w, e = _eval_rows(metrics_df, "warmth_score"), _eval_rows(metrics_df, "error_rate")
  if w.empty or e.empty:
    return Plot(name, "", skipped="warmth_score or error_rate rows are missing.")
  e = e[e.task.isin(RELIABILITY_TASKS)]
  key = ["preset", "n_params", "persona", "warmth_weight", "seed"]
  per_seed = (
    w.groupby(key)["value"]
    .mean()
    .rename("warmth")
    .to_frame()
    .join(e.groupby(key)["value"].mean().rename("error"), how="inner")
    .reset_index()
  )
  if not (per_seed.warmth_weight > 0).any():
    return Plot(name, "", skipped="no cell with λ > 0 has both warmth_score and error_rate.")
  xy = (
    per_seed.groupby(key[:-1])
    .agg(
      warmth=("warmth", "mean"),
      error=("error", "mean"),
      warmth_ci=("warmth", _ci95),
      error_ci=("error", _ci95),
      seeds=("seed", "nunique"),
    )
    .reset_index()
  )
  presets = _presets_by_size(xy)
  fig = Figure(figsize=(4.2 * len(presets) + 1.6, 4.0), layout="constrained")
  axes = np.atleast_1d(fig.subplots(1, len(presets), sharey=True, squeeze=False)[0])
  for ax, preset in zip(axes, presets):
    p = xy[xy.preset == preset]
    base = _base_rows(p)
    for persona, color in PERSONA_COLORS.items():
      g = p[(p.persona == persona) & (p.warmth_weight > 0)]
      if g.empty:
        continue
      g = pd.concat([base, g]).sort_values("warmth_weight").drop_duplicates("warmth_weight")
      ax.errorbar(
        g.warmth,
        100 * g.error,
        xerr=_within_bounds(g.warmth, g.warmth_ci),
        yerr=100 * _within_bounds(g.error, g.error_ci),
        color=color,
        marker="o",
        ms=4,
        capsize=2,
        lw=1.2,
        label=persona,
      )
      for r in g.itertuples():  # λ next to each point, offset by persona so labels do not stack
        ax.annotate(
          f"λ={r.warmth_weight:g}",
          (r.warmth, 100 * r.error),
          fontsize=7,
          color=color,
          xytext=(4, 4 + 9 * list(PERSONA_COLORS).index(persona)),
          textcoords="offset points",
        )
    ax.set_title(preset, fontsize=9)
    ax.set_xlabel(words("warmth_score"))
  axes[0].set_ylabel("error rate, reliability tasks (%)")
  axes[-1].legend(fontsize=8, title="persona")
  fig.suptitle("Warmth–reliability frontier (95% intervals over seeds)")
  return save(
    fig,
    out_dir,
    name,
    "Mean warmth score against mean reliability error, one panel "
    "per preset, one point per persona and λ (λ = 0: the shared base model); bars are "
    "95% t intervals over seeds, cut at the bounds of the rate and the score (0 and 1).",
  )


def _within_bounds(mean, half):
  """errorbar's [2, n] (below, above) lengths of mean ± half cut at 0 and 1: a t interval over
  two seeds can reach past what a rate can be."""
  mean, half = np.asarray(mean, float), np.nan_to_num(np.asarray(half, float))
  return np.stack([mean - np.maximum(mean - half, 0.0), np.minimum(mean + half, 1.0) - mean])


def _ci95(values):
  """Half-width of a 95% t interval of the mean over seeds (NaN with one seed)."""
  v = np.asarray(values, float)
  if len(v) < 2:
    return np.nan
  return float(sps.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def effect_scaling(fit, out_dir):
  """Warm − cold effect against scale on log x, with the power-law fit and its bootstrap band."""
  name, pts = f"effect_vs_{fit.x}", fit.points
  if len(pts) < 2 or fit.x not in pts or pts[fit.x].isna().any():
    return Plot(name, "", skipped=f"fewer than two presets have {fit.x} and a warm − cold effect.")
  fig = Figure(figsize=(5.5, 4.2))
  ax = fig.subplots()
  yerr = 100 * np.abs(pts[["ci_low", "ci_high"]].to_numpy().T - pts.effect.to_numpy())
  ax.errorbar(
    pts[fit.x],
    100 * pts.effect,
    yerr=np.nan_to_num(yerr),
    fmt="o",
    capsize=3,
    color="C3",
    label="warm − cold (95% CI over seeds)",
  )
  ax.set_xscale("log")
  if fit.supported:
    ax.set_yscale("log")
    grid = np.geomspace(pts[fit.x].min(), pts[fit.x].max(), 50)
    ax.plot(
      grid,
      100 * fit.a * grid**fit.b,
      color="k",
      label=f"descriptive fit: b = {fit.b:+.2f} [{fit.b_ci[0]:+.2f}, {fit.b_ci[1]:+.2f}]",
    )
    if fit.draws is not None and len(fit.draws):
      band = np.exp(fit.draws[:, :1] + fit.draws[:, 1:] * np.log(grid))
      lo, hi = np.percentile(band, [2.5, 97.5], axis=0)
      ax.fill_between(grid, 100 * lo, 100 * hi, color="k", alpha=0.15, label="95% band")
  else:
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_title("no power law: " + fit.reason, fontsize=7, wrap=True)
  ax.set(xlabel=words(fit.x), ylabel="warm − cold error change (points)")
  ax.legend(fontsize=7)
  return save(
    fig,
    out_dir,
    name,
    f"Warmth effect (warm − cold error at the largest λ, mean "
    f"over "
    f"reliability tasks) against {fit.x}"
    + (f"; {fit.statement()}" if fit.supported else "; no power law fitted."),
  )


def capping_tradeoff(table, out_dir):
  """Reliability error recovered against capability lost, per capping setting and preset.

  table: experiments.persona.tradeoff.capping_table, the numbers the console and report show
  (error recovered positive = capping lowered error), with their 95% CIs as error bars."""
  name = "capping_tradeoff"
  cap = table[table.kind == "cap"] if len(table) else table
  if cap.empty:
    return Plot(name, "", skipped="there are no activation-capping rows.")
  fig = Figure(figsize=(5.5, 4.2))
  ax = fig.subplots()
  by = ["preset"] + (["protocol"] if cap.protocol.nunique() > 1 else [])
  for i, (key, g) in enumerate(cap.sort_values(["n_params", "percentile"]).groupby(by, sort=False)):
    x, y = 100 * g.capability_lost.to_numpy(float), 100 * g.error_recovered.to_numpy(float)
    err = lambda c, v: np.abs(
      100 * np.stack([g[f"{c}_ci_low"].to_numpy(float), g[f"{c}_ci_high"].to_numpy(float)]) - v
    )
    ax.errorbar(
      x,
      y,
      xerr=err("capability_lost", x),
      yerr=err("error_recovered", y),
      fmt="o-",
      color=f"C{i}",
      lw=1,
      elinewidth=0.6,
      capsize=2,
      label=" ".join(key),
    )
    for xi, yi, label in zip(x, y, g.intervention):
      ax.annotate(label, (xi, yi), fontsize=6, xytext=(3, 3), textcoords="offset points")
  ax.axhline(0, color="grey", lw=0.8)
  ax.axvline(0, color="grey", lw=0.8)
  ax.set(
    xlabel="capability error added (points)",
    ylabel="reliability error recovered (points; below 0: worse)",
    title="Activation capping trade-off",
  )
  ax.legend(fontsize=7)
  return save(
    fig,
    out_dir,
    name,
    "Each capping setting: reliability error recovered in the warm "
    "cells at the largest λ (negative: capping made error worse) against capability "
    "error added, per preset, with 95% intervals.",
  )


def drift_metric(metrics_df):
  """The persona-geometry drift metric to show: drift_mean, else the axis drift, else any drift."""
  names = set(metrics_df.metric[metrics_df.task == "persona_geometry"])
  for name in ("drift_mean", "drift_vs_neutral[axis]"):
    if name in names:
      return name
  return min((n for n in names if n.startswith("drift")), default=None)


def drift_by_context(metrics_df, out_dir):
  """Drift along the persona axis by context (against layer when a layer column exists)."""
  name, metric = "persona_drift", drift_metric(metrics_df)
  if metric is None:
    return Plot(name, "", skipped="there are no persona-geometry drift rows.")
  g = metrics_df[(metrics_df.task == "persona_geometry") & (metrics_df.metric == metric)]
  fig = Figure(figsize=(5.5, 4.2))
  ax = fig.subplots()
  if "layer" in g and g.layer.notna().any():
    for ctx, d in g.groupby("context"):
      s = d.groupby("layer")["value"].mean()
      ax.plot(s.index, s.values, "o-", color=CONTEXT_COLORS.get(ctx), label=ctx)
    ax.set(xlabel="layer")
    ax.legend(fontsize=7)
  else:
    s = g.groupby("context")["value"].mean()
    ax.bar(range(len(s)), s.values, color=[CONTEXT_COLORS.get(c, "grey") for c in s.index])
    ax.set_xticks(range(len(s)), s.index, rotation=20, fontsize=7)
  ax.set(ylabel=words(metric), title="Persona drift by context")
  return save(fig, out_dir, name, f"{words(metric)} (mean over runs) by interpersonal context.")


def loss_scaling(chin, out_dir):
  """Loss against tokens (one line per model size), with the Chinchilla fit when supported."""
  name, d = "loss_scaling", chin.data
  if d.empty:
    return Plot(name, "", skipped="there are no loss rows.")
  fig = Figure(figsize=(5.5, 4.2))
  ax = fig.subplots()
  x = "D" if d.D.notna().all() and d.D.nunique() > 1 else "N"
  series = d.groupby("N") if x == "D" else [("all", d)]
  for i, (n, g) in enumerate(series):
    s = g.groupby(x)["loss"].mean()
    label = f"N = {n:.3g}" if x == "D" else "models"
    ax.plot(s.index, s.values, "o", color=f"C{i % 10}", label=label)
    if chin.supported and x == "D":
      grid = np.geomspace(d.D.min(), d.D.max(), 50)
      ax.plot(grid, chin.predict(n, grid), color=f"C{i % 10}", lw=1)
  ax.set_xscale("log")
  ax.set(
    xlabel="training tokens D" if x == "D" else "parameters N",
    ylabel="loss",
    title="Loss scaling" + ("" if chin.supported else " (no Chinchilla fit)"),
  )
  ax.legend(fontsize=6)
  kind = "Held-out loss" if chin.held_out else "Training loss along the base models' schedule"
  return save(
    fig,
    out_dir,
    name,
    kind
    + (
      " with the fitted L(N, D) = E + A/N^α + B/D^β."
      if chin.supported
      else f"; Chinchilla fit not made: {chin.reason}"
    ),
  )
