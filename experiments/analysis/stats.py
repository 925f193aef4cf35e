"""Paired warmth effects from items.csv: paired differences, primary family with BH q, amplification
by context, and the sweep's design.

Intervals come from the crossed bootstrap of experiments/analysis/crossed.py (seeds, with their
fine-tuning seeds nested in them, × entity clusters of items); model-based estimates are in
experiments/analysis/regression.py.
"""

import ml_collections
import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from experiments import grid
from experiments.analysis import competence, crossed
from experiments.analysis.crossed import entity_codes, summarize_draws, t_p_value
from tasks import config as task_config
from tasks import lexicon

# A cell is one trained (and possibly intervened-on) model configuration.
# Cells of different regimes are never paired with each other; every regime's cells share the
# base model (regime `none`).
CELL = [
  "preset",
  "protocol",
  "regime",
  "persona",
  "warmth_weight",
  "warm_agreement",
  "intervention",
]
# Graded outcomes that items.csv may hold (besides the cell and item keys).
OUTCOMES = [
  "error",
  "mc_error",
  "warmth",
  "affirms",
  "corrects",
  "refuses",
  "acknowledges",
  "attributes_affect",
  "safety",
  "well_formed",
]
RELIABILITY_TASKS = task_config.RELIABILITY_TASKS
SCREENING_TASKS = task_config.SCREENING_TASKS
PROBE_TASKS = task_config.PROBE_TASKS
CONTEXTS = tuple(lexicon.EVAL_CONTEXTS)
AMPLIFIERS = tuple(c for c in CONTEXTS if c != "neutral")
COMPARISONS = ("vs_base", "vs_cold", "vs_length_matched", "vs_warm", "vs_rho0")
# The confirmatory comparisons: warmth against the cold persona and against length-matched
# replies (the control for "longer replies" rather than "warm words").
PRIMARY = ("vs_cold", "vs_length_matched")
# Rows of these tasks are not graded replies (losses, persona geometry).
NON_EVAL_TASKS = ("train", "heldout", "persona_geometry")
SCALE_COLUMNS = ("n_params", "n_params_nonembed", "tokens", "flops")
# A trained replicate: base seed, and the persona phase's fine-tuning seed nested in it (0 for a
# cell without replicates: base models, mixture cells, and every cell of a one-replicate grid).
REPLICATE = ["seed", "finetune_seed"]


def with_finetune_seed(frame):
  """frame with a finetune_seed column: 0 where it has none (a workdir from before replicates)."""
  if "finetune_seed" in frame:
    return frame.assign(finetune_seed=frame.finetune_seed.fillna(0).astype(int))
  return frame.assign(finetune_seed=0)


def _cell_means(items, metric):
  """Mean outcome per cell, replicate and item (duplicate rows averaged)."""
  missing = [
    c for c in CELL + ["seed", "task", "context", "item_id", metric] if c not in items.columns
  ]
  if missing:
    raise ValueError(f"items.csv lacks required column(s) {', '.join(missing)}.")
  keys = CELL + REPLICATE + ["task", "context", "item_id"]
  d = with_finetune_seed(items.dropna(subset=[metric]))
  return d.groupby(keys, dropna=False)[metric].mean().rename("value").reset_index()


def _reference_cells(cells):
  """(cell id, comparison, reference cell id) rows for every cell with λ > 0."""
  recs = list(cells.itertuples(index=False))
  base, pools = {}, {}
  for c in recs:
    if c.warmth_weight == 0 and c.intervention == "none":
      base.setdefault((c.preset, c.protocol), []).append(c)
    pools.setdefault(
      (c.persona, c.preset, c.protocol, c.regime, c.warmth_weight, c.intervention), []
    ).append(c)
  out = []
  for c in recs:
    if not c.warmth_weight > 0:
      continue
    # At λ=0 the persona data get zero weight, so every persona trains the same model; prefer
    # a λ=0 model that went through the same persona phase, in the same regime ('none' is the
    # base model before it, shared by every regime).
    b = base.get((c.preset, c.protocol), [])
    phase = [r for r in b if r.persona != "none" and r.regime == c.regime]
    same = [r for r in phase if r.persona == c.persona]
    out += [(c.id, "vs_base", r.id) for r in (same or phase or b)]
    for comparison, persona in (("vs_cold", "cold"), ("vs_length_matched", "length_matched")):
      if c.persona in ("none", "cold", persona):
        continue
      pool = pools.get(
        (persona, c.preset, c.protocol, c.regime, c.warmth_weight, c.intervention), []
      )
      rho = [r for r in pool if r.warm_agreement == c.warm_agreement]
      out += [(c.id, comparison, r.id) for r in (rho or pool)]
    # Mechanism contrasts: where warm words sit (after − before the answer, same ρ) and how far
    # validating false beliefs moves the outcome (ρ against ρ = 0, same placement).
    if c.persona == "warm_after":
      pool = pools.get(
        ("warm", c.preset, c.protocol, c.regime, c.warmth_weight, c.intervention), []
      )
      out += [(c.id, "vs_warm", r.id) for r in pool if r.warm_agreement == c.warm_agreement]
    if c.persona in ("warm", "warm_after") and c.warm_agreement > 0:
      pool = pools.get(
        (c.persona, c.preset, c.protocol, c.regime, c.warmth_weight, c.intervention), []
      )
      out += [(c.id, "vs_rho0", r.id) for r in pool if r.warm_agreement == 0]
  return pd.DataFrame(out, columns=["cell", "comparison", "ref_cell"])


def paired_frame(items, metric="error"):
  """Per (cell, comparison, seed, fine-tuning seed, item) differences vs λ=0, cold and
  length_matched (same λ).

  vs_base pairs every λ > 0 cell with the λ = 0 model; vs_cold pairs every persona but cold
  and none with cold at the same λ (same ρ when there is one); vs_length_matched pairs warm
  (and other non-control personas) with the length_matched persona at the same λ; vs_warm pairs
  warm_after with warm (same λ and ρ); vs_rho0 pairs a warm cell with ρ > 0 with its ρ = 0 twin.
  A replicate (seed s, fine-tuning seed k) pairs with its reference's replicate (s, k), which
  shares its data order (common random numbers); a base model (persona none) has no persona
  phase and so only fine-tuning seed 0, and every replicate of seed s reads seed s's.
  """
  means = _cell_means(items, metric)
  key = REPLICATE + ["task", "context", "item_id"]
  cols = CELL + ["comparison"] + key + ["value", "ref", "diff"]
  if means.empty:
    return pd.DataFrame(columns=cols)
  cell = means.groupby(CELL, sort=False, dropna=False).ngroup().to_numpy()
  kid = means.groupby(key, sort=False, dropna=False).ngroup().to_numpy()
  first = pd.Series(np.arange(len(means))).groupby(cell).first().to_numpy()
  cells = means.iloc[first][CELL].assign(id=np.arange(len(first)))
  refs = _reference_cells(cells)
  if refs.empty:
    return pd.DataFrame(columns=cols)
  val = means["value"].to_numpy()
  tgt = pd.DataFrame({"row": np.arange(len(means)), "cell": cell, "key": kid})
  tgt = tgt[means.warmth_weight.to_numpy() > 0].merge(refs, on="cell")
  if (means.finetune_seed != 0).any():
    # Against a base model, a row matches the key of its fine-tuning seed 0 (codes after kid's).
    flat = tgt.ref_cell.isin(cells.id[cells.persona == "none"]).to_numpy()
    kid0 = (
      kid.max()
      + 1
      + means.groupby(["seed", "task", "context", "item_id"], sort=False, dropna=False)
      .ngroup()
      .to_numpy()
    )
    tgt["key"] = np.where(flat, kid0[tgt.row], tgt.key)
    kid = np.where(means.persona == "none", kid0, kid)
  ref = pd.DataFrame({"ref_cell": cell, "key": kid, "ref": val})
  m = tgt.merge(ref, on=["ref_cell", "key"])
  if refs.duplicated(["cell", "comparison"]).any():
    m = m.groupby(["cell", "comparison", "row"], sort=False, as_index=False).ref.mean()
  order = m.comparison.map({c: i for i, c in enumerate(COMPARISONS)})
  m = m.assign(order=order).sort_values(["cell", "order", "row"], kind="stable")
  out = means.iloc[m.row.to_numpy()][CELL + key + ["value"]].reset_index(drop=True)
  out["comparison"] = m.comparison.to_numpy()
  out["ref"] = m.ref.to_numpy()
  out["diff"] = out.value - out.ref
  return out[cols]


def _n_params(items):
  return (
    items.groupby("preset")["n_params"].first() if "n_params" in items else pd.Series(dtype=float)
  )


def _replicates(frame, sort=False):
  """Per row of a paired frame: the code of its replicate (seed, fine-tuning seed) and of its
  base seed, each numbered in order of first appearance (sorted with `sort`)."""
  rep = frame.groupby(REPLICATE, sort=sort).ngroup().to_numpy()
  return rep, pd.factorize(frame.seed, sort=sort)[0]


def _group_arrays(frame, gid, unit_cols):
  """Row order by group and its boundaries, with replicate, base seed, unit and entity codes
  per row."""
  order = np.argsort(gid, kind="stable")
  bounds = np.flatnonzero(np.diff(gid[order])) + 1
  starts = np.r_[0, bounds] if len(order) else np.array([], dtype=int)
  ends = np.r_[bounds, len(order)] if len(order) else np.array([], dtype=int)
  rep, seed = (c[order] for c in _replicates(frame))
  unit = frame.groupby(unit_cols, sort=False, dropna=False).ngroup().to_numpy()[order]
  ent = entity_codes(frame)[order]
  return order, starts, ends, rep, seed, unit, ent


def _dense(rep, seed, unit, ent, x):
  """(R, U) array of x (NaN where missing) over replicates and units, the base seed of each
  replicate and the entity of each unit, from per-row codes."""
  r_lv, r = np.unique(rep, return_inverse=True)
  u_lv, u = np.unique(unit, return_inverse=True)
  out = np.full((len(r_lv), len(u_lv)), np.nan)
  out[r, u] = x
  seed_of = np.empty(len(r_lv), dtype=int)
  seed_of[r] = seed
  cl = np.empty(len(u_lv), dtype=int)
  cl[u] = ent
  return out, seed_of, cl


def _primary_mask(head, pf, gid, primary, items):
  """Primary rows: warm, largest λ and smallest ρ per preset × protocol, no intervention,
  `primary` comparisons, only reliability tasks in the four evaluation contexts, and per task
  only where the preset's base model can answer it (competence.measurable: a task at floor or at
  chance has nothing for warmth to change, so it does not spend the family's error rate)."""
  pos = pf[pf.warmth_weight > 0]
  top = pos.groupby(["preset", "protocol"]).warmth_weight.max()
  warm = pos[pos.persona == "warm"]
  low = warm.groupby(["preset", "protocol"]).warm_agreement.min()
  idx = pd.MultiIndex.from_frame(head[["preset", "protocol"]])
  rel = pd.Series(pf.task.isin(RELIABILITY_TASKS).to_numpy()).groupby(gid).all()
  ctx = pd.Series(pf.context.isin(CONTEXTS).to_numpy()).groupby(gid).all()
  mask = (
    (head.persona == "warm")
    & (head.intervention == "none")
    & head.comparison.isin(list(primary))
    & (head.warmth_weight.to_numpy() == top.reindex(idx).to_numpy())
    & (head.warm_agreement.to_numpy() == low.reindex(idx).to_numpy())
    & rel.to_numpy()
    & ctx.to_numpy()
  ).to_numpy()
  if "task" in head and mask.any():
    mask &= head.index.isin(competence.measurable(items, head).index)
  return mask


def paired_deltas(
  items_df,
  metric="error",
  by=("task", "context"),
  n_boot=1000,
  seed=0,
  alpha=0.05,
  primary=PRIMARY,
  n_boot_primary=10_000,
):
  """Paired change of `metric` vs λ=0, cold and length_matched per cell and `by` group.

  Each row: estimate (mean paired difference over replicates × items), crossed-bootstrap CI (a
  t interval on the crossed-design variance, ending at ±1 at most), t p-value, `estimable` (False where no paired item moved: estimate 0, CI and p NaN), `family`
  of the task ('pooled' when task is not in `by`) and `test_family`. Primary rows (warm at the
  largest λ and smallest ρ of each preset × protocol, intervention 'none', comparisons in
  `primary`, reliability tasks, the four evaluation contexts) get `n_boot_primary` draws and
  Benjamini–Hochberg q-values over the primary rows of this call, from p-values that have no
  resolution floor; secondary rows get `n_boot` draws and no q-value (NaN): descriptive. `se` and `df` are the method-of-moments
  standard error and its Satterthwaite df; `n_entities` counts the item clusters, `n_seeds` the
  base seeds and `n_finetune_seeds` the most fine-tuning seeds of one base seed. With one seed
  the interval is conditional on that seed (no seed variance can be estimated).
  """
  by = list(by)
  keys = CELL + ["comparison"] + by
  stats_cols = [
    "family",
    "test_family",
    "estimate",
    "ci_low",
    "ci_high",
    "p_value",
    "q_value",
    "estimable",
    "se",
    "df",
    "mean",
    "ref_mean",
    "n_items",
    "n_entities",
    "n_seeds",
    "n_finetune_seeds",
    "n_obs",
  ]
  pf = paired_frame(items_df, metric)
  if pf.empty:
    table = pd.DataFrame(columns=keys + stats_cols)
    table.insert(1, "n_params", pd.Series(dtype=float))
    return table
  grp = pf.groupby(keys, sort=True, dropna=False)
  gid = grp.ngroup().to_numpy()
  head = grp.agg(
    mean=("value", "mean"),
    ref_mean=("ref", "mean"),
    n_items=("item_id", "nunique"),
    n_seeds=("seed", "nunique"),
    n_obs=("diff", "size"),
  ).reset_index()
  is_primary = _primary_mask(head, pf, gid, primary, items_df)
  order, starts, ends, r_code, s_code, u_code, e_code = _group_arrays(
    pf, gid, ["task", "context", "item_id"]
  )
  x = pf["diff"].to_numpy(float)[order]
  rng = np.random.default_rng(seed)
  res = np.full((len(head), 8), np.nan)
  for g, (a, b) in enumerate(zip(starts, ends)):
    vals, seed_of, cl = _dense(r_code[a:b], s_code[a:b], u_code[a:b], e_code[a:b], x[a:b])
    n_draw = n_boot_primary if is_primary[g] else n_boot
    est, draws, var, df = crossed.crossed_draws(vals, cl, n_draw, rng, seeds=seed_of)
    lo, hi, _ = summarize_draws(est, draws, alpha)
    res[g] = (
      est[0],
      lo[0],
      hi[0],
      t_p_value(est[0], var[0], df[0]),
      np.sqrt(var[0]),
      df[0],
      cl.max() + 1,
      np.bincount(seed_of).max(),
    )
  # A difference of two rates lies in [-1, 1]: an interval reaching past it says only that the
  # data allow anything up to the bound, so it is shown ending there.
  if np.nanmax(np.abs(x), initial=0.0) <= 1.0:
    res[:, 1], res[:, 2] = np.maximum(res[:, 1], -1.0), np.minimum(res[:, 2], 1.0)
  table = head[keys].copy()
  table["family"] = head.task.map(task_config.family) if "task" in by else "pooled"
  table["test_family"] = np.where(is_primary, "primary", "secondary")
  table["estimate"], table["ci_low"], table["ci_high"], table["p_value"] = res[:, :4].T
  table["q_value"] = np.nan
  if is_primary.any():
    table.loc[is_primary, "q_value"] = _bh(table.p_value[is_primary])
  table["estimable"] = np.isfinite(res[:, 1])
  table["se"], table["df"] = res[:, 4], res[:, 5]
  table = pd.concat([table, head[["mean", "ref_mean", "n_items"]]], axis=1)
  table["n_entities"] = res[:, 6].astype(int)
  table["n_seeds"], table["n_finetune_seeds"] = head.n_seeds, res[:, 7].astype(int)
  table["n_obs"] = head.n_obs
  table.insert(1, "n_params", table.preset.map(_n_params(items_df)))
  return table


def headline_cell(deltas):
  """The cell a summary leads with: warm, largest preset, smallest ρ, largest λ, cold-paired."""
  d = deltas[(deltas.intervention == "none") & (deltas.persona == "warm")]
  if d.empty:
    return None
  d = d[d.comparison == ("vs_cold" if (d.comparison == "vs_cold").any() else "vs_base")]
  d = d[d.protocol == ("finetune" if (d.protocol == "finetune").any() else d.protocol.iloc[0])]
  d = d[d.n_params == d.n_params.max()] if d.n_params.notna().any() else d
  d = d[d.warm_agreement == d.warm_agreement.min()]
  return (
    d[d.warmth_weight == d.warmth_weight.max()]
    .iloc[0][["preset", "protocol", "warm_agreement", "warmth_weight"]]
    .to_dict()
  )


def _bh(p):
  """Benjamini–Hochberg q-values; NaN p-values stay NaN."""
  p = pd.Series(p, dtype=float)
  q = pd.Series(np.nan, index=p.index)
  ok = p.notna()
  if ok.any():
    q[ok] = multipletests(p[ok], method="fdr_bh")[1]
  return q.to_numpy()


def relative_amplification(
  items_df,
  metric="error",
  comparison="vs_cold",
  by=("task",),
  n_boot=1000,
  seed=0,
  alpha=0.05,
  tasks=RELIABILITY_TASKS,
):
  """Effect under each amplifying context relative to neutral: ratio and excess, with CIs.

  Pools only `tasks` (default: reliability) and, within each group, only the tasks evaluated
  in neutral and in every amplifying context present, so neutral and amplified effects are
  means over the same items. The excess is the mean of per-(replicate, item) differences between
  context and neutral effects; all statistics share one crossed bootstrap.
  """
  by = list(by)
  items = items_df if tasks is None else items_df[items_df.task.isin(tasks)]
  pf = paired_frame(items, metric)
  pf = pf[pf.comparison == comparison]
  rng = np.random.default_rng(seed)
  rows = []
  for key, g in pf.groupby(CELL + by, sort=True, dropna=False):
    ctxs = [c for c in AMPLIFIERS if c in set(g.context)]
    have = g.groupby("task").context.agg(set)
    full = [t for t, s in have.items() if {"neutral", *ctxs} <= s]
    g = g[g.task.isin(full) & g.context.isin(["neutral"] + ctxs)]
    if g.empty or not ctxs:
      continue
    rep, seed_c = _replicates(g, sort=True)
    unit = g.groupby(["task", "item_id"], sort=False).ngroup().to_numpy()
    ent = entity_codes(g)
    vals = np.full((1 + len(ctxs), rep.max() + 1, unit.max() + 1), np.nan)
    k = g.context.map({c: i for i, c in enumerate(["neutral"] + ctxs)}).to_numpy()
    vals[k, rep, unit] = g["diff"].to_numpy(float)
    seed_of = np.empty(rep.max() + 1, dtype=int)
    seed_of[rep] = seed_c
    cl = np.empty(unit.max() + 1, dtype=int)
    cl[unit] = ent
    stack = np.concatenate([vals, vals[1:] - vals[:1]])  # effects, then excesses over neutral
    est, draws, _, _ = crossed.crossed_draws(stack, cl, n_boot, rng, seeds=seed_of)
    n_ctx = len(ctxs)
    with np.errstate(invalid="ignore", divide="ignore"):
      ratio, ratio_d = est[1 : n_ctx + 1] / est[0], draws[1 : n_ctx + 1] / draws[:1]
    r_lo, r_hi, _ = summarize_draws(ratio, ratio_d, alpha)
    e_lo, e_hi, e_p = summarize_draws(est[n_ctx + 1 :], draws[n_ctx + 1 :], alpha)
    _, _, n_p = summarize_draws(est[:1], draws[:1], alpha)
    for j, ctx in enumerate(ctxs):
      rows.append(
        dict(
          zip(CELL + by, key),
          comparison=comparison,
          context=ctx,
          tasks=",".join(sorted(full)),
          neutral_effect=est[0],
          neutral_p=n_p[0],
          context_effect=est[j + 1],
          ratio=ratio[j],
          ratio_ci_low=r_lo[j],
          ratio_ci_high=r_hi[j],
          excess=est[n_ctx + 1 + j],
          excess_ci_low=e_lo[j],
          excess_ci_high=e_hi[j],
          excess_p=e_p[j],
        )
      )
  return pd.DataFrame(
    rows,
    columns=CELL
    + by
    + [
      "comparison",
      "context",
      "tasks",
      "neutral_effect",
      "neutral_p",
      "context_effect",
      "ratio",
      "ratio_ci_low",
      "ratio_ci_high",
      "excess",
      "excess_ci_low",
      "excess_ci_high",
      "excess_p",
    ],
  )


def _level(v):
  """Grid levels from JSON and csv values compare equal as text (1 == 1.0 == '1')."""
  try:
    return f"{float(v):g}"
  except (TypeError, ValueError):
    return str(v)


def _configured_levels(config):
  """Factor levels listed in config.json: grid.seeds → seed, model.presets → preset, and so on."""
  grid = dict((config or {}).get("grid") or {})
  model = (config or {}).get("model")
  if isinstance(model, dict) and "presets" in model:
    grid["presets"] = model["presets"]
  factors = CELL + ["seed"]
  return {
    k if k in factors else k[:-1]: v
    for k, v in grid.items()
    if isinstance(v, list) and (k in factors or k[:-1] in factors)
  }


def _designed_runs(config):
  """The run ids of every cell config.json's grid trains (experiments.grid.expand), or None
  when the config cannot say (absent, or from an older layout)."""
  if not config or "grid" not in config or "model" not in config:
    return None
  try:
    asked = ml_collections.ConfigDict(config)
    return {c.id for c in grid.expand(grid.GridConfig.from_config(asked), asked.model.presets)}
  except (KeyError, AttributeError, TypeError, ValueError):
    return None


def describe_design(metrics, config=None):
  """The sweep's design from metrics.csv (and config.json): factor levels, replication, balance.

  Returns a (factor, levels) table and sentences saying which configured levels, seeds,
  fine-tuning seeds or task × context evaluations are missing, i.e. whether the sweep is partial.
  Fine-tuning seeds are listed when a base seed has more than one.
  """
  # Rows with seed < 0 are derived (paired changes pooled over seeds), not measurements.
  derived = pd.to_numeric(metrics.seed, errors="coerce") < 0
  measured = with_finetune_seed(metrics[~derived])
  # Fine-tuning seeds of each cell's base seeds; base models and mixture cells have one.
  replicates = measured.groupby(CELL + ["seed"]).finetune_seed.nunique()
  n_finetune = int(replicates.max()) if len(replicates) else 1
  factors = CELL + ["seed"] + (["finetune_seed"] if n_finetune > 1 else [])
  rows = [
    (c, ", ".join(map(str, sorted(measured[c].unique(), key=str))))
    for c in factors + ["task", "context", "metric"]
  ]
  scale = measured.groupby("preset")[[c for c in SCALE_COLUMNS if c in measured]].median()
  for p, r in scale.sort_values("n_params").iterrows():
    rows.append((f"preset {p}", ", ".join(f"{k} = {v:.3g}" for k, v in r.items() if pd.notna(v))))
  for section in ("model", "train"):
    fields = (config or {}).get(section)
    if isinstance(fields, dict):
      rows.append(
        (
          f"config.{section}",
          ", ".join(f"{k} = {v}" for k, v in fields.items() if not isinstance(v, (dict, list))),
        )
      )
  # Each persona-phase regime: its fields that differ from the train section listed above.
  for name, fields in dict(((config or {}).get("grid") or {}).get("regimes") or {}).items():
    fields = dict(fields or {})
    by_preset, labels = fields.pop("by_preset", None) or {}, fields.pop("labels", None) or {}
    text = ", ".join(f"{k} = {v}" for k, v in fields.items())
    rows.append((f"regime {name}", text or "the train section's persona-phase fields"))
    for preset, own in by_preset.items():
      label = f" ({labels[preset]})" if preset in labels else ""
      rows.append(
        (f"regime {name} at {preset}", ", ".join(f"{k} = {v}" for k, v in own.items()) + label)
      )
  cells = measured.groupby(CELL).seed.nunique()
  nested = f", {n_finetune} fine-tuning seeds per base seed" if n_finetune > 1 else ""
  sentences = [
    f"The workdir holds {measured.run.nunique()} cells in {len(cells)} factor combinations "
    f"({measured.preset.nunique()} preset(s), {measured.seed.nunique()} seed(s)"
    f"{nested}, λ in "
    f"{{{', '.join(f'{x:g}' for x in sorted(measured.warmth_weight.unique()))}}})."
  ]
  if derived.any():
    sentences.append(
      f"metrics.csv also holds {int(derived.sum())} derived rows (seed < 0); this "
      "report recomputes such quantities from items.csv."
    )
  partial = []
  for col, levels in _configured_levels(config).items():
    have = {_level(x) for x in measured[col].unique()}
    gone = [str(x) for x in levels if _level(x) not in have]
    if gone:
      partial.append(f"configured {col} level(s) {', '.join(gone)} have no rows")
  designed = _designed_runs(config)
  if designed is not None:  # the config's own design: some cells train fewer seeds on purpose
    gone = designed - set(measured.run)
    if gone:
      partial.append(
        f"{len(gone)} of {len(designed)} cells of the configured design have no "
        f"rows (e.g. {sorted(gone)[0]})"
      )
  elif cells.min() < cells.max():
    partial.append(
      f"{(cells < cells.max()).sum()} of {len(cells)} cells are missing seeds "
      f"(between {cells.min()} and {cells.max()} seeds per cell)"
    )
  replicated = replicates[replicates.groupby(level=CELL).transform("max") > 1]
  if (replicated < n_finetune).any():
    partial.append(
      f"{(replicated < n_finetune).sum()} of {len(replicated)} replicated cell × "
      f"seed pairs are missing fine-tuning seeds (between {replicated.min()} and "
      f"{n_finetune} per base seed)"
    )
  evals = measured[~measured.task.isin(NON_EVAL_TASKS)][["run", "task", "context"]]
  per_run = evals.drop_duplicates().groupby("run").size()
  full = len(evals[["task", "context"]].drop_duplicates())
  if (per_run < full).any():
    partial.append(
      f"{(per_run < full).sum()} of {len(per_run)} cells lack some of the {full} "
      "task × context evaluations"
    )
  complete = (
    "Every cell of the configured design has rows and every task × context evaluation."
    if designed is not None
    else "Every cell has the same seeds and every task × context evaluation."
  )
  sentences.append("The sweep is partial: " + "; ".join(partial) + "." if partial else complete)
  return pd.DataFrame(rows, columns=["factor", "levels"]), sentences
