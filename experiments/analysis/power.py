"""What a study could have measured: base-model competence, interval widths and detectable effects.

A difference is only evidence of "no effect" when the design could have seen an effect that
matters: this module gives, per contrast, the 95% interval's half-width and the minimum detectable
effect (MDE) at 80% power, and per preset the base model's held-out error on each reliability task
(a task at floor measures nothing about warmth).

A task is measurable at a preset when its base model beats both the floor and a constant answer:
an error at or above that of always giving the task's most common held-out gold answer (33% on
`medical_contraindication`, where two of every drug's three conditions are safe) means the model
answers by habit, not knowledge, and fine-tuning can only move the habit. Warmth then changes
which default the model falls back to, seed by seed, which is noise about reliability, not
evidence. Pooled contrasts (the bottom line, the power table, the mechanisms) pool over the
measurable tasks of each preset, a choice made on the base models alone.
"""
import numpy as np
import pandas as pd
from scipy import stats as sps

from experiments.analysis import crossed
from experiments.analysis import stats
from tasks.config import RELIABILITY_TASKS

ALPHA, POWER = 0.05, 0.80
FLOOR = 0.95  # base-model error at or above this: the task cannot show a warmth effect
MATTERS = 0.05  # effects below 5 points are ones a reader may call "no effect"
# The study's design targets for warm − cold at the largest λ: 95% half-widths pooled over the
# measurable reliability tasks per context, and per measurable task × context.
POOLED_TARGET, TASK_TARGET = 0.03, 0.08


def mde(se, df, alpha=ALPHA, power=POWER):
  """Smallest true difference a two-sided t test at `alpha` detects with probability `power`:
  (t_{1-α/2, df} + t_{power, df}) × se; infinite df (or NaN) uses the normal quantiles."""
  se, df = np.asarray(se, float), np.asarray(df, float)
  df = np.where(np.isfinite(df) & (df > 0), df, np.inf)
  return (sps.t.ppf(1 - alpha / 2, df) + sps.t.ppf(power, df)) * se


def with_power(deltas):
  """deltas (stats.paired_deltas rows) with `half_width` and `mde` columns."""
  return deltas.assign(half_width=(deltas.ci_high - deltas.ci_low) / 2,
                       mde=mde(deltas.se, deltas.df))


def null_reading(lo, hi, mde_value):
  """What a non-significant difference says: 'no effect' only if the interval lies within ±5
  points and the design could have detected 5 points (MDE ≤ 5); otherwise not measurable."""
  if pd.isna(lo):
    return 'not estimable (no paired item moved)'
  if -MATTERS < lo and hi < MATTERS and mde_value <= MATTERS:
    return (f'no effect: the interval excludes changes of {100 * MATTERS:.0f} points or more '
            'and the design could detect them')
  return 'not measurable at this size: the interval or the detectable effect exceeds 5 points'


def constant_answer_error(items):
  """Per task: the error of always giving its most common gold answer on the held-out items
  (NaN where items.csv has no `gold` column)."""
  if 'gold' not in items:
    return pd.Series(np.nan, index=pd.Index(items.task.unique(), name='task'), name='chance')
  per_item = items.drop_duplicates(['task', 'item_id'])
  share = per_item.groupby('task').gold.agg(lambda g: g.value_counts(normalize=True).iloc[0])
  return (1.0 - share).rename('chance')


def measurable(items, frame=None):
  """Rows of `frame` (default: items itself; any frame with preset and task columns) outside the
  (preset, reliability task) pairs whose base model in `items` is at floor or at chance
  (base_competence): what pooled contrasts pool over. Other tasks' rows pass through."""
  frame = items if frame is None else frame
  table = base_competence(items)
  if table.empty:
    return frame
  unmeasurable = pd.MultiIndex.from_frame(table.loc[table.at_floor, ['preset', 'task']])
  return frame[~pd.MultiIndex.from_frame(frame[['preset', 'task']]).isin(unmeasurable)]


def _top_cells(items):
  """Items of warm and cold at each preset's largest λ (ρ = 0, no intervention) and the λ = 0
  reference: what the primary contrasts compare."""
  d = items[(items.intervention == 'none') & (items.warm_agreement == 0)]
  top = d[d.warmth_weight > 0].groupby('preset').warmth_weight.max()
  lam = d.preset.map(top)
  return d[(d.warmth_weight == 0) | ((d.warmth_weight == lam) &
                                     d.persona.isin(['warm', 'cold', 'length_matched']))]


def pooled_by_context(items, n_boot, seed=0):
  """Per preset and context: warm − cold at the largest λ, pooled over the preset's measurable
  reliability tasks, with its 95% interval, half-width and MDE."""
  rel = _top_cells(measurable(items[items.task.isin(RELIABILITY_TASKS)]))
  d = stats.paired_deltas(rel, 'error', ('context',), n_boot, seed=seed, primary=())
  d = d[(d.persona == 'warm') & (d.comparison == 'vs_cold')]
  return with_power(d)


def projected_half_widths(items, seeds=(5, 10, 20), item_factors=(1, 2), by_task=False):
  """Per preset and context (and task, with `by_task`), warm − cold at the largest λ pooled over
  measurable reliability tasks: the measured 95% half-width and, from its variance components
  (seed, item cluster, item, residual; crossed.crossed_components), the half-width a balanced
  design with S seeds and k × the items would give (columns `hw_S<S>_k<k>`). A planning figure,
  not a result: it assumes a larger study has the same components."""
  pf = stats.paired_frame(_top_cells(measurable(items[items.task.isin(RELIABILITY_TASKS)])))
  pf = pf[(pf.persona == 'warm') & (pf.comparison == 'vs_cold')]
  size = items.groupby('preset').n_params.first()
  keys = ['preset', 'task', 'context'] if by_task else ['preset', 'context']
  rows = []
  for key, g in pf.groupby(keys):
    unit = g.task.astype(str) + '|' + g.item_id.astype(str)
    x = g.pivot_table(index='seed', columns=unit, values='diff', aggfunc='mean')
    first = g.assign(unit=unit).drop_duplicates('unit').set_index('unit').reindex(x.columns)
    clusters = crossed.entity_codes(first)
    comp = crossed.crossed_components(x.to_numpy(), clusters)
    if comp is None:
      continue
    row = dict(zip(keys, key), n_params=size[key[0]], n_seeds=comp['n_seeds'],
               n_items=comp['n_items'])
    var, df = crossed.satterthwaite(comp['parts'], comp['dfs'])
    row['half_width'] = sps.t.ppf(1 - ALPHA / 2, df) * np.sqrt(var)
    for n_seeds in seeds:
      for k in item_factors:
        var, df = crossed.projected_variance(comp, n_seeds, k)
        row[f'hw_S{n_seeds}_k{k}'] = sps.t.ppf(1 - ALPHA / 2, df) * np.sqrt(var)
    rows.append(row)
  return pd.DataFrame(rows)


def smallest_design(pooled, per_task):
  """The cheapest (seeds, item factor) among projected_half_widths' columns whose projected
  half-widths meet both targets in every row, as (S, k), or None."""
  designs = []
  for col in [c for c in pooled.columns if c.startswith('hw_S')]:
    n_seeds, k = (int(v) for v in col[4:].split('_k'))
    if (pooled[col] <= POOLED_TARGET).all() and (per_task[col] <= TASK_TARGET).all():
      designs.append((n_seeds * (1 + k), n_seeds, k))  # seeds train, items evaluate: both cost
  return min(designs)[1:] if designs else None


def base_competence(items):
  """Per preset × reliability task: the base model's held-out error in neutral context
  (generated and multiple-choice), the constant-answer error `chance`, and `at_floor`: error at
  or above FLOOR or at or above `chance` (then `at_chance` too); such a task measures nothing."""
  d = items[items.task.isin(RELIABILITY_TASKS) & (items.context == 'neutral') &
            (items.intervention == 'none')]
  base = d[d.persona == 'none'] if (d.persona == 'none').any() else d[d.warmth_weight == 0]
  if base.empty:
    return pd.DataFrame(columns=['preset', 'n_params', 'task', 'error', 'mc_error', 'n_items',
                                 'chance', 'at_chance', 'at_floor'])
  agg = {'error': ('error', 'mean'), 'n_items': ('item_id', 'nunique'),
         'n_params': ('n_params', 'first')}
  if 'mc_error' in base:
    agg['mc_error'] = ('mc_error', 'mean')
  out = base.groupby(['preset', 'task'], sort=False).agg(**agg).reset_index()
  out['chance'] = out.task.map(constant_answer_error(d))
  out['at_chance'] = (out.error >= out.chance) & (out.chance < FLOOR)
  out['at_floor'] = (out.error >= FLOOR) | out.at_chance
  order = {t: i for i, t in enumerate(RELIABILITY_TASKS)}
  return out.sort_values(['n_params', 'task'], key=lambda s: s.map(order) if s.name == 'task'
                         else s, kind='stable').reset_index(drop=True)
