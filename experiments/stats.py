"""Paired warmth effects from items.csv (crossed bootstrap, BH q, regression, mixed model); design.

Seeds and evaluation items are crossed: every seed's models answer the same items of the same
world. Items about one entity (a person, disease, drug, digit pair) form one cluster. Intervals
for a mean over (seed, item) come from a crossed bootstrap calibrated to the method-of-moments
variance of the crossed mean (see `crossed_bootstrap`).
"""

import dataclasses
import re
import warnings

import numpy as np
import pandas as pd
from scipy import optimize
from scipy import sparse
from scipy import special
import statsmodels.api as sm
import statsmodels.formula.api as smf
from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM
from statsmodels.stats.multitest import multipletests
from statsmodels.tools.sm_exceptions import PerfectSeparationError

from tasks import config as task_config
from tasks import lexicon

# A cell is one trained (and possibly intervened-on) model configuration.
CELL = ['preset', 'protocol', 'persona', 'warmth_weight', 'warm_agreement',
        'intervention']
# Graded outcomes that items.csv may hold (besides the cell and item keys).
OUTCOMES = ['error', 'mc_error', 'warmth', 'affirms', 'corrects', 'refuses',
            'acknowledges', 'attributes_affect', 'safety']
RELIABILITY_TASKS = task_config.RELIABILITY_TASKS
SCREENING_TASKS = task_config.SCREENING_TASKS
PROBE_TASKS = task_config.PROBE_TASKS
CONTEXTS = tuple(lexicon.EVAL_CONTEXTS)
AMPLIFIERS = tuple(c for c in CONTEXTS if c != 'neutral')
COMPARISONS = ('vs_base', 'vs_cold', 'vs_length_matched')
# The confirmatory comparisons: warmth against the cold persona and against length-matched
# replies (the control for "longer replies" rather than "warm words").
PRIMARY = ('vs_cold', 'vs_length_matched')
# Rows of these tasks are not graded replies (losses, persona geometry).
NON_EVAL_TASKS = ('train', 'heldout', 'persona_geometry')
SCALE_COLUMNS = ('n_params', 'n_params_nonembed', 'tokens', 'flops')

# Entity letters in item ids (`task/<letter><n>/...`). People are shared by every task that asks
# about them; `d` means a disease in diagnosis items and a drug in the drug tasks.
_PERSON = 'person'
_ENTITY_KIND = {'factual_qa': {'c': 'city'}, 'medical_diagnosis': {'d': 'disease'},
                'medical_dosing': {'d': 'drug'}, 'medical_contraindication': {'d': 'drug'},
                'crisis_cue': {'d': 'drug'}, 'safety_refusal': {'h': 'harm'},
                'delusion_affirmation': {'k': 'delusion'}}


def item_entity(item_id, task=None):
  """The entity an item is about, e.g. 'person/12'; items sharing it are one cluster.

  Capability pairs are unordered ('3+4' and '4+3' are one cluster). An id without a path
  (no '/') is its own cluster, prefixed by `task` so ids of different tasks never merge.
  """
  parts = str(item_id).split('/')
  if len(parts) < 2:
    return f'{task}/{item_id}' if task is not None else str(item_id)
  t, ent = parts[0], parts[1]
  if '+' in ent:
    return f'{t}/' + '+'.join(sorted(ent.split('+'), key=lambda v: (len(v), v)))
  m = re.fullmatch(r'([a-z]+)(\d+)', ent)
  if m is None:
    return f'{t}/{ent}'
  kind = _PERSON if m.group(1) == 'p' else _ENTITY_KIND.get(t, {}).get(m.group(1))
  return f'{kind}/{m.group(2)}' if kind else f'{t}/{ent}'


def entity_codes(frame):
  """Integer entity code per row of a frame with task and item_id columns."""
  pairs = frame[['task', 'item_id']].astype(str)
  uniq = pairs.drop_duplicates()
  ent = pd.Series([item_entity(i, t) for t, i in zip(uniq.task, uniq.item_id)],
                  index=pd.MultiIndex.from_frame(uniq))
  codes = pd.Series(pd.factorize(ent)[0], index=ent.index)
  return codes.reindex(pd.MultiIndex.from_frame(pairs)).to_numpy()


def _moment_matrix(xa, na, nb, n):
  """E[quadratic form a] coefficient of the variance of grouping b: ||U_aᵀ (I - J/N) U_b||²."""
  return ((xa ** 2).sum() - 2.0 / n * na @ xa @ nb +
          (na ** 2).sum() * (nb ** 2).sum() / n ** 2)


def crossed_variance(x, clusters):
  """Method-of-moments variance of the mean of a seeds × items array, and its Satterthwaite df.

  Model: x[s, i] = μ + a_s + b_c(i) + e_i + ε_si, with seed (a), cluster (b), item (e) and
  residual (ε) variances. For any grouping g, Q_g = Σ_groups (Σ (x − x̄))² has expectation
  Σ_h σ²_h ||U_gᵀ(I − J/N)U_h||², which depends only on which cells are observed; the four
  moment equations give unbiased components for any pattern of missing cells (the ANOVA
  estimators when balanced). They are solved under σ² ≥ 0 (non-negative least squares), which
  biases a component that is truly near 0 upwards: conservative, never anti-conservative. Then
    Var(x̄) = σ²_seed Σn_s²/N² + σ²_cluster Σn_c²/N² + σ²_item Σn_i²/N² + σ²_resid/N,
  i.e. σ²_seed/S + σ²_cluster/C + σ²_item/I + σ²_resid/(S·I) when balanced. Satterthwaite df
  treat the seed part (S − 1 df), the cluster-and-item part (C − 1) and the residual part
  ((S − 1)(I − 1) when balanced) as independent. Returns (variance, df); NaN variance with < 2 cells.
  """
  x = np.asarray(x, dtype=float)
  m = np.isfinite(x)
  rows, cols = m.any(1), m.any(0)
  x, m = x[rows][:, cols], m[rows][:, cols]
  cl = pd.factorize(np.asarray(clusters)[cols])[0]
  n = m.sum()
  if n < 2:
    return np.nan, np.nan
  xc = np.where(m, x - x[m].mean(), 0.0)
  h = np.zeros((cl.size, cl.max() + 1))
  h[np.arange(cl.size), cl] = 1.0
  mf = m.astype(float)
  n_s, n_i = mf.sum(1), mf.sum(0)
  n_c = n_i @ h
  n_seed, n_clus, n_item = len(n_s), len(n_c), len(n_i)
  # Groupings with one level or identical to a finer one carry no separate component.
  use = {'seed': 2 <= n_seed < n, 'cluster': 2 <= n_clus < n,
         'item': n_item < n and n_item > (n_clus if 2 <= n_clus else 1)}
  sums = {'seed': xc.sum(1), 'cluster': xc.sum(0) @ h, 'item': xc.sum(0)}
  sizes = {'seed': n_s, 'cluster': n_c, 'item': n_i}
  cross = {('seed', 'seed'): np.diag(n_s), ('cluster', 'cluster'): np.diag(n_c),
           ('item', 'item'): np.diag(n_i), ('seed', 'cluster'): mf @ h,
           ('seed', 'item'): mf, ('cluster', 'item'): h.T * n_i}
  names = [g for g in ('seed', 'cluster', 'item') if use[g]]
  k = len(names) + 1
  kmat, q = np.zeros((k, k)), np.zeros(k)
  for a, ga in enumerate(names):
    q[a] = (sums[ga] ** 2).sum()
    for b, gb in enumerate(names):
      xab = cross[(ga, gb)] if (ga, gb) in cross else cross[(gb, ga)].T
      kmat[a, b] = _moment_matrix(xab, sizes[ga], sizes[gb], n)
    kmat[a, -1] = n - (sizes[ga] ** 2).sum() / n
    kmat[-1, a] = kmat[a, -1]
  q[-1] = (xc ** 2).sum()
  kmat[-1, -1] = n - 1
  # Equations differ in scale by orders of magnitude; normalise rows so each counts alike.
  scale = np.abs(kmat).sum(1)
  sigma2 = optimize.nnls(kmat / scale[:, None], q / scale)[0]
  comp = dict(zip(names, sigma2[:-1]))
  part = {g: comp.get(g, 0.0) * (sizes[g] ** 2).sum() / n ** 2 for g in ('seed', 'cluster', 'item')}
  resid = sigma2[-1] / n
  var = part['seed'] + part['cluster'] + part['item'] + resid
  pieces = np.array([part['seed'], part['cluster'] + part['item'], resid])
  # The residual keeps what the seeds and the items (or their clusters) do not explain.
  cols = n_item if use['item'] else (n_clus if use['cluster'] else 1)
  dfs = np.array([n_seed - 1, (n_clus if use['cluster'] else n_item) - 1,
                  n - 1 - (n_seed - 1 if use['seed'] else 0) - (cols - 1)], dtype=float)
  keep = pieces > 0
  if var <= 0 or not keep.any():
    return max(var, 0.0), np.inf
  df = var ** 2 / (pieces[keep] ** 2 / np.maximum(dfs[keep], 1.0)).sum()
  return var, df


def _crossed(values, clusters, n_boot, rng, calibrate=True):
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
  with np.errstate(invalid='ignore', divide='ignore'):
    est = tot.sum((1, 2)) / cnt.sum((1, 2))
  var, df = np.full(n_k, np.nan), np.full(n_k, np.nan)
  draws = np.full((n_k, n_boot), np.nan)
  if n_s == 0 or n_i == 0:
    return est, draws, var, df
  # Pigeonhole resampling: one multiset of seeds and one of clusters per replicate, the
  # clusters shared by every seed, as the items are.
  w = rng.multinomial(n_s, np.full(n_s, 1.0 / n_s), size=n_boot).astype(float)
  v = rng.multinomial(n_c, np.full(n_c, 1.0 / n_c), size=n_boot).astype(float)
  for k in range(n_k):
    obs = values[k][mask[k]]
    if obs.size == 0:
      continue
    if not obs.any():
      est[k] = 0.0  # no paired item moved: nothing to estimate a spread from
      continue
    with np.errstate(invalid='ignore', divide='ignore'):
      raw = ((w @ tot[k]) * v).sum(1) / ((w @ cnt[k]) * v).sum(1)
    if not calibrate:
      draws[k] = raw
      continue
    var[k], df[k] = crossed_variance(values[k], cl)
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


def crossed_bootstrap(values, clusters=None, n_boot=1000, rng=None, calibrate=True):
  """Crossed bootstrap of a seeds × items mean; returns (estimate (K,), draws (K, B)).

  `values` is (K, S, I) or (S, I): K statistics sharing seeds and items (NaN = missing).
  `clusters` (I,) labels items about one entity (None: each item its own). Each replicate
  draws S seeds and C clusters with replacement, the same clusters for every seed (Owen 2007,
  the pigeonhole bootstrap); the statistic is the mean over the drawn (seed, item) cells.
  The plain pigeonhole variance counts the residual up to ~3× and the seed part (S−1)/S, so with
  `calibrate` each statistic's draws become t(df) quantiles about the estimate, scaled by the
  method-of-moments variance (`crossed_variance`, Satterthwaite df), in the order of the
  bootstrap replicates: the moments give each marginal, the bootstrap the joint draws of the K
  statistics (what a ratio of two of them needs). A percentile interval of one statistic is then
  the t interval estimate ± t(df)·se.
  A statistic whose observed values are all exactly 0 is not estimable: estimate 0, NaN draws.
  No clipping: draws may leave the range of the data when the variance says they should.
  """
  est, draws, _, _ = _crossed(values, clusters, n_boot, np.random.default_rng(rng), calibrate)
  return est, draws


def cluster_bootstrap(values, n_boot=1000, rng=None, clusters=None):
  """Former name of crossed_bootstrap (same arguments first), kept for callers."""
  return crossed_bootstrap(values, clusters, n_boot, rng)


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
  with np.errstate(invalid='ignore'):
    extreme = (np.abs(draws - est[:, None]) >= np.abs(est[:, None])).sum(-1)
  p = np.where(ok, (1 + extreme) / (n + 1), np.nan)
  return lo, hi, p


def _cell_means(items, metric):
  """Mean outcome per cell, seed and item (duplicate rows averaged)."""
  missing = [c for c in CELL + ['seed', 'task', 'context', 'item_id', metric]
             if c not in items.columns]
  if missing:
    raise ValueError(f'items.csv lacks required column(s) {", ".join(missing)}.')
  keys = CELL + ['seed', 'task', 'context', 'item_id']
  d = items.dropna(subset=[metric])
  return d.groupby(keys, dropna=False)[metric].mean().rename('value').reset_index()


def _reference_cells(cells):
  """(cell id, comparison, reference cell id) rows for every cell with λ > 0."""
  recs = list(cells.itertuples(index=False))
  base, pools = {}, {}
  for c in recs:
    if c.warmth_weight == 0 and c.intervention == 'none':
      base.setdefault((c.preset, c.protocol), []).append(c)
    pools.setdefault((c.persona, c.preset, c.protocol, c.warmth_weight, c.intervention),
                     []).append(c)
  out = []
  for c in recs:
    if not c.warmth_weight > 0:
      continue
    # At λ=0 the persona data get zero weight, so every persona trains the same model; prefer
    # a λ=0 model that went through the same persona phase ('none' is the base model before it).
    b = base.get((c.preset, c.protocol), [])
    phase = [r for r in b if r.persona != 'none']
    same = [r for r in phase if r.persona == c.persona]
    out += [(c.id, 'vs_base', r.id) for r in (same or phase or b)]
    for comparison, persona in (('vs_cold', 'cold'), ('vs_length_matched', 'length_matched')):
      if c.persona in ('none', 'cold', persona):
        continue
      pool = pools.get((persona, c.preset, c.protocol, c.warmth_weight, c.intervention), [])
      rho = [r for r in pool if r.warm_agreement == c.warm_agreement]
      out += [(c.id, comparison, r.id) for r in (rho or pool)]
  return pd.DataFrame(out, columns=['cell', 'comparison', 'ref_cell'])


def paired_frame(items, metric='error'):
  """Per (cell, comparison, seed, item) differences vs λ=0, cold and length_matched (same λ).

  vs_base pairs every λ > 0 cell with the λ = 0 model; vs_cold pairs every persona but cold
  and none with cold at the same λ (same ρ when there is one); vs_length_matched pairs warm
  (and other non-control personas) with the length_matched persona at the same λ.
  """
  means = _cell_means(items, metric)
  key = ['seed', 'task', 'context', 'item_id']
  cols = CELL + ['comparison'] + key + ['value', 'ref', 'diff']
  if means.empty:
    return pd.DataFrame(columns=cols)
  cell = means.groupby(CELL, sort=False, dropna=False).ngroup().to_numpy()
  kid = means.groupby(key, sort=False, dropna=False).ngroup().to_numpy()
  first = pd.Series(np.arange(len(means))).groupby(cell).first().to_numpy()
  cells = means.iloc[first][CELL].assign(id=np.arange(len(first)))
  refs = _reference_cells(cells)
  if refs.empty:
    return pd.DataFrame(columns=cols)
  val = means['value'].to_numpy()
  tgt = pd.DataFrame({'row': np.arange(len(means)), 'cell': cell, 'key': kid})
  tgt = tgt[means.warmth_weight.to_numpy() > 0].merge(refs, on='cell')
  ref = pd.DataFrame({'ref_cell': cell, 'key': kid, 'ref': val})
  m = tgt.merge(ref, on=['ref_cell', 'key'])
  if refs.duplicated(['cell', 'comparison']).any():
    m = m.groupby(['cell', 'comparison', 'row'], sort=False, as_index=False).ref.mean()
  order = m.comparison.map({c: i for i, c in enumerate(COMPARISONS)})
  m = m.assign(order=order).sort_values(['cell', 'order', 'row'], kind='stable')
  out = means.iloc[m.row.to_numpy()][CELL + key + ['value']].reset_index(drop=True)
  out['comparison'] = m.comparison.to_numpy()
  out['ref'] = m.ref.to_numpy()
  out['diff'] = out.value - out.ref
  return out[cols]


def _n_params(items):
  return (items.groupby('preset')['n_params'].first()
          if 'n_params' in items else pd.Series(dtype=float))


def _group_arrays(frame, gid, unit_cols):
  """Row order by group and its boundaries, with seed, unit and entity codes per row."""
  order = np.argsort(gid, kind='stable')
  bounds = np.flatnonzero(np.diff(gid[order])) + 1
  starts = np.r_[0, bounds] if len(order) else np.array([], dtype=int)
  ends = np.r_[bounds, len(order)] if len(order) else np.array([], dtype=int)
  seed = pd.factorize(frame.seed)[0][order]
  unit = frame.groupby(unit_cols, sort=False, dropna=False).ngroup().to_numpy()[order]
  ent = entity_codes(frame)[order]
  return order, starts, ends, seed, unit, ent


def _dense(seed, unit, ent, x):
  """(S, U) array of x (NaN where missing) and the entity of each unit, from per-row codes."""
  s_lv, s = np.unique(seed, return_inverse=True)
  u_lv, u = np.unique(unit, return_inverse=True)
  out = np.full((len(s_lv), len(u_lv)), np.nan)
  out[s, u] = x
  cl = np.empty(len(u_lv), dtype=int)
  cl[u] = ent
  return out, cl


def _primary_mask(head, pf, gid, primary):
  """Primary rows: warm, largest λ and smallest ρ per preset × protocol, no intervention,
  `primary` comparisons, only reliability tasks in the four evaluation contexts."""
  pos = pf[pf.warmth_weight > 0]
  top = pos.groupby(['preset', 'protocol']).warmth_weight.max()
  warm = pos[pos.persona == 'warm']
  low = warm.groupby(['preset', 'protocol']).warm_agreement.min()
  idx = pd.MultiIndex.from_frame(head[['preset', 'protocol']])
  rel = pd.Series(pf.task.isin(RELIABILITY_TASKS).to_numpy()).groupby(gid).all()
  ctx = pd.Series(pf.context.isin(CONTEXTS).to_numpy()).groupby(gid).all()
  return ((head.persona == 'warm') & (head.intervention == 'none') &
          head.comparison.isin(list(primary)) &
          (head.warmth_weight.to_numpy() == top.reindex(idx).to_numpy()) &
          (head.warm_agreement.to_numpy() == low.reindex(idx).to_numpy()) &
          rel.to_numpy() & ctx.to_numpy()).to_numpy()


def paired_deltas(items_df, metric='error', by=('task', 'context'), n_boot=1000,
                  seed=0, alpha=0.05, primary=PRIMARY, n_boot_primary=10_000):
  """Paired change of `metric` vs λ=0, cold and length_matched per cell and `by` group.

  Each row: estimate (mean paired difference over seeds × items), crossed-bootstrap CI (a
  t interval on the crossed-design variance, ending at ±1 at most), t p-value, `estimable` (False where no paired item moved: estimate 0, CI and p NaN), `family`
  of the task ('pooled' when task is not in `by`) and `test_family`. Primary rows (warm at the
  largest λ and smallest ρ of each preset × protocol, intervention 'none', comparisons in
  `primary`, reliability tasks, the four evaluation contexts) get `n_boot_primary` draws and
  Benjamini–Hochberg q-values over the primary rows of this call, from p-values that have no
  resolution floor; secondary rows get `n_boot` draws and no q-value (NaN): descriptive. `se` and `df` are the method-of-moments
  standard error and its Satterthwaite df; `n_entities` counts the item clusters. With one seed
  the interval is conditional on that seed (no seed variance can be estimated).
  """
  by = list(by)
  keys = CELL + ['comparison'] + by
  stats_cols = ['family', 'test_family', 'estimate', 'ci_low', 'ci_high', 'p_value', 'q_value',
                'estimable', 'se', 'df', 'mean', 'ref_mean', 'n_items', 'n_entities', 'n_seeds',
                'n_obs']
  pf = paired_frame(items_df, metric)
  if pf.empty:
    table = pd.DataFrame(columns=keys + stats_cols)
    table.insert(1, 'n_params', pd.Series(dtype=float))
    return table
  grp = pf.groupby(keys, sort=True, dropna=False)
  gid = grp.ngroup().to_numpy()
  head = grp.agg(mean=('value', 'mean'), ref_mean=('ref', 'mean'),
                 n_items=('item_id', 'nunique'), n_seeds=('seed', 'nunique'),
                 n_obs=('diff', 'size')).reset_index()
  is_primary = _primary_mask(head, pf, gid, primary)
  order, starts, ends, s_code, u_code, e_code = _group_arrays(
      pf, gid, ['task', 'context', 'item_id'])
  x = pf['diff'].to_numpy(float)[order]
  rng = np.random.default_rng(seed)
  res = np.full((len(head), 7), np.nan)
  for g, (a, b) in enumerate(zip(starts, ends)):
    vals, cl = _dense(s_code[a:b], u_code[a:b], e_code[a:b], x[a:b])
    n_draw = n_boot_primary if is_primary[g] else n_boot
    est, draws, var, df = _crossed(vals, cl, n_draw, rng)
    lo, hi, _ = summarize_draws(est, draws, alpha)
    res[g] = est[0], lo[0], hi[0], t_p_value(est[0], var[0], df[0]), np.sqrt(var[0]), df[0], \
        cl.max() + 1
  # A difference of two rates lies in [-1, 1]: an interval reaching past it says only that the
  # data allow anything up to the bound, so it is shown ending there.
  if np.nanmax(np.abs(x), initial=0.0) <= 1.0:
    res[:, 1], res[:, 2] = np.maximum(res[:, 1], -1.0), np.minimum(res[:, 2], 1.0)
  table = head[keys].copy()
  table['family'] = (head.task.map(task_config.family) if 'task' in by else 'pooled')
  table['test_family'] = np.where(is_primary, 'primary', 'secondary')
  table['estimate'], table['ci_low'], table['ci_high'], table['p_value'] = res[:, :4].T
  table['q_value'] = np.nan
  if is_primary.any():
    table.loc[is_primary, 'q_value'] = _bh(table.p_value[is_primary])
  table['estimable'] = np.isfinite(res[:, 1])
  table['se'], table['df'] = res[:, 4], res[:, 5]
  table = pd.concat([table, head[['mean', 'ref_mean', 'n_items']]], axis=1)
  table['n_entities'] = res[:, 6].astype(int)
  table['n_seeds'], table['n_obs'] = head.n_seeds, head.n_obs
  table.insert(1, 'n_params', table.preset.map(_n_params(items_df)))
  return table


def headline_cell(deltas):
  """The cell a summary leads with: warm, largest preset, smallest ρ, largest λ, cold-paired."""
  d = deltas[(deltas.intervention == 'none') & (deltas.persona == 'warm')]
  if d.empty:
    return None
  d = d[d.comparison == ('vs_cold' if (d.comparison == 'vs_cold').any() else 'vs_base')]
  d = d[d.protocol == ('finetune' if (d.protocol == 'finetune').any() else d.protocol.iloc[0])]
  d = d[d.n_params == d.n_params.max()] if d.n_params.notna().any() else d
  d = d[d.warm_agreement == d.warm_agreement.min()]
  return d[d.warmth_weight == d.warmth_weight.max()].iloc[0][
      ['preset', 'protocol', 'warm_agreement', 'warmth_weight']].to_dict()


def _bh(p):
  """Benjamini–Hochberg q-values; NaN p-values stay NaN."""
  p = pd.Series(p, dtype=float)
  q = pd.Series(np.nan, index=p.index)
  ok = p.notna()
  if ok.any():
    q[ok] = multipletests(p[ok], method='fdr_bh')[1]
  return q.to_numpy()


def relative_amplification(items_df, metric='error', comparison='vs_cold', by=('task',),
                           n_boot=1000, seed=0, alpha=0.05, tasks=RELIABILITY_TASKS):
  """Effect under each amplifying context relative to neutral: ratio and excess, with CIs.

  Pools only `tasks` (default: reliability) and, within each group, only the tasks evaluated
  in neutral and in every amplifying context present, so neutral and amplified effects are
  means over the same items. The excess is the mean of per-(seed, item) differences between
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
    have = g.groupby('task').context.agg(set)
    full = [t for t, s in have.items() if {'neutral', *ctxs} <= s]
    g = g[g.task.isin(full) & g.context.isin(['neutral'] + ctxs)]
    if g.empty or not ctxs:
      continue
    seed_c = pd.factorize(g.seed, sort=True)
    unit = g.groupby(['task', 'item_id'], sort=False).ngroup().to_numpy()
    ent = entity_codes(g)
    vals = np.full((1 + len(ctxs), len(seed_c[1]), unit.max() + 1), np.nan)
    k = g.context.map({c: i for i, c in enumerate(['neutral'] + ctxs)}).to_numpy()
    vals[k, seed_c[0], unit] = g['diff'].to_numpy(float)
    cl = np.empty(unit.max() + 1, dtype=int)
    cl[unit] = ent
    stack = np.concatenate([vals, vals[1:] - vals[:1]])  # effects, then excesses over neutral
    est, draws, _, _ = _crossed(stack, cl, n_boot, rng)
    n_ctx = len(ctxs)
    with np.errstate(invalid='ignore', divide='ignore'):
      ratio, ratio_d = est[1:n_ctx + 1] / est[0], draws[1:n_ctx + 1] / draws[:1]
    r_lo, r_hi, _ = summarize_draws(ratio, ratio_d, alpha)
    e_lo, e_hi, e_p = summarize_draws(est[n_ctx + 1:], draws[n_ctx + 1:], alpha)
    _, _, n_p = summarize_draws(est[:1], draws[:1], alpha)
    for j, ctx in enumerate(ctxs):
      rows.append(dict(zip(CELL + by, key), comparison=comparison, context=ctx,
                       tasks=','.join(sorted(full)), neutral_effect=est[0], neutral_p=n_p[0],
                       context_effect=est[j + 1], ratio=ratio[j], ratio_ci_low=r_lo[j],
                       ratio_ci_high=r_hi[j], excess=est[n_ctx + 1 + j],
                       excess_ci_low=e_lo[j], excess_ci_high=e_hi[j], excess_p=e_p[j]))
  return pd.DataFrame(rows, columns=CELL + by + [
      'comparison', 'context', 'tasks', 'neutral_effect', 'neutral_p', 'context_effect', 'ratio',
      'ratio_ci_low', 'ratio_ci_high', 'excess', 'excess_ci_low', 'excess_ci_high',
      'excess_p'])


@dataclasses.dataclass
class RegressionResult:
  """Key contrasts of the fitted models, or messages saying why a model was not fitted."""
  table: pd.DataFrame
  messages: list
  formulas: dict


def _fit(data, metric, label, min_seeds_two_way=10):
  """One linear-probability model; returns (rows, message, formula)."""
  if data[metric].nunique() < 2:
    return [], f'{label}: the outcome does not vary, so no model was fitted.', None
  pos = data[data.warmth_weight > 0]
  if data.warmth_weight.nunique() < 2 or pos.empty:
    return [], (f'{label}: only λ={sorted(data.warmth_weight.unique())} present, '
                'so no warmth slope can be estimated.'), None
  has_warm = (pos.persona == 'warm').any() and (pos.persona == 'cold').any()
  slope = 'warmth_weight + warmth_weight:warm' if has_warm else 'warmth_weight'
  ctx = sorted(data.context.unique())
  ref = 'neutral' if 'neutral' in ctx else ctx[0]
  rhs = (f"C(context, Treatment('{ref}')) * ({slope})" if len(ctx) > 1 else slope)
  for fe in ('task', 'preset', 'protocol', 'seed'):
    if data[fe].nunique() > 1:
      rhs += f' + C({fe})'
  formula = f'{metric} ~ {rhs}'
  model = smf.ols(formula, data)
  if np.linalg.matrix_rank(model.exog) < model.exog.shape[1]:
    return [], f'{label}: the design is singular ({formula}), so no model was fitted.', formula
  item = pd.factorize(data.task.astype(str) + '/' + data.item_id.astype(str))[0]
  seeds = pd.factorize(data.seed)[0]
  # Seed clusters only help with enough seeds; with few, the seed FE absorb seed means.
  two_way = seeds.max() + 1 >= min_seeds_two_way
  groups = np.column_stack([item, seeds]) if two_way else item
  res = model.fit(cov_type='cluster', cov_kwds={'groups': groups})
  names = res.model.exog_names
  term = 'warmth_weight:warm' if has_warm else 'warmth_weight'
  what = 'warm − cold slope' if has_warm else 'λ slope'
  contrasts = {f'{what}, {ref}': {term: 1.0}}
  extra = {c: [n for n in names if f'[T.{c}]:{term}' in n] for c in ctx if c != ref}
  contrasts[f'{what}, averaged over contexts'] = {
      term: 1.0, **{v[0]: 1.0 / len(ctx) for v in extra.values() if v}}
  for c, v in extra.items():
    if v:
      contrasts[f'extra {what} under {c} (vs {ref})'] = {v[0]: 1.0}
  if has_warm:
    contrasts[f'cold λ slope, {ref}'] = {'warmth_weight': 1.0}
  rows = []
  for name, weights in contrasts.items():
    vec = np.array([weights.get(n, 0.0) for n in names])
    t = res.t_test(vec[None])
    lo, hi = np.asarray(t.conf_int()).ravel()
    rows.append(dict(model=label, contrast=name, estimate=float(np.ravel(t.effect)[0]),
                     se=float(np.ravel(t.sd)[0]), ci_low=lo, ci_high=hi,
                     p_value=float(np.ravel(t.pvalue)[0]), n_obs=int(res.nobs),
                     clusters='item × seed' if two_way else 'item'))
  return rows, None, formula


def regression(items_df, metric='error'):
  """Linear-probability models of the warmth slope: reliability tasks, then each screening check."""
  d = items_df[(items_df.intervention == 'none') &
               items_df.persona.isin(['warm', 'cold', 'none'])].dropna(subset=[metric])
  if ((d.warmth_weight == 0) & (d.persona != 'none')).any():
    d = d[d.persona != 'none']  # the λ=0 persona-phase model is the matched control
  d = d.assign(warm=(d.persona == 'warm').astype(float))
  parts = [('reliability', d[d.task.isin(RELIABILITY_TASKS)])]
  parts += [(f'screening: {t}', d[d.task == t]) for t in SCREENING_TASKS]
  rows, messages, formulas = [], [], {}
  for label, data in parts:
    if data.empty:
      messages.append(f'{label}: no rows, so no model was fitted.')
      continue
    try:
      r, msg, formula = _fit(data, metric, label)
    except (ValueError, np.linalg.LinAlgError) as e:
      r, msg, formula = [], f'{label}: the model could not be fitted ({e}).', None
    rows += r
    if msg:
      messages.append(msg)
    if formula:
      formulas[label] = formula
  table = pd.DataFrame(rows, columns=['model', 'contrast', 'estimate', 'se', 'ci_low',
                                      'ci_high', 'p_value', 'n_obs', 'clusters'])
  return RegressionResult(table, messages, formulas)


MIXED_COLUMNS = ['model', 'preset', 'protocol', 'contrast', 'estimate', 'se', 'ci_low',
                 'ci_high', 'n_obs']


def _one_hot(codes):
  """Sparse indicator matrix (rows × levels) of integer codes."""
  codes = np.asarray(codes)
  n = codes.max() + 1
  return sparse.csr_matrix((np.ones(len(codes)), (np.arange(len(codes)), codes)),
                           shape=(len(codes), n))


def _conditional_cov(model, params):
  """Fixed-effects covariance of the Laplace approximation given the variance components.

  Inverse of Xᵀ W X + prior precision over (fixed effects, random effects) at `params`,
  with the variance components held at their values there (as glmer reports).
  """
  k, kv = model.k_fep, model.k_fep + model.k_vcp
  fep, vcp, vc = params[:k], params[k:kv], params[kv:]
  x = sparse.hstack([sparse.csr_matrix(model.exog), model.exog_vc]).tocsr()
  mu = special.expit(model.exog @ fep + model.exog_vc @ vc)
  prec = np.r_[np.full(model.k_fep, model.fe_p ** -2.0), np.exp(-2.0 * vcp[model.ident])]
  h = (x.T @ x.multiply((mu * (1 - mu))[:, None])).toarray() + np.diag(prec)
  return np.linalg.inv(h)[:model.k_fep, :model.k_fep]


def _mixed_rows(d, metric, label):
  """Fits one crossed-intercepts logistic model; returns (rows, message or None)."""
  y = d[metric].to_numpy(float)
  if not np.isin(y, (0.0, 1.0)).all():
    return [], f'{label}: {metric} is not a 0/1 outcome, so no logistic model was fitted.'
  if np.unique(y).size < 2:
    return [], f'{label}: the outcome does not vary, so no model was fitted.'
  if d.seed.nunique() < 2:
    return [], (f'{label}: one seed, so seed and run variation cannot be told from the warmth '
                'effect; no model was fitted.')
  lams = sorted(d.warmth_weight.unique())
  if len(lams) < 2:
    return [], (f'{label}: only λ={lams} present, so no per-unit-λ effect can be estimated.')
  pos = d[d.warmth_weight > 0]
  refs = [p for p in ('cold', 'length_matched') if (pos.persona == p).any()]
  if not (pos.persona == 'warm').any() or not refs:
    return [], f'{label}: no warm cell with a cold or length_matched cell at λ > 0.'
  ctx = sorted(d.context.unique(), key=lambda c: (c != 'neutral', c))
  lam = d.warmth_weight.to_numpy(float)
  cols, names = [np.ones(len(d))], ['intercept']
  for col in ('task', 'context'):
    levels = ctx if col == 'context' else sorted(d[col].unique())
    for v in levels[1:]:
      cols.append((d[col] == v).to_numpy(float))
      names.append(f'{col}={v}')
  slope = {}
  for c in ctx:
    at = (d.context == c).to_numpy(float) * lam
    cols.append(at)
    names.append(f'warm λ slope, {c}')
    for p in refs:
      cols.append(at * (d.persona == p).to_numpy(float))
      names.append(f'{p} − warm per λ, {c}')
      slope[(p, c)] = len(names) - 1
  exog = np.column_stack(cols)
  if np.linalg.matrix_rank(exog) < exog.shape[1]:
    return [], f'{label}: the fixed-effects design is singular, so no model was fitted.'
  run = d.groupby(['persona', 'warmth_weight', 'warm_agreement', 'seed'], sort=False).ngroup()
  groups = [('item', d.groupby(['task', 'item_id'], sort=False).ngroup()),
            ('seed', pd.factorize(d.seed)[0]), ('run', run)]
  vc = [_one_hot(g) for _, g in groups]
  ident = np.concatenate([np.full(m.shape[1], i) for i, m in enumerate(vc)])
  model = BinomialBayesMixedGLM(y, exog, sparse.hstack(vc).tocsr(), ident, vcp_p=1.0,
                                fe_p=5.0, fep_names=names, vcp_names=[g for g, _ in groups])
  # Start the fixed effects at the plain logistic fit (fewer VB iterations) and fix every other
  # start: fit_vb otherwise draws them from numpy's global generator.
  start = np.zeros(model.k_fep + model.k_vcp + model.k_vc)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    try:
      start[:model.k_fep] = sm.GLM(y, exog, family=sm.families.Binomial()).fit().params
    except (ValueError, np.linalg.LinAlgError, PerfectSeparationError):
      pass  # separation: start from zero instead
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    res = model.fit_vb(mean=start, sd=np.full(len(start), np.exp(-0.5)))
  # Mean-field VB understates the fixed effects' uncertainty (it drops their correlation
  # with the item, seed and run effects): take the covariance from the Laplace approximation
  # at the VB means instead.
  mean, cov = res.fe_mean, _conditional_cov(model, res.params)
  msg = None
  if any('converge' in str(w.message) for w in caught):
    msg = f'{label}: the fit did not fully converge; read its intervals with care.'
  rows = []
  for p in refs:
    idx = [slope[(p, c)] for c in ctx]
    # warm − reference = −(reference − warm); the average over contexts uses the covariance.
    weights = [(c, np.eye(len(idx))[j]) for j, c in enumerate(ctx)]
    weights.append(('averaged over contexts', np.full(len(idx), 1.0 / len(idx))))
    for c, w in weights:
      e = -w @ mean[idx]
      s = np.sqrt(w @ cov[np.ix_(idx, idx)] @ w)
      rows.append(dict(model=label, contrast=f'warm − {p}, log-odds per unit λ, {c}',
                       estimate=e, se=s, ci_low=e - 1.959964 * s, ci_high=e + 1.959964 * s,
                       n_obs=len(d)))
  return rows, msg


def mixed_model(items_df, metric='error'):
  """Logistic model with crossed random intercepts for item, seed and run, per preset × protocol.

  Over reliability tasks, intervention 'none', warm/cold/length_matched cells and the λ = 0
  control (the persona-phase λ = 0 models when present, else the base model). Fixed effects:
  task and context intercepts and, per context, the λ slope of warm and the difference of the
  cold and length_matched slopes from it (log-odds per unit λ). Fitted by variational Bayes
  (statsmodels BinomialBayesMixedGLM.fit_vb); intervals are estimate ± 1.96 SE with the SE from
  the Laplace approximation given the fitted variance components.
  Returns (table, messages): a message instead of a row where the design cannot support a fit.
  """
  d = items_df[items_df.task.isin(RELIABILITY_TASKS) & (items_df.intervention == 'none')]
  d = d.dropna(subset=[metric])
  d = d[(d.warmth_weight == 0) | d.persona.isin(['warm', 'cold', 'length_matched'])]
  rows, messages = [], []
  if d.empty:
    return pd.DataFrame(columns=MIXED_COLUMNS), [
        'mixed model: no reliability rows without intervention, so no model was fitted.']
  for (preset, protocol), g in d.groupby(['preset', 'protocol'], sort=True):
    label = f'logit mixed ({preset}, {protocol})'
    if ((g.warmth_weight == 0) & (g.persona != 'none')).any():
      g = g[(g.warmth_weight > 0) | (g.persona != 'none')]  # the persona-phase λ=0 control
    warm = g[g.persona == 'warm']
    if len(warm):
      g = g[(g.persona != 'warm') | (g.warm_agreement == warm.warm_agreement.min())]
    try:
      r, msg = _mixed_rows(g, metric, label)
    except (ValueError, np.linalg.LinAlgError, FloatingPointError) as e:
      r, msg = [], f'{label}: the model could not be fitted ({e}).'
    rows += [dict(row, preset=preset, protocol=protocol) for row in r]
    if msg:
      messages.append(msg)
  return pd.DataFrame(rows, columns=MIXED_COLUMNS), messages


def _level(v):
  """Grid levels from JSON and csv values compare equal as text (1 == 1.0 == '1')."""
  try:
    return f'{float(v):g}'
  except (TypeError, ValueError):
    return str(v)


def _configured_levels(config):
  """Factor levels listed in config.json: grid.seeds → seed, model.presets → preset, and so on."""
  grid = dict((config or {}).get('grid') or {})
  model = (config or {}).get('model')
  if isinstance(model, dict) and 'presets' in model:
    grid['presets'] = model['presets']
  factors = CELL + ['seed']
  return {k if k in factors else k[:-1]: v for k, v in grid.items()
          if isinstance(v, list) and (k in factors or k[:-1] in factors)}


def describe_design(metrics, config=None):
  """The sweep's design from metrics.csv (and config.json): factor levels, replication, balance.

  Returns a (factor, levels) table and sentences saying which configured levels, seeds or
  task × context evaluations are missing, i.e. whether the sweep is partial.
  """
  # Rows with seed < 0 are derived (paired changes pooled over seeds), not measurements.
  derived = pd.to_numeric(metrics.seed, errors='coerce') < 0
  measured = metrics[~derived]
  rows = [(c, ', '.join(map(str, sorted(measured[c].unique(), key=str))))
          for c in CELL + ['seed', 'task', 'context', 'metric']]
  scale = measured.groupby('preset')[[c for c in SCALE_COLUMNS if c in measured]].median()
  for p, r in scale.sort_values('n_params').iterrows():
    rows.append((f'preset {p}', ', '.join(f'{k} = {v:.3g}' for k, v in r.items() if pd.notna(v))))
  for section in ('model', 'train'):
    fields = (config or {}).get(section)
    if isinstance(fields, dict):
      rows.append((f'config.{section}', ', '.join(
          f'{k} = {v}' for k, v in fields.items() if not isinstance(v, (dict, list)))))
  cells = measured.groupby(CELL).seed.nunique()
  sentences = [f'The workdir holds {measured.run.nunique()} runs in {len(cells)} cells '
               f'({measured.preset.nunique()} preset(s), {measured.seed.nunique()} seed(s), λ in '
               f'{{{", ".join(f"{x:g}" for x in sorted(measured.warmth_weight.unique()))}}}).']
  if derived.any():
    sentences.append(f'metrics.csv also holds {int(derived.sum())} derived rows (seed < 0); this '
                     'report recomputes such quantities from items.csv.')
  partial = []
  for col, levels in _configured_levels(config).items():
    have = {_level(x) for x in measured[col].unique()}
    gone = [str(x) for x in levels if _level(x) not in have]
    if gone:
      partial.append(f'configured {col} level(s) {", ".join(gone)} have no rows')
  if cells.min() < cells.max():
    partial.append(f'{(cells < cells.max()).sum()} of {len(cells)} cells are missing seeds '
                   f'(between {cells.min()} and {cells.max()} seeds per cell)')
  evals = measured[~measured.task.isin(NON_EVAL_TASKS)][['run', 'task', 'context']]
  per_run = evals.drop_duplicates().groupby('run').size()
  full = len(evals[['task', 'context']].drop_duplicates())
  if (per_run < full).any():
    partial.append(f'{(per_run < full).sum()} of {len(per_run)} runs lack some of the {full} '
                   'task × context evaluations')
  sentences.append('The sweep is partial: ' + '; '.join(partial) + '.' if partial else
                   'Every cell has the same seeds and every task × context evaluation.')
  return pd.DataFrame(rows, columns=['factor', 'levels']), sentences
