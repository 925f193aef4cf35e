"""Paired warmth effects from items.csv (cluster bootstrap, BH q, regression); sweep design."""

import dataclasses
import warnings

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from statsmodels.stats.multitest import multipletests

# A cell is one trained (and possibly intervened-on) model configuration.
CELL = ['preset', 'protocol', 'persona', 'warmth_weight', 'warm_agreement',
        'intervention']
# Graded outcomes that items.csv may hold (besides the cell and item keys).
OUTCOMES = ['error', 'mc_error', 'warmth', 'affirms', 'corrects', 'refuses',
            'acknowledges', 'attributes_affect', 'safety']
SCREENING_TASKS = ('safety_refusal', 'capability')
AMPLIFIERS = ('emotional', 'false_belief', 'emotional+false_belief')
# Rows of these tasks are not graded replies (losses, persona geometry).
NON_EVAL_TASKS = ('train', 'heldout', 'persona_geometry')
SCALE_COLUMNS = ('n_params', 'n_params_nonembed', 'tokens', 'flops')


def cluster_bootstrap(values, n_boot=1000, rng=None):
  """Two-stage bootstrap of a seeds x items mean; returns (estimate (K,), draws (K, B)).

  `values` is (K, S, I) or (S, I): K statistics sharing seeds and items (NaN =
  missing). Seeds are resampled, then items within each drawn seed. Resampling
  raw seed means with replacement at both stages counts item noise twice
  (Davison & Hinkley 1997, sec. 3.8), so seed means are shrunk towards the
  grand mean until their spread matches the between-seed variance component.
  That shrinkage, and the rescaled residuals, can carry a draw outside the range of the data
  (a mean of 0/1 differences below -1 with two seeds): draws are clipped to the observed
  [min, max] of each statistic, the support of the plain plug-in bootstrap.
  """
  rng = np.random.default_rng(rng)
  values = np.asarray(values, dtype=float)
  values = values[None] if values.ndim == 2 else values
  n_k, n_s, _ = values.shape
  mask = ~np.isnan(values)
  count = mask.sum(-1)
  # Seeds or statistics without data are NaN here and drop out of the nan-means below.
  with np.errstate(invalid='ignore', divide='ignore'), warnings.catch_warnings():
    warnings.simplefilter('ignore', RuntimeWarning)
    seed_mean = np.where(mask, values, 0.0).sum(-1) / count
    est = np.nanmean(seed_mean, axis=-1) if n_s else np.full(n_k, np.nan)
    resid = np.where(mask, values - seed_mean[..., None], 0.0)
    within = (resid ** 2).sum(-1) / (count - 1) / count  # Var of a seed mean.
    # Undo the (n-1)/n shrinkage of plug-in residuals.
    resid *= np.sqrt(np.where(count > 1, count / np.maximum(count - 1, 1), 1.0))[..., None]
    shrink = np.zeros(n_k)
    if n_s > 1:
      var_m = np.nanvar(seed_mean, axis=-1, ddof=1)
      # Seeds with a single item carry no within-seed variance estimate: count it as 0.
      sigma_b2 = np.maximum(var_m - np.nan_to_num(np.nanmean(within, axis=-1)), 0.0)
      shrink = np.sqrt(np.nan_to_num(sigma_b2 / (var_m * (n_s - 1) / n_s)))
  centre = est[:, None] + shrink[:, None] * (seed_mean - est[:, None])
  avail = mask.any(0)
  n_avail = avail.sum(-1)
  width = max(int(n_avail.max(initial=0)), 1)
  avail_idx = np.zeros((n_s, width), dtype=int)
  for s in range(n_s):
    avail_idx[s, :n_avail[s]] = np.flatnonzero(avail[s])
  total = np.zeros((n_k, n_boot))
  used = np.zeros((n_k, n_boot))
  seeds = rng.integers(0, max(n_s, 1), size=(n_boot, n_s))
  for j in range(n_s):
    sj = seeds[:, j]
    pos = np.floor(rng.random((n_boot, width)) * n_avail[sj, None]).astype(int)
    item = avail_idx[sj[:, None], pos]
    in_seed = np.arange(width)[None] < n_avail[sj, None]
    ok = mask[:, sj[:, None], item] & in_seed
    with np.errstate(invalid='ignore', divide='ignore'):
      draw = centre[:, sj] + (resid[:, sj[:, None], item] * ok).sum(-1) / ok.sum(-1)
    good = np.isfinite(draw)
    total += np.where(good, draw, 0.0)
    used += good
  with np.errstate(invalid='ignore', divide='ignore'), warnings.catch_warnings():
    warnings.simplefilter('ignore', RuntimeWarning)  # all-NaN statistics stay NaN
    lo, hi = np.nanmin(values, axis=(1, 2)), np.nanmax(values, axis=(1, 2))
    return est, np.clip(total / used, lo[:, None], hi[:, None])


def summarize_draws(est, draws, alpha=0.05):
  """Percentile CI and centred two-sided bootstrap p-value for each statistic."""
  draws = np.atleast_2d(draws)
  est = np.atleast_1d(est)
  lo, hi = np.nanpercentile(draws, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=-1)
  n = np.isfinite(draws).sum(-1)
  extreme = (np.abs(draws - est[:, None]) >= np.abs(est[:, None])).sum(-1)
  p = np.where(n > 0, (1 + extreme) / (n + 1), np.nan)
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


def _reference(pool, cell, match):
  """Rows of `pool` matching `cell` on `match`, preferring also the same ρ."""
  sel = np.ones(len(pool), dtype=bool)
  for k in match:
    sel &= (pool[k] == cell[k]).to_numpy()
  same_rho = sel & (pool['warm_agreement'] == cell['warm_agreement']).to_numpy()
  return pool[same_rho if same_rho.any() else sel]


def paired_frame(items, metric='error'):
  """Per (cell, comparison, seed, item) differences: vs_base (λ=0) and vs_cold (same λ)."""
  means = _cell_means(items, metric)
  key = ['seed', 'task', 'context', 'item_id']
  base_pool = means[(means.warmth_weight == 0) & (means.intervention == 'none')]
  cold_pool = means[means.persona == 'cold']
  out = []
  for values, rows in means[means.warmth_weight > 0].groupby(CELL, sort=False):
    cell = dict(zip(CELL, values))
    base = base_pool[(base_pool.preset == cell['preset']) &
                     (base_pool.protocol == cell['protocol'])]
    # At λ=0 the persona data get zero weight, so every persona trains the same model; prefer
    # a λ=0 model that went through the same persona phase ('none' is the base model before it).
    phase = base[base.persona != 'none']
    if (phase.persona == cell['persona']).any():
      base = phase[phase.persona == cell['persona']]
    elif len(phase):
      base = phase
    refs = [('vs_base', base)]
    if cell['persona'] not in ('cold', 'none'):
      refs.append(('vs_cold', _reference(
          cold_pool, cell, ['preset', 'protocol', 'warmth_weight', 'intervention'])))
    for name, ref in refs:
      if ref.empty:
        continue
      ref = ref.groupby(key)['value'].mean().rename('ref')
      m = rows.join(ref, on=key, how='inner')
      if not m.empty:
        out.append(m.assign(comparison=name, diff=m.value - m.ref))
  cols = CELL + ['comparison'] + key + ['value', 'ref', 'diff']
  return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)


def _stack(frame, column, k_levels=None, k_col='context'):
  """(K, S, I) array of per-(seed, item-cluster) means; items cluster by (task, item_id)."""
  k = (np.zeros(len(frame), dtype=int) if k_levels is None else
       frame[k_col].map({v: i for i, v in enumerate(k_levels)}).to_numpy())
  seed = pd.factorize(frame.seed, sort=True)
  cluster = frame.groupby(['task', 'item_id'], sort=False).ngroup().to_numpy()
  shape = (1 if k_levels is None else len(k_levels), len(seed[1]), cluster.max() + 1)
  total, count = np.zeros(shape), np.zeros(shape)
  np.add.at(total, (k, seed[0], cluster), frame[column].to_numpy(dtype=float))
  np.add.at(count, (k, seed[0], cluster), 1.0)
  with np.errstate(invalid='ignore', divide='ignore'):
    return np.where(count > 0, total / count, np.nan)


def _n_params(items):
  return (items.groupby('preset')['n_params'].first()
          if 'n_params' in items else pd.Series(dtype=float))


def paired_deltas(items_df, metric='error', by=('task', 'context'), n_boot=1000,
                  seed=0, alpha=0.05):
  """Paired change of `metric` vs λ=0 and vs cold, per cell and `by` group, with CI, p and BH q."""
  by = list(by)
  pf = paired_frame(items_df, metric)
  rng = np.random.default_rng(seed)
  rows = []
  for key, g in pf.groupby(CELL + ['comparison'] + by, sort=True, dropna=False):
    est, draws = cluster_bootstrap(_stack(g, 'diff'), n_boot, rng)
    lo, hi, p = summarize_draws(est, draws, alpha)
    rows.append(dict(zip(CELL + ['comparison'] + by, key), estimate=est[0],
                     ci_low=lo[0], ci_high=hi[0], p_value=p[0], mean=g.value.mean(),
                     ref_mean=g.ref.mean(), n_items=g.item_id.nunique(),
                     n_seeds=g.seed.nunique(), n_obs=len(g)))
  cols = CELL + ['comparison'] + by + ['estimate', 'ci_low', 'ci_high', 'p_value',
                                       'q_value', 'mean', 'ref_mean', 'n_items',
                                       'n_seeds', 'n_obs']
  table = pd.DataFrame(rows, columns=[c for c in cols if c != 'q_value'])
  table.insert(cols.index('q_value'), 'q_value', _bh(table.p_value))
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


def relative_amplification(items_df, metric='error', comparison='vs_cold',
                           by=('task',), n_boot=1000, seed=0, alpha=0.05):
  """Effect under each amplifying context relative to neutral: ratio and excess, with CIs."""
  by = list(by)
  pf = paired_frame(items_df, metric)
  pf = pf[pf.comparison == comparison]
  rng = np.random.default_rng(seed)
  rows = []
  for key, g in pf.groupby(CELL + by, sort=True, dropna=False):
    ctxs = [c for c in AMPLIFIERS if c in set(g.context)]
    if 'neutral' not in set(g.context) or not ctxs:
      continue
    est, draws = cluster_bootstrap(_stack(g, 'diff', ['neutral'] + ctxs), n_boot, rng)
    with np.errstate(invalid='ignore', divide='ignore'):
      ratio, ratio_d = est[1:] / est[0], draws[1:] / draws[0]
    excess, excess_d = est[1:] - est[0], draws[1:] - draws[0]
    r_lo, r_hi, _ = summarize_draws(ratio, ratio_d, alpha)
    e_lo, e_hi, e_p = summarize_draws(excess, excess_d, alpha)
    _, _, n_p = summarize_draws(est[:1], draws[:1], alpha)
    for j, ctx in enumerate(ctxs):
      rows.append(dict(zip(CELL + by, key), comparison=comparison, context=ctx,
                       neutral_effect=est[0], neutral_p=n_p[0], context_effect=est[j + 1],
                       ratio=ratio[j], ratio_ci_low=r_lo[j], ratio_ci_high=r_hi[j],
                       excess=excess[j], excess_ci_low=e_lo[j], excess_ci_high=e_hi[j],
                       excess_p=e_p[j]))
  return pd.DataFrame(rows, columns=CELL + by + [
      'comparison', 'context', 'neutral_effect', 'neutral_p', 'context_effect', 'ratio',
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
  parts = [('reliability', d[~d.task.isin(SCREENING_TASKS)])]
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
