"""Cross-cell persona results from the merged items and metrics, as metric rows with CIs.

  trait prediction   per layer, r between the last-prompt projection and the trait the generated
                     reply expresses (held-out items; pooled over cells, and within cells)
  λ slopes           per context and layer, the slope over λ of the mean projection and of its
                     drift from neutral (paired by item and seed, crossed-bootstrap CI)
  shift prediction   per layer, r across persona cells between the projection difference of the
                     cell's training data (before training) and its behaviour shift after it
  capping            capped − uncapped per cell group × task × context, and per setting the
                     trade-off (error recovered, capability and warmth lost) that picks defaults
  steering           preventatively steered − plain twin, per setting

Rows carry seed = -1 (seeds pooled) and a `layer` column where one applies.
"""

import numpy as np
import pandas as pd

from experiments.analysis import crossed
from experiments.persona.vectors import VECTORS, fisher_ci, pearson
from experiments.runtime.results import UNTAGGED_REGIMES
from tasks.config import RELIABILITY_TASKS

TASK = "persona_geometry"
KEY = ["seed", "task", "item_id"]
# Which outcome of the generated reply each vector is meant to predict, and on which contexts.
TRAITS = {
  "warmth": ("warmth", None),
  "sycophancy": ("affirms", "false_belief"),
  "axis": ("error", None),
}
SHIFTS = {"warmth": ["warmth", "error"], "sycophancy": ["affirms"], "axis": ["error"]}


def _proj_layers(items):
  """Layers with projection columns that hold values (presets of different depth share items)."""
  return sorted(
    int(c.rsplit("_l", 1)[1])
    for c in items.columns
    if c.startswith("proj_axis_l") and items[c].notna().any()
  )


def _row(preset, protocol, metric, value, n, n_params=np.nan, **kw):
  row = {
    "run": f"{preset}-{protocol}-{kw.get('persona', 'all')}",
    "preset": preset,
    "n_params": n_params,
    "protocol": protocol,
    "persona": "all",
    "warmth_weight": np.nan,
    "warm_agreement": np.nan,
    "seed": -1,
    "intervention": "none",
    "task": TASK,
    "context": "all",
    "metric": metric,
    "value": value,
    "n": n,
  }
  row.update(kw)
  return row


def _stack(frame, column):
  """(S, I) array of a column over seeds × items (task, item_id), NaN where missing, and the
  entity cluster of each item (items about one person, disease or drug resample together).

  Rows sharing a seed and item (fine-tuning seeds nested in a base seed) are averaged: the base
  seed's mean over its replicates is the unit the bootstrap resamples."""
  frame = frame.groupby(KEY, sort=False, as_index=False)[column].mean()
  seed = pd.factorize(frame.seed, sort=True)[0]
  item = frame.groupby(["task", "item_id"], sort=False).ngroup().to_numpy()
  out = np.full((seed.max() + 1, item.max() + 1), np.nan)
  out[seed, item] = frame[column].to_numpy(float)
  clusters = np.zeros(item.max() + 1, int)
  clusters[item] = crossed.entity_codes(frame)
  return out, clusters


def boot_mean(frame, column, n_boot, rng):
  """(estimate, ci_low, ci_high) of the mean of a per-(seed, item) column, crossed bootstrap."""
  if frame.empty:
    return np.nan, np.nan, np.nan
  values, clusters = _stack(frame, column)
  est, draws = crossed.crossed_bootstrap(values, clusters, n_boot, rng)
  lo, hi, _ = crossed.summarize_draws(est, draws)
  return float(est[0]), float(lo[0]), float(hi[0])


def _plain(items):
  return items[items.intervention == "none"]


def trait_prediction_rows(items):
  """Per layer: does the last-prompt projection predict the trait of the generated reply?"""
  rows = []
  d = _plain(items)
  if "persona_split" not in d:
    return rows
  d = d[d.persona_split == "heldout"]
  for (preset, protocol), g in d.groupby(["preset", "protocol"]):
    for vec, (outcome, ctx) in TRAITS.items():
      sel = g if ctx is None else g[g.context.str.contains(ctx)]
      for layer in _proj_layers(sel):
        col = f"proj_{vec}_l{layer}"
        r = pearson(sel[col], sel[outcome])
        lo, hi = fisher_ci(r, len(sel))
        within = [pearson(c[col], c[outcome]) for _, c in sel.groupby("run")]
        within = [w for w in within if np.isfinite(w)]
        rows.append(
          _row(
            preset,
            protocol,
            f"trait_prediction_r[{vec}]",
            r,
            len(sel),
            layer=layer,
            ci_low=lo,
            ci_high=hi,
          )
        )
        rows.append(
          _row(
            preset,
            protocol,
            f"trait_prediction_r_within[{vec}]",
            np.mean(within) if within else np.nan,
            len(within),
            layer=layer,
          )
        )
  return rows


def _slope_frame(d, col, ctx, drift):
  """Per (seed, task, item) the OLS slope over λ of the projection (or its drift from neutral)."""
  cur = d[d.context == ctx].groupby(KEY + ["warmth_weight"])[col].mean()
  if drift:
    ref = d[d.context == "neutral"].groupby(KEY + ["warmth_weight"])[col].mean()
    cur = (cur - ref).dropna()
  wide = cur.unstack("warmth_weight").dropna()
  lams = wide.columns.to_numpy(float)
  if len(lams) < 2 or wide.empty:
    return pd.DataFrame()
  w = (lams - lams.mean()) / np.sum((lams - lams.mean()) ** 2)
  return wide.assign(slope=wide.to_numpy() @ w).reset_index()[KEY + ["slope"]]


def lambda_slope_rows(items, n_boot, rng):
  """Per persona, context and layer: does λ move the projection, and the context drift?"""
  rows = []
  d = _plain(items)
  if not _proj_layers(d):
    return rows
  for (preset, protocol), g in d.groupby(["preset", "protocol"]):
    zero = g[(g.warmth_weight == 0) & (g.persona != "none")]
    zero = zero if not zero.empty else g[g.persona == "none"]
    for persona in sorted(set(g.persona) - {"none"}):
      cells = pd.concat([zero, g[(g.persona == persona) & (g.warmth_weight > 0)]])
      for vec in VECTORS:
        for layer in _proj_layers(cells):
          col = f"proj_{vec}_l{layer}"
          for ctx in sorted(set(cells.context)):
            for drift in (False, True) if ctx != "neutral" else (False,):
              f = _slope_frame(cells, col, ctx, drift)
              if f.empty:
                continue
              est, lo, hi = boot_mean(f, "slope", n_boot, rng)
              name = "drift_slope_vs_lambda" if drift else "projection_slope_vs_lambda"
              rows.append(
                _row(
                  preset,
                  protocol,
                  f"{name}[{vec}]",
                  est,
                  len(f),
                  persona=persona,
                  context=ctx,
                  layer=layer,
                  ci_low=lo,
                  ci_high=hi,
                )
              )
  return rows


def pooled_drift_rows(items, n_boot, rng, vecs=("axis", "warmth")):
  """Per cell group (seeds pooled), context and layer: the paired shift from neutral, with CI."""
  rows = []
  d = _plain(items)
  groups = ["preset", "protocol", "persona", "warmth_weight", "warm_agreement"]
  for key, g in d.groupby(groups, sort=True):
    k = dict(zip(groups, key))
    neutral = g[g.context == "neutral"]
    for vec in vecs:
      for layer in _proj_layers(g):
        col = f"proj_{vec}_l{layer}"
        ref = neutral.groupby(KEY)[col].mean()
        for ctx in sorted(set(g.context) - {"neutral"}):
          diff = (g[g.context == ctx].groupby(KEY)[col].mean() - ref).dropna()
          if diff.empty:
            continue
          est, lo, hi = boot_mean(diff.rename("diff").reset_index(), "diff", n_boot, rng)
          run = (
            f"{k['preset']}-{k['protocol']}-{k['persona']}-l{k['warmth_weight']:g}"
            f"-r{k['warm_agreement']:g}"
          )
          rows.append(
            _row(
              k["preset"],
              k["protocol"],
              f"drift_vs_neutral_pooled[{vec}]",
              est,
              len(diff),
              run=run,
              persona=k["persona"],
              warmth_weight=k["warmth_weight"],
              warm_agreement=k["warm_agreement"],
              context=ctx,
              layer=layer,
              ci_low=lo,
              ci_high=hi,
            )
          )
  return rows


def _behaviour(items):
  """Per plain cell: mean warmth, affirms on false-belief contexts, error on reliability tasks."""
  d = _plain(items)
  out = {}
  for run, g in d.groupby("run"):
    fb = g[g.context.str.contains("false_belief")]
    rel = g[g.task.isin(RELIABILITY_TASKS)]
    out[run] = {
      "warmth": g.warmth.mean(),
      "affirms": fb.affirms.mean() if len(fb) else np.nan,
      "error": rel.error.mean(),
    }
  return pd.DataFrame.from_dict(out, orient="index")


def shift_prediction_rows(items, metrics):
  """Per layer: r across cells between data projection difference and behaviour shift."""
  rows = []
  pd_rows = metrics[
    metrics.metric.astype(str).str.startswith("projection_difference[")
    & (metrics.intervention == "none")
  ]
  if pd_rows.empty:
    return rows
  beh = _behaviour(items)
  cells = _plain(items).drop_duplicates("run").set_index("run")
  base = cells[cells.persona == "none"]
  for (preset, protocol), g in pd_rows.groupby(["preset", "protocol"]):
    for vec, outcomes in SHIFTS.items():
      for layer, h in g[g.metric == f"projection_difference[{vec}]"].groupby("layer"):
        for outcome in outcomes:
          x, y = [], []
          for r in h.itertuples():
            ref = base[
              (base.preset == preset) & (base.protocol == protocol) & (base.seed == r.seed)
            ]
            if r.run in beh.index and len(ref):
              x.append(r.value)
              y.append(beh.loc[r.run, outcome] - beh.loc[ref.index[0], outcome])
          rr = pearson(x, y)
          lo, hi = fisher_ci(rr, len(x))
          rows.append(
            _row(
              preset,
              protocol,
              f"shift_prediction_r[{vec}:{outcome}]",
              rr,
              len(x),
              layer=int(layer),
              ci_low=lo,
              ci_high=hi,
            )
          )
  return rows


def paired_with(items, select, ref_select, outcome, on):
  """Per-item differences of `outcome`: rows `select` minus rows `ref_select`, matched on `on`
  (its columns that items has: an items.csv from before regimes has no `regime`)."""
  on = [c for c in on if c in items]
  a = items[select].groupby(on + ["intervention"])[outcome].mean().rename("value").reset_index()
  b = items[ref_select].groupby(on)[outcome].mean().rename("ref")
  m = a.join(b, on=on, how="inner")
  return m.assign(diff=m.value - m.ref)


CELL_ON = [
  "preset",
  "protocol",
  "regime",
  "persona",
  "warmth_weight",
  "warm_agreement",
  "seed",
  "task",
  "context",
  "item_id",
]


def capped_pairs(items, outcome="error"):
  """Capped − uncapped differences of `outcome`, paired by cell, seed and item."""
  capped = items.intervention.str.startswith("cap")
  plain = items.intervention == "none"
  return paired_with(items, capped, plain, outcome, CELL_ON)


def steered_pairs(items, outcome="error"):
  """Preventatively steered − plain twin, paired by cell factors, seed and item."""
  steered = items.intervention.str.startswith("train-steer")
  return paired_with(items, steered, items.intervention == "none", outcome, CELL_ON)


def change_rows(pairs, metric, n_boot, rng, by=("task", "context")):
  """Mean paired change per cell group (persona, λ, ρ) × intervention × `by`, with CIs."""
  rows = []
  if pairs.empty:
    return rows
  groups = [
    c
    for c in [
      "preset",
      "protocol",
      "regime",
      "persona",
      "warmth_weight",
      "warm_agreement",
      "intervention",
    ]
    if c in pairs
  ]
  for key, g in pairs.groupby(groups + list(by), sort=True):
    k = dict(zip(groups + list(by), key))
    est, lo, hi = boot_mean(g.groupby(KEY)["diff"].mean().reset_index(), "diff", n_boot, rng)
    regime = k.get("regime", "default")
    tag = "" if regime in UNTAGGED_REGIMES else f"@{regime}"
    run = (
      f"{k['preset']}-{k['protocol']}{tag}-{k['persona']}-l{k['warmth_weight']:g}"
      f"-r{k['warm_agreement']:g}"
    )
    rows.append(
      _row(
        k["preset"],
        k["protocol"],
        metric,
        est,
        len(g),
        run=run,
        regime=regime,
        persona=k["persona"],
        warmth_weight=k["warmth_weight"],
        warm_agreement=k["warm_agreement"],
        intervention=k["intervention"],
        task=k.get("task", "all"),
        context=k.get("context", "all"),
        ci_low=lo,
        ci_high=hi,
      )
    )
  return rows
