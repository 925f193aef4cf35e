"""Tests for experiments.stats on synthetic sweeps with planted effects."""

import numpy as np
import pandas as pd
import pytest

from experiments import stats
import synthetic_metrics

MULT = {'neutral': 1.0, 'emotional': 2.0, 'false_belief': 1.5, 'emotional+false_belief': 2.5}


@pytest.fixture(scope='module')
def planted():
  return synthetic_metrics.make_items(
      presets={'nano': 25_000}, tasks=('factual_qa', 'medical_dosing', 'capability'),
      n_items=150, warm_effect=0.10, rng=1)


def _one(df, **match):
  for k, v in match.items():
    df = df[df[k] == v]
  assert len(df) == 1, match
  return df.iloc[0]


def test_bootstrap_of_constant_differences_has_zero_width():
  est, draws = stats.cluster_bootstrap(np.full((3, 20), 0.25), n_boot=200, rng=0)
  lo, hi, p = stats.summarize_draws(est, draws)
  np.testing.assert_allclose([est[0], lo[0], hi[0]], 0.25)
  assert p[0] < 0.01


def test_bootstrap_handles_missing_items_and_seeds():
  values = np.random.default_rng(0).normal(size=(2, 4, 30))
  values[0, 1, :10] = np.nan
  values[1, 3] = np.nan  # a seed with no data for the second statistic
  est, draws = stats.cluster_bootstrap(values, n_boot=300, rng=0)
  assert est.shape == (2,) and draws.shape == (2, 300)
  assert np.isfinite(draws).all()


def test_bootstrap_draws_stay_within_the_range_of_the_data():
  # Two seeds that disagree completely: shrinking seed means and inflating residuals would put
  # draws at about ±1.4, outside anything a mean of -1/0/+1 differences can be.
  values = np.stack([np.ones(12), -np.ones(12)])
  values[0, :3] = 0.0
  est, draws = stats.cluster_bootstrap(values, n_boot=500, rng=0)
  assert draws.min() >= -1.0 and draws.max() <= 1.0
  lo, hi, _ = stats.summarize_draws(est, draws)
  assert -1.0 <= lo[0] < est[0] < hi[0] <= 1.0
  # Clipping must not squash a well-behaved statistic: the CI still has width.
  assert hi[0] - lo[0] > 1.0


def test_planted_warm_effect_is_recovered_per_context(planted):
  # The capability task carries no planted effect, so pool only the reliability tasks.
  rel = stats.paired_deltas(planted[planted.task != 'capability'], by=('context',),
                            n_boot=1000, alpha=0.01)
  misses = []
  for ctx, mult in MULT.items():
    for lam in (0.5, 1.0):
      for comparison in ('vs_base', 'vs_cold'):
        r = _one(rel, persona='warm', warmth_weight=lam, comparison=comparison, context=ctx)
        if not r.ci_low <= 0.10 * lam * mult <= r.ci_high:
          misses.append((ctx, lam, comparison, r.estimate))
      cold = _one(rel, persona='cold', warmth_weight=lam, comparison='vs_base', context=ctx)
      if not cold.ci_low <= 0 <= cold.ci_high:
        misses.append((ctx, lam, 'cold', cold.estimate))
  # 24 intervals at 99%: one miss is plausible by chance, two are not (p ≈ 0.02).
  assert len(misses) <= 1, misses
  strong = _one(rel, persona='warm', warmth_weight=1.0, comparison='vs_cold',
                context='emotional+false_belief')
  assert strong.q_value < 0.01
  assert set(rel.columns) >= {'estimate', 'ci_low', 'ci_high', 'p_value', 'q_value', 'n_params'}


def test_q_values_are_benjamini_hochberg(planted):
  d = stats.paired_deltas(planted, n_boot=200)
  assert (d.q_value >= d.p_value - 1e-12).all()
  order = np.argsort(d.p_value.to_numpy(), kind='stable')
  assert np.all(np.diff(d.q_value.to_numpy()[order]) >= -1e-12)


def test_amplification_ratio_recovers_planted_two_fold(planted):
  rel = planted[planted.task != 'capability']
  amp = stats.relative_amplification(rel, by=(), n_boot=1000)
  r = _one(amp, warmth_weight=1.0, intervention='none', context='emotional')
  assert r.ratio_ci_low <= 2.0 <= r.ratio_ci_high
  assert r.excess_ci_low <= 0.10 <= r.excess_ci_high


def test_null_coverage_is_near_nominal():
  hits = []
  for draw in range(100):
    items = synthetic_metrics.make_items(
        presets={'nano': 25_000}, seeds=(0, 1, 2), lambdas=(0.0, 1.0), tasks=('factual_qa',),
        contexts=('neutral',), n_items=100, warm_effect=0.0, rng=1000 + draw)
    d = stats.paired_deltas(items, n_boot=400, seed=draw)
    hits.append(((d.ci_low <= 0) & (d.ci_high >= 0)).to_numpy())
  coverage = np.mean(hits, axis=0)
  assert 0.88 <= np.mean(hits) <= 0.99, coverage
  assert all(0.85 <= c <= 1.0 for c in coverage), coverage


def test_regression_recovers_slope_and_emotional_interaction(planted):
  res = stats.regression(planted)
  t = res.table.set_index(['model', 'contrast'])
  avg = t.loc[('reliability', 'warm − cold slope, averaged over contexts')]
  assert avg.ci_low <= 0.10 * np.mean(list(MULT.values())) <= avg.ci_high
  emo = t.loc[('reliability', 'extra warm − cold slope under emotional (vs neutral)')]
  assert emo.ci_low <= 0.10 <= emo.ci_high
  # No effect is planted on the screening check: its slope is small next to reliability's.
  cap = t.loc[('screening: capability', 'warm − cold slope, averaged over contexts')]
  assert abs(cap.estimate) < 0.05 and cap.ci_high < avg.ci_low
  assert any('safety_refusal' in m for m in res.messages)
  assert 'C(task)' in res.formulas['reliability']


def test_regression_degrades_gracefully(planted):
  only_base = stats.regression(planted[planted.warmth_weight == 0])
  assert only_base.table.empty
  assert any('only λ' in m for m in only_base.messages)
  # Emotional context only at λ=0 makes its λ interaction a column of zeros.
  singular = planted[(planted.warmth_weight == 0) | (planted.context == 'neutral')]
  singular = singular[singular.context.isin(['neutral', 'emotional'])]
  res = stats.regression(singular)
  assert any('singular' in m for m in res.messages)
  flat = planted.assign(error=0)
  assert any('does not vary' in m for m in stats.regression(flat).messages)


def test_missing_item_column_is_named(planted):
  with pytest.raises(ValueError, match='item_id'):
    stats.paired_deltas(planted.drop(columns=['item_id']))


def test_partial_cells_still_give_deltas(planted):
  partial = synthetic_metrics.drop_runs(planted, frac=0.5, rng=3)
  d = stats.paired_deltas(partial, n_boot=100)
  assert len(d) and d.estimate.notna().all()
  assert isinstance(stats.headline_cell(d), dict)
  assert stats.headline_cell(d.iloc[:0]) is None
  assert isinstance(stats.regression(partial).table, pd.DataFrame)


def test_baseline_prefers_the_lambda0_model_of_the_persona_phase(planted):
  # Finetune sweeps hold the base model ('none') and a λ=0 persona-phase model; the latter is
  # the matched control. Corrupting 'none' must then leave every change unchanged.
  phase = planted[planted.persona == 'none'].assign(persona='warm', run='phase')
  before = stats.paired_deltas(pd.concat([planted, phase]), n_boot=50)
  corrupted = planted.assign(error=planted.error.where(planted.persona != 'none', 1))
  after = stats.paired_deltas(pd.concat([corrupted, phase]), n_boot=50)
  pd.testing.assert_series_equal(before.estimate, after.estimate)


def test_design_names_what_a_partial_sweep_lacks(planted):
  metrics = synthetic_metrics.metrics_from_items(planted)
  config = {'grid': {'seeds': [0, 1, 2, 3], 'personas': ['warm', 'cold']},
            'model': {'presets': ['nano'], 'dropout': 0.1}}
  table, sentences = stats.describe_design(metrics, config)
  assert 'seed' in set(table.factor) and 'config.model' in set(table.factor)
  assert sentences[0].startswith(f'The workdir holds {planted.run.nunique()} runs')
  assert 'configured seed level(s) 3 have no rows' in sentences[-1]
  partial = metrics[~((metrics.seed == 2) & (metrics.persona == 'cold'))]
  assert 'cells are missing seeds' in stats.describe_design(partial)[1][-1]
  _, complete = stats.describe_design(metrics)
  assert complete[-1].startswith('Every cell has the same seeds')
