"""The persona rows that join metrics.csv after the merge, and the text the demo prints."""

import numpy as np
import pandas as pd

from experiments.persona import effects, tradeoff
from experiments.runtime import results

EXTRA_COLUMNS = ["layer", "ci_low", "ci_high"]


def _fmt(est, lo=np.nan, hi=np.nan, scale=100.0, digits=1):
  if pd.isna(est):
    return "—"
  if pd.isna(lo):
    return f"{scale * est:+.{digits}f}"
  return f"{scale * est:+.{digits}f} [{scale * lo:+.{digits}f}, {scale * hi:+.{digits}f}]"


def summarize(config, options, workdir, items, metrics):
  """(rows for metrics.csv, printable text); empty when no cell has persona results.

  options: the PersonaConfig."""
  if (
    items is None
    or "intervention" not in items
    or not (
      items.intervention.str.startswith(("cap", "train-steer")).any()
      or any(c.startswith("proj_") for c in items.columns)
    )
  ):
    return results.summary_rows([], {}, EXTRA_COLUMNS), ""
  n_boot = config.eval.bootstrap
  rng = np.random.default_rng(0)
  rows = effects.trait_prediction_rows(items)
  rows += effects.lambda_slope_rows(items, n_boot, rng)
  rows += effects.pooled_drift_rows(items, n_boot, rng)
  rows += effects.shift_prediction_rows(items, metrics)
  cap_pairs = effects.capped_pairs(items)
  rows += effects.change_rows(cap_pairs, "error_rate_change_vs_uncapped", n_boot, rng)
  steer_pairs = effects.steered_pairs(items)
  rows += effects.change_rows(steer_pairs, "error_rate_change_vs_plain_twin", n_boot, rng)
  # Its own generator (seed 0), so the report's capping section reproduces these numbers exactly.
  cap_table = tradeoff.capping_table(items, n_boot, metrics=metrics)
  steer_table = tradeoff.steering_table(items, n_boot, rng)
  choices = tradeoff.write(workdir, cap_table, steer_table, options.max_capability_loss)
  frame = results.summary_rows(rows, items.groupby("preset").n_params.first(), EXTRA_COLUMNS)
  text = "\n\n".join(
    t
    for t in (
      capped_table_text(frame, options.intervention_on),
      geometry_text(metrics, frame),
      drift_text(frame),
      tradeoff_text(cap_table, "capping", choices["capping"]),
      tradeoff_text(steer_table, "preventative steering", choices["steering"]),
    )
    if t
  )
  return frame, text


def capped_table_text(frame, positions):
  """Capped − uncapped error per task × context for the base, warm and cold cells at top λ."""
  d = frame[frame.metric == "error_rate_change_vs_uncapped"] if len(frame) else frame
  if d.empty:
    return ""
  blocks = []
  for (preset, label), g in d.groupby(["preset", "intervention"], sort=True):
    top = g[g.persona != "none"].warmth_weight.max()
    cols = {
      "base": g[g.persona == "none"],
      f"warm λ={top:g}": g[(g.persona == "warm") & (g.warmth_weight == top)],
      f"cold λ={top:g}": g[(g.persona == "cold") & (g.warmth_weight == top)],
    }
    table = []
    for (task, context), _ in g.groupby(["task", "context"], sort=True):
      row = {"task": task, "context": context}
      for name, sel in cols.items():
        r = sel[(sel.task == task) & (sel.context == context)]
        row[name] = _fmt(r.value.iloc[0], r.ci_low.iloc[0], r.ci_high.iloc[0]) if len(r) else "—"
      table.append(row)
    blocks.append(
      f"{preset}  {label} (token positions: {positions}): error-rate change "
      "capped − uncapped (points, 95% crossed-bootstrap CI, paired by item and seed)\n"
      + pd.DataFrame(table).to_string(index=False)
    )
  return "\n\n".join(blocks)


def _per_layer(d, fmt=lambda v: f"{v:.2f}"):
  return "  ".join(f"L{int(l)} {fmt(v)}" for l, v in d.groupby("layer").value.mean().items())


def geometry_text(metrics, frame):
  """cos(axis, PC1), PC1 variance, trait and shift prediction, per layer and preset."""
  lines = []
  geo = metrics[metrics.task == "persona_geometry"] if "layer" in metrics else metrics.iloc[:0]
  for preset, g in geo.groupby("preset", sort=True):
    lines.append(
      f"{preset}: |cos(axis, PC1 of role space)| (mean over seeds)  "
      + _per_layer(g[g.metric == "cos_axis_pc1"])
    )
    lines.append(
      f"{preset}: role-space variance on PC1  " + _per_layer(g[g.metric == "role_pca_var_pc1"])
    )
    lines.append(f"{preset}: cos(warmth, axis)  " + _per_layer(g[g.metric == "cos_warmth_axis"]))
  for metric, what in (
    (
      "trait_prediction_r[warmth]",
      "r(last-prompt warmth projection, reply warmth), held-out items, pooled",
    ),
    (
      "trait_prediction_r[sycophancy]",
      "r(sycophancy projection, reply affirms), false-belief contexts",
    ),
    (
      "shift_prediction_r[warmth:warmth]",
      "r across cells (data projection difference, warmth shift)",
    ),
    (
      "shift_prediction_r[sycophancy:affirms]",
      "r across cells (data projection difference, affirms shift)",
    ),
  ):
    d = frame[frame.metric == metric] if len(frame) else frame
    for preset, g in d.groupby("preset", sort=True):
      n = int(g.n.max()) if len(g) else 0
      lines.append(
        f"{preset}: {what} (n={n})  "
        + _per_layer(g, lambda v: "nan" if pd.isna(v) else f"{v:+.2f}")
      )
  return "persona geometry\n" + "\n".join(lines) if lines else ""


def drift_text(frame):
  """Axis projection drift from neutral per context and cell group, with the slope over λ."""
  if frame.empty:
    return ""
  d = frame[frame.metric == "drift_vs_neutral_pooled[axis]"]
  slope = frame[frame.metric == "drift_slope_vs_lambda[axis]"]
  if d.empty:
    return ""
  lines = [
    "drift along the Assistant axis (last prompt token, context − neutral, paired by item "
    "and seed, 95% CI; last layer; negative = away from the assistant)"
  ]
  for preset, g in d.groupby("preset", sort=True):
    last = g.layer.max()
    g = g[g.layer == last]
    for (persona, lam, rho), h in g.groupby(
      ["persona", "warmth_weight", "warm_agreement"], sort=True
    ):
      parts = [f"{r.context} {_fmt(r.value, r.ci_low, r.ci_high, 1.0, 2)}" for r in h.itertuples()]
      lines.append(f"  {preset} {persona} λ={lam:g} ρ={rho:g}: " + "; ".join(parts))
    s = slope[(slope.preset == preset) & (slope.layer == last)]
    for persona, h in s.groupby("persona", sort=True):
      parts = [f"{r.context} {_fmt(r.value, r.ci_low, r.ci_high, 1.0, 2)}" for r in h.itertuples()]
      lines.append(f"  {preset} {persona}: slope of the drift over λ: " + "; ".join(parts))
  return "\n".join(lines)


def tradeoff_text(table, what, chosen):
  if table.empty:
    return ""
  show = table.assign(
    error_recovered=[
      _fmt(r.error_recovered, r.error_recovered_ci_low, r.error_recovered_ci_high)
      for r in table.itertuples()
    ],
    capability_lost=[
      _fmt(r.capability_lost, r.capability_lost_ci_low, r.capability_lost_ci_high)
      for r in table.itertuples()
    ],
    safety_lost=[
      _fmt(r.safety_lost, r.safety_lost_ci_low, r.safety_lost_ci_high) for r in table.itertuples()
    ],
    base_error_change=table.base_error_change.map(lambda v: _fmt(v)),
    warmth_lost=table.warmth_lost.map(lambda v: _fmt(v)),
    mc_error_change=table.mc_error_change.map(lambda v: _fmt(v)),
  )
  several = "regime" in table and table.regime.nunique() > 1
  show = show[
    ["preset"]
    + (["regime"] if several else [])
    + [
      "intervention",
      "error_recovered",
      "capability_lost",
      "safety_lost",
      "base_error_change",
      "warmth_lost",
      "mc_error_change",
      "n_cells",
    ]
  ]
  text = (
    f"{what} trade-off (points; error recovered on the reliability tasks of the warm top-λ "
    "cells, + = the intervention lowered error, − = it made error worse; capability / "
    "safety lost = error added on the capability / safety_refusal checks; "
    "base_error_change on the base models' reliability tasks)\n" + show.to_string(index=False)
  )
  for preset, row in chosen.items():
    r = table[(table.preset == preset) & (table.intervention == row["intervention"])]
    words = f": {tradeoff.tradeoff_in_words(r.iloc[0])}" if len(r) == 1 else ""
    text += (
      f"\n  chosen for {preset}: {row['intervention']} (within capability and safety "
      f"budget: {row['within_capability_budget']}, recovers error: "
      f"{row['recovers_error']}){words}"
    )
  return text
