"""What a study could have measured: interval widths, detectable effects, larger designs.

A difference is only evidence of "no effect" when the design could have seen an effect that
matters: this module gives, per contrast, the 95% interval's half-width and the minimum detectable
effect (MDE) at 80% power, and, from the run's variance components, what larger designs would
give. Pooled contrasts cover the tasks each preset's base model can answer (competence.py).
"""
import numpy as np
import pandas as pd
from scipy import stats as sps

from experiments.analysis import competence
from experiments.analysis import crossed
from experiments.analysis import stats
from tasks.config import RELIABILITY_TASKS

ALPHA, POWER = 0.05, 0.80
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
  rel = _top_cells(competence.measurable(items[items.task.isin(RELIABILITY_TASKS)]))
  d = stats.paired_deltas(rel, 'error', ('context',), n_boot, seed=seed, primary=())
  d = d[(d.persona == 'warm') & (d.comparison == 'vs_cold')]
  return with_power(d)


def hw_column(n_seeds, item_factor):
  """projected_half_widths' column for a design of `n_seeds` seeds and `item_factor` × the items."""
  return f'hw_S{n_seeds}_k{item_factor}'


def projected_half_widths(items, seeds=(5, 10, 20), item_factors=(1, 2), by_task=False):
  """Per preset and context (and task, with `by_task`), warm − cold at the largest λ pooled over
  measurable reliability tasks: the measured 95% half-width and, from its variance components
  (seed, item cluster, item, residual; crossed.crossed_components), the half-width a balanced
  design with S seeds and k × the items would give (columns `hw_column(S, k)`). A planning figure,
  not a result: it assumes a larger study has the same components."""
  rel = competence.measurable(items[items.task.isin(RELIABILITY_TASKS)])
  pf = stats.paired_frame(_top_cells(rel))
  pf = pf[(pf.persona == 'warm') & (pf.comparison == 'vs_cold')]
  size = items.groupby('preset').n_params.first()
  keys = ['preset', 'regime', 'task', 'context'] if by_task else ['preset', 'regime', 'context']
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
        row[hw_column(n_seeds, k)] = sps.t.ppf(1 - ALPHA / 2, df) * np.sqrt(var)
    rows.append(row)
  return pd.DataFrame(rows)


def smallest_design(pooled, per_task, seeds, item_factors):
  """The cheapest (seeds, item factor) of those projected (projected_half_widths) whose
  half-widths meet both targets in every row, as (S, k), or None."""
  designs = [(n_seeds * (1 + k), n_seeds, k) for n_seeds in seeds for k in item_factors
             if (pooled[hw_column(n_seeds, k)] <= POOLED_TARGET).all()
             and (per_task[hw_column(n_seeds, k)] <= TASK_TARGET).all()]
  return min(designs)[1:] if designs else None  # seeds train, items evaluate: both cost
