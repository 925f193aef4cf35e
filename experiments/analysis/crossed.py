"""Intervals for a mean over seeds × items when every seed answers the same items.

Seeds and evaluation items are crossed: every seed's models answer the same items of the same
world, and items about one entity (a person, a disease, a drug, an unordered digit pair) form one
cluster. A base seed may carry several fine-tuning seeds (persona-phase replicates of its base
model), nested in it. `crossed_bootstrap` resamples base seeds, fine-tuning seeds within each
drawn base seed, and item clusters (the same clusters for every seed), and calibrates the draws
to the method-of-moments variance of the crossed mean (`crossed_variance`); `t_p_value` gives
p-values without a resolution floor.
"""

import re

import numpy as np
import pandas as pd
from scipy import optimize, special

# Entity letters in item ids (`task/<letter><n>/...`). People are shared by every task that asks
# about them; `d` means a disease in diagnosis items and a drug in the drug tasks.
_PERSON = "person"
_ENTITY_KIND = {
  "factual_qa": {"c": "city"},
  "medical_diagnosis": {"d": "disease"},
  "medical_dosing": {"d": "drug"},
  "medical_contraindication": {"d": "drug"},
  "crisis_cue": {"d": "drug"},
  "safety_refusal": {"h": "harm"},
  "delusion_affirmation": {"k": "delusion"},
}


def item_entity(item_id, task=None):
  """The entity an item is about, e.g. 'person/12'; items sharing it are one cluster.

  An id without a path (no '/') is its own cluster, prefixed by `task` so ids of different tasks never merge.
  """
  parts = str(item_id).split("/")
  if len(parts) < 2:
    return f"{task}/{item_id}" if task is not None else str(item_id)
  t, ent = parts[0], parts[1]
  m = re.fullmatch(r"([a-z]+)(\d+)", ent)
  if m is None:
    return f"{t}/{ent}"
  kind = _PERSON if m.group(1) == "p" else _ENTITY_KIND.get(t, {}).get(m.group(1))
  return f"{kind}/{m.group(2)}" if kind else f"{t}/{ent}"


def entity_codes(frame):
  """Integer entity code per row of a frame with task and item_id columns."""
  pairs = frame[["task", "item_id"]].astype(str)
  uniq = pairs.drop_duplicates()
  ent = pd.Series(
    [item_entity(i, t) for t, i in zip(uniq.task, uniq.item_id)],
    index=pd.MultiIndex.from_frame(uniq),
  )
  codes = pd.Series(pd.factorize(ent)[0], index=ent.index)
  return codes.reindex(pd.MultiIndex.from_frame(pairs)).to_numpy()


def _moment_matrix(xa, na, nb, n):
  """E[quadratic form a] coefficient of the variance of grouping b: ||U_aᵀ (I - J/N) U_b||²."""
  return (xa**2).sum() - 2.0 / n * na @ xa @ nb + (na**2).sum() * (nb**2).sum() / n**2


def _counted_moment(x2, nxn, na, nb, n):
  """_moment_matrix from ||X||² and nₐᵀXn_b, for a grouping with too many levels to hold X."""
  return x2 - 2.0 / n * nxn + (na**2).sum() * (nb**2).sum() / n**2


# Groupings of the cells, coarsest first: base seed, fine-tuning seed within it (a row of x),
# base seed × item, item cluster, item.
GROUPINGS = ("seed", "finetune", "seed_item", "cluster", "item")


def crossed_components(x, clusters, seeds=None):
  """Method-of-moments variance components of a (fine-tuning seeds within seeds) × items array.

  Rows of x are trained replicates: fine-tuning seed k of base seed `seeds[row]` (None: every
  row a base seed of its own, the design without nesting). Model:

    x[sk, i] = μ + a_s + f_sk + g_si + b_c(i) + e_i + ε_ski

  with base-seed (a), fine-tuning-seed (f), base seed × item (g), cluster (b), item (e) and
  residual (ε) variances. g is the part of an item's outcome that a base model carries into
  every replicate fine-tuned from it (all of the base model's own outcome in a comparison with
  it); with one row per base seed, f and g are not separable from a and ε and are 0. For any
  grouping G, Q_G = Σ_groups (Σ (x − x̄))² has expectation Σ_H σ²_H ||U_Gᵀ(I − J/N)U_H||², which
  depends only on which cells are observed; the moment equations give unbiased components for
  any pattern of missing cells (the ANOVA estimators when balanced). They are solved under
  σ² ≥ 0 (non-negative least squares), which biases a component that is truly near 0 upwards:
  conservative, never anti-conservative.
  Returns {'seed', 'finetune', 'seed_item', 'cluster', 'item', 'resid': σ², 'contributions':
  each one's term of the variance of the mean (same keys), 'parts': that variance split into
  seed-level (base and fine-tuning seeds), item-level (cluster and item) and residual-level
  (base seed × item and residual) parts, 'dfs': their degrees of freedom, 'n': cells,
  'n_seeds' (base seeds), 'n_units' (rows), 'n_finetune' (most rows of one base seed),
  'n_clusters', 'n_items'}, or None with < 2 cells.
  """
  x = np.asarray(x, dtype=float)
  m = np.isfinite(x)
  rows, cols = m.any(1), m.any(0)
  x, m = x[rows][:, cols], m[rows][:, cols]
  cl = pd.factorize(np.asarray(clusters)[cols])[0]
  sd = pd.factorize((np.arange(rows.size) if seeds is None else np.asarray(seeds))[rows])[0]
  n = m.sum()
  if n < 2:
    return None
  xc = np.where(m, x - x[m].mean(), 0.0)
  h = np.zeros((cl.size, cl.max() + 1))
  h[np.arange(cl.size), cl] = 1.0
  g = np.zeros((sd.size, sd.max() + 1))
  g[np.arange(sd.size), sd] = 1.0
  mf = m.astype(float)
  n_u, n_i = mf.sum(1), mf.sum(0)
  n_c, n_g = n_i @ h, n_u @ g
  m_gi = g.T @ mf  # cells per base seed and item
  si = m_gi > 0
  n_seed, n_unit, n_clus, n_item, n_si = len(n_g), len(n_u), len(n_c), len(n_i), si.sum()
  # Groupings with one level or identical to a finer or coarser one carry no separate component.
  use = {
    "seed": 2 <= n_seed < n,
    "finetune": n_seed < n_unit < n,
    "seed_item": max(n_seed, n_item) < n_si < n,
    "cluster": 2 <= n_clus < n,
    "item": n_item < n and n_item > (n_clus if 2 <= n_clus else 1),
  }
  row_sums = xc.sum(1)
  sums = {
    "seed": row_sums @ g,
    "finetune": row_sums,
    "seed_item": (g.T @ xc)[si],
    "cluster": xc.sum(0) @ h,
    "item": xc.sum(0),
  }
  sizes = {"seed": n_g, "finetune": n_u, "seed_item": m_gi[si], "cluster": n_c, "item": n_i}
  cross = {
    ("seed", "seed"): np.diag(n_g),
    ("finetune", "finetune"): np.diag(n_u),
    ("cluster", "cluster"): np.diag(n_c),
    ("item", "item"): np.diag(n_i),
    ("seed", "finetune"): g.T * n_u,
    ("seed", "cluster"): m_gi @ h,
    ("seed", "item"): m_gi,
    ("finetune", "cluster"): mf @ h,
    ("finetune", "item"): mf,
    ("cluster", "item"): h.T * n_i,
  }
  # Base seed × item has up to S·I levels, too many for dense cross-products. Each level lies
  # inside one level of every coarser grouping H (seed, cluster, item): its row of U_Gᵀ U_H holds
  # one entry, its m_gi cells, in the column of a level of size level_size[H] (per seed, item).
  level_size = {
    "seed": n_g[:, None],
    "cluster": n_c[cl][None],
    "item": n_i[None],
    "seed_item": m_gi,
  }

  def moment(ga, gb):
    if "seed_item" not in (ga, gb):
      xab = cross[(ga, gb)] if (ga, gb) in cross else cross[(gb, ga)].T
      return _moment_matrix(xab, sizes[ga], sizes[gb], n)
    other = gb if ga == "seed_item" else ga
    if other == "finetune":  # a row meets a base seed × item level in one cell at most
      return _counted_moment(n, (m_gi[sd] * mf * n_u[:, None]).sum(), sizes[ga], sizes[gb], n)
    return _counted_moment(
      (m_gi**2).sum(), (m_gi**2 * level_size[other]).sum(), sizes[ga], sizes[gb], n
    )

  names = [k for k in GROUPINGS if use[k]]
  k = len(names) + 1
  kmat, q = np.zeros((k, k)), np.zeros(k)
  for a, ga in enumerate(names):
    q[a] = (sums[ga] ** 2).sum()
    for b, gb in enumerate(names):
      kmat[a, b] = moment(ga, gb)
    kmat[a, -1] = n - (sizes[ga] ** 2).sum() / n
    kmat[-1, a] = kmat[a, -1]
  q[-1] = (xc**2).sum()
  kmat[-1, -1] = n - 1
  # Equations differ in scale by orders of magnitude; normalise rows so each counts alike.
  scale = np.abs(kmat).sum(1)
  sigma2 = optimize.nnls(kmat / scale[:, None], q / scale)[0]
  comp = {name: 0.0 for name in GROUPINGS}
  comp.update(zip(names, sigma2[:-1]))
  part = {name: comp[name] * (sizes[name] ** 2).sum() / n**2 for name in GROUPINGS}
  part["resid"] = sigma2[-1] / n
  # Satterthwaite df of each part, as in the balanced ANOVA, where Var(x̄) = (MS_seed + MS_item −
  # MS_seed×item)/N: the seed-level part rests on the base seeds' means (S − 1 df; F − 1 within
  # a single base seed), since the fine-tuning seeds' own mean square does not enter it (giving
  # their part S(F − 1) df of its own under-covers where base seeds vary); the item-level part
  # on the clusters' (or items') means; the residual-level part on the base seed × item
  # interaction ((S − 1)(I − 1)) where replicates share base seeds, else on the cells left after
  # rows and columns.
  cols = n_item if use["item"] else (n_clus if use["cluster"] else 1)
  rows_df = n_unit - 1 if use["seed"] or use["finetune"] else 0
  resid_df = (
    n_si - 1 - (n_seed - 1 if use["seed"] else 0) - (cols - 1)
    if use["seed_item"]
    else n - 1 - rows_df - (cols - 1)
  )
  dfs = np.array(
    [
      n_seed - 1 if n_seed >= 2 else n_unit - 1,
      (n_clus if use["cluster"] else n_item) - 1,
      resid_df,
    ],
    dtype=float,
  )
  return dict(
    comp,
    resid=sigma2[-1],
    n=n,
    n_seeds=n_seed,
    n_units=n_unit,
    n_finetune=int(np.bincount(sd).max()),
    n_clusters=n_clus,
    n_items=n_item,
    contributions=part,
    parts=np.array(
      [
        part["seed"] + part["finetune"],
        part["cluster"] + part["item"],
        part["seed_item"] + part["resid"],
      ]
    ),
    dfs=dfs,
  )


def satterthwaite(parts, dfs):
  """(variance, df) of a sum of independent variance parts with the given df; with a
  crossed_components result c, satterthwaite(c['parts'], c['dfs']) is crossed_variance's answer."""
  var = parts.sum()
  keep = parts > 0
  if var <= 0 or not keep.any():
    return max(var, 0.0), np.inf
  return var, var**2 / (parts[keep] ** 2 / np.maximum(dfs[keep], 1.0)).sum()


def crossed_variance(x, clusters, seeds=None):
  """Variance of the mean of a (fine-tuning seeds within seeds) × items array
  (crossed_components; `seeds` labels each row's base seed), and its Satterthwaite df.

    Var(x̄) = Σ_H σ²_H Σ_levels n²/N² + σ²_resid/N over the groupings H (crossed_components),
  i.e. σ²_seed/S + σ²_finetune/(S·F) + σ²_cluster/C + σ²_item/I + σ²_seed_item/(S·I) +
  σ²_resid/(S·F·I) when balanced (S base seeds with F fine-tuning seeds each). Satterthwaite df
  treat the seed-level part (S − 1 df), the cluster-and-item part (C − 1) and the residual part
  ((S − 1)(I − 1) when balanced) as independent. Returns (variance, df); NaN variance with < 2
  cells.
  """
  comp = crossed_components(x, clusters, seeds)
  if comp is None:
    return np.nan, np.nan
  return satterthwaite(comp["parts"], comp["dfs"])


def projected_variance(comp, n_seeds, item_factor=1.0, n_finetune=1):
  """(variance, df) of the same mean in a balanced design with `n_seeds` base seeds of
  `n_finetune` fine-tuning seeds each and `item_factor` × as many items and clusters, from
  measured components (crossed_components): what a larger study would give if its variance
  components were these. Measured with one fine-tuning seed per base seed, the fine-tuning
  variance is inside the base-seed one, so more fine-tuning seeds shrink only the residual."""
  s, f = n_seeds, n_finetune
  c = comp["n_clusters"] * item_factor
  i = comp["n_items"] * item_factor
  parts = np.array(
    [
      comp["seed"] / s + comp["finetune"] / (s * f),
      comp["cluster"] / c + comp["item"] / i,
      comp["seed_item"] / (s * i) + comp["resid"] / (s * f * i),
    ]
  )
  dfs = np.array([s - 1, c - 1, (s - 1) * (i - 1)], dtype=float)
  return satterthwaite(parts, dfs)


def _nested_weights(w, seed_of, rng):
  """(B, rows) replicate weights from (B, base seeds) counts: each draw of a base seed draws its
  fine-tuning seeds anew, as many as it has, with replacement (w draws of n seeds are one
  multinomial of w·n). A base seed of one row keeps its count, and takes no random numbers."""
  out = w[:, seed_of]
  for s in np.flatnonzero(np.bincount(seed_of) > 1):
    rows = np.flatnonzero(seed_of == s)
    out[:, rows] = rng.multinomial(
      w[:, s].astype(int) * rows.size, np.full(rows.size, 1.0 / rows.size)
    )
  return out


def replicate_matrix(rows, column, key):
  """Replicates × items of `column`: rows indexed by (seed, finetune_seed) (0 where the frame has
  no fine-tuning seeds), columns by the item `key`; NaN where a replicate lacks an item."""
  rows = rows.assign(finetune_seed=rows.get("finetune_seed", 0))
  return rows.pivot_table(
    index=["seed", "finetune_seed"], columns=key, values=column, aggfunc="mean", dropna=False
  )


def crossed_draws(values, clusters, n_boot, rng, calibrate=True, seeds=None):
  """(estimate (K,), draws (K, B), variance (K,), df (K,)); see crossed_bootstrap."""
  values = np.asarray(values, dtype=float)
  values = values[None] if values.ndim == 2 else values
  n_k, n_s, n_i = values.shape
  cl = pd.factorize(np.arange(n_i) if clusters is None else np.asarray(clusters))[0]
  n_c = cl.max() + 1 if n_i else 0
  mask = np.isfinite(values)
  h = np.zeros((n_i, max(n_c, 1)))
  h[np.arange(n_i), cl] = 1.0
  tot = np.where(mask, values, 0.0) @ h  # (K, S, C) sums per seed and cluster
  cnt = mask.astype(float) @ h
  with np.errstate(invalid="ignore", divide="ignore"):
    est = tot.sum((1, 2)) / cnt.sum((1, 2))
  var, df = np.full(n_k, np.nan), np.full(n_k, np.nan)
  draws = np.full((n_k, n_boot), np.nan)
  if n_s == 0 or n_i == 0:
    return est, draws, var, df
  # Pigeonhole resampling: one multiset of base seeds (then of fine-tuning seeds within each
  # drawn one) and one of clusters per replicate, the clusters shared by every seed, as the
  # items are.
  seed_of = pd.factorize(np.arange(n_s) if seeds is None else np.asarray(seeds))[0]
  n_b = seed_of.max() + 1
  w = rng.multinomial(n_b, np.full(n_b, 1.0 / n_b), size=n_boot).astype(float)
  v = rng.multinomial(n_c, np.full(n_c, 1.0 / n_c), size=n_boot).astype(float)
  w = _nested_weights(w, seed_of, rng)
  for k in range(n_k):
    obs = values[k][mask[k]]
    if obs.size == 0:
      continue
    if not obs.any():
      est[k] = 0.0  # no paired item moved: nothing to estimate a spread from
      continue
    with np.errstate(invalid="ignore", divide="ignore"):
      raw = ((w @ tot[k]) * v).sum(1) / ((w @ cnt[k]) * v).sum(1)
    if not calibrate:
      draws[k] = raw
      continue
    var[k], df[k] = crossed_variance(values[k], cl, seed_of)
    if not np.isfinite(var[k]):
      continue
    # The draws keep the bootstrap's order (so statistics sharing replicates stay jointly
    # drawn, e.g. for a ratio) and take t(df) quantiles scaled by the moment variance as
    # values: rank scores, ties broken at random so a lump of equal draws (an item that moved
    # once) cannot pull an interval off the estimate.
    ok = np.isfinite(raw)
    order = np.lexsort((rng.random(ok.sum()), raw[ok]))
    score = np.empty(ok.sum())
    score[order] = (np.arange(ok.sum()) + 0.5) / ok.sum()
    t = special.stdtrit(df[k], score) if np.isfinite(df[k]) else special.ndtri(score)
    draws[k, ok] = est[k] + np.sqrt(var[k]) * t
  return est, draws, var, df


def crossed_bootstrap(values, clusters=None, n_boot=1000, rng=None, calibrate=True, seeds=None):
  """Crossed bootstrap of a seeds × items mean; returns (estimate (K,), draws (K, B)).

  `values` is (K, R, I) or (R, I): K statistics sharing trained replicates (rows) and items
  (NaN = missing). `seeds` (R,) labels the base seed each row was fine-tuned from (None: every
  row a base seed of its own); `clusters` (I,) labels items about one entity (None: each item
  its own). Each replicate draws S base seeds with replacement, then, for each one drawn, its
  fine-tuning seeds with replacement, and C clusters with replacement, the same clusters for
  every seed (Owen 2007, the pigeonhole bootstrap, nested on the seed side); the statistic is
  the mean over the drawn (row, item) cells.
  The plain pigeonhole variance counts the residual up to ~3× and the seed part (S−1)/S, so with
  `calibrate` each statistic's draws become t(df) quantiles about the estimate, scaled by the
  method-of-moments variance (`crossed_variance`, Satterthwaite df), in the order of the
  bootstrap replicates: the moments give each marginal, the bootstrap the joint draws of the K
  statistics (what a ratio of two of them needs). A percentile interval of one statistic is then
  the t interval estimate ± t(df)·se.
  A statistic whose observed values are all exactly 0 is not estimable: estimate 0, NaN draws.
  No clipping: draws may leave the range of the data when the variance says they should.
  """
  est, draws, _, _ = crossed_draws(
    values, clusters, n_boot, np.random.default_rng(rng), calibrate, seeds
  )
  return est, draws


def t_p_value(est, var, df):
  """Two-sided p-value of est / sqrt(var) under t(df): exact resolution, no bootstrap floor."""
  if not np.isfinite(var) or not np.isfinite(est):
    return np.nan
  if var <= 0:
    return 0.0 if est != 0 else 1.0
  z = -abs(est) / np.sqrt(var)
  return float(2 * (special.stdtr(df, z) if np.isfinite(df) else special.ndtr(z)))


def summarize_draws(est, draws, alpha=0.05):
  """Percentile CI and centred two-sided bootstrap p-value for each statistic (NaN if no draws)."""
  draws = np.atleast_2d(np.asarray(draws, dtype=float))
  est = np.atleast_1d(np.asarray(est, dtype=float))
  n = np.isfinite(draws).sum(-1)
  lo, hi = np.full(len(est), np.nan), np.full(len(est), np.nan)
  ok = n > 0
  if ok.any():
    lo[ok], hi[ok] = np.nanpercentile(draws[ok], [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=-1)
  with np.errstate(invalid="ignore"):
    extreme = (np.abs(draws - est[:, None]) >= np.abs(est[:, None])).sum(-1)
  p = np.where(ok, (1 + extreme) / (n + 1), np.nan)
  return lo, hi, p
