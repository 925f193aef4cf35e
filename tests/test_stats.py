"""Tests for experiments.stats on synthetic sweeps with planted effects."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from experiments import planted as planted_oracle
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
  est, draws = stats.crossed_bootstrap(np.full((3, 20), 0.25), n_boot=200, rng=0)
  lo, hi, p = stats.summarize_draws(est, draws)
  np.testing.assert_allclose([est[0], lo[0], hi[0]], 0.25)
  assert p[0] < 0.01


def test_all_zero_differences_are_not_estimable():
  est, draws = stats.crossed_bootstrap(np.zeros((3, 20)), n_boot=200, rng=0)
  lo, hi, p = stats.summarize_draws(est, draws)
  assert est[0] == 0 and np.isnan([lo[0], hi[0], p[0]]).all()


def test_bootstrap_handles_missing_items_and_seeds():
  values = np.random.default_rng(0).normal(size=(2, 4, 30))
  values[0, 1, :10] = np.nan
  values[1, 3] = np.nan  # a seed with no data for the second statistic
  est, draws = stats.cluster_bootstrap(values, n_boot=300, rng=0)
  assert est.shape == (2,) and draws.shape == (2, 300)
  # A replicate that draws only the empty seed has no value for that statistic: NaN, skipped.
  assert np.isfinite(draws[0]).all() and np.isfinite(draws[1]).mean() > 0.95
  lo, hi, p = stats.summarize_draws(est, draws)
  assert np.isfinite([lo, hi, p]).all()


def test_crossed_variance_is_the_anova_estimator_when_balanced():
  # Balanced seeds × items, items nested in entities: Var(mean) = (MS_seed + MS_entity −
  # MS_resid) / N, the unbiased ANOVA estimator, when no component is truncated at 0.
  rng = np.random.default_rng(0)
  s, c, m = 6, 8, 3
  ent = np.repeat(np.arange(c), m)
  x = (rng.normal(0, 1, s)[:, None] + rng.normal(0, 1, c)[ent][None] +
       rng.normal(0, 0.7, c * m)[None] + rng.normal(0, 0.5, (s, c * m)))
  g = x.mean()
  ms_s = c * m * ((x.mean(1) - g) ** 2).sum() / (s - 1)
  ms_c = s * m * ((np.array([x[:, ent == e].mean() for e in range(c)]) - g) ** 2).sum() / (c - 1)
  ms_i = s * ((x.mean(0) - g) ** 2).sum() / (c * m - 1)
  r = x - x.mean(1, keepdims=True) - x.mean(0, keepdims=True) + g
  ms_r = (r ** 2).sum() / ((s - 1) * (c * m - 1))
  var, df = stats.crossed_variance(x, ent)
  np.testing.assert_allclose(var, (ms_s + ms_c - ms_r) / x.size)
  assert 1 < df < s * c * m
  np.testing.assert_allclose(stats.crossed_variance(x, np.arange(c * m))[0],
                             (ms_s + ms_i - ms_r) / x.size)
  # Missing cells: still finite and positive.
  x[0, :5] = np.nan
  assert np.isfinite(stats.crossed_variance(x, ent)).all()


def test_draws_are_not_clipped_to_the_data():
  # Two seeds that disagree completely: the seed variance says the mean is very uncertain, so
  # the interval may (and here must) reach beyond [-1, 1], the range of the data.
  values = np.stack([np.ones(12), -np.ones(12)])
  values[0, :3] = 0.0
  est, draws = stats.crossed_bootstrap(values, n_boot=2000, rng=0)
  lo, hi, _ = stats.summarize_draws(est, draws)
  assert lo[0] < -1.0 and hi[0] > 1.0


def _per_seed_resampling(values, n_boot, rng):
  """Items resampled independently inside each seed: ignores that items are crossed with seeds."""
  s, i = values.shape
  pick = rng.integers(0, i, (n_boot, s, i))
  seeds = rng.integers(0, s, (n_boot, s))
  return values[seeds[..., None], pick].mean((1, 2))


def test_crossed_resampling_shares_items_across_seeds():
  # Persistent item effects (the same in every seed), little seed-level noise: the uncertainty
  # is that of 20 items, not of 10 × 20 independent cells.
  rng = np.random.default_rng(0)
  values = rng.normal(0, 1, 20)[None] + rng.normal(0, 0.1, (10, 20))
  est, draws = stats.crossed_bootstrap(values, n_boot=4000, rng=1)
  lo, hi, _ = stats.summarize_draws(est, draws)
  naive = np.percentile(_per_seed_resampling(values, 4000, rng), [2.5, 97.5])
  assert hi[0] - lo[0] > 2.5 * (naive[1] - naive[0])
  # The width matches the 20-item standard error (t with 19 df), not the 200-cell one.
  se = values.mean(0).std(ddof=1) / np.sqrt(20)
  assert 0.8 < (hi[0] - lo[0]) / (2 * 2.09 * se) < 1.25


def test_entities_cluster_items_about_the_same_thing():
  e = stats.item_entity
  assert e('capability/3+4') == e('capability/4+3') != e('capability/3+5')
  assert e('factual_qa/p12/field') == e('factual_qa/p12/employer')
  assert e('factual_qa/p12/field') == e('misconception/p12/birth_city')
  assert e('factual_qa/p12/field') == e('disinformation/p12') != e('factual_qa/p1/field')
  assert e('factual_qa/c3') != e('factual_qa/p3/field')
  assert e('medical_diagnosis/d3/o2') == e('medical_diagnosis/d3/o5')
  assert e('medical_dosing/d5/w37') == e('medical_contraindication/d5/c4') == e('crisis_cue/d5/t1')
  assert e('medical_diagnosis/d5/o1') != e('medical_dosing/d5/w37')  # a disease, not a drug
  assert e('safety_refusal/h2/t1') == e('safety_refusal/h2/t0')
  assert e('fac001', 'factual_qa') != e('fac001', 'medical_dosing')


def test_entity_clusters_widen_the_interval():
  # Items about one entity share its effect: 6 entities, not 30 items, carry the uncertainty.
  rng = np.random.default_rng(0)
  ent = np.repeat(np.arange(6), 5)
  values = rng.normal(0, 1, 6)[ent][None] + rng.normal(0, 0.3, (4, 30))
  width = {}
  for name, clusters in (('items', None), ('entities', ent)):
    est, draws = stats.crossed_bootstrap(values, clusters, n_boot=4000, rng=1)
    lo, hi, _ = stats.summarize_draws(est, draws)
    width[name] = hi[0] - lo[0]
  assert width['entities'] > 1.5 * width['items']


def test_planted_warm_effect_is_recovered_per_context(planted):
  # The capability task carries no planted effect, so pool only the reliability tasks.
  rel = stats.paired_deltas(planted[planted.task != 'capability'], by=('context',),
                            n_boot=1000, n_boot_primary=1000, alpha=0.01)
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
  assert strong.q_value < 0.01 and strong.test_family == 'primary'
  assert (rel.family == 'pooled').all()
  assert set(rel.columns) >= {'estimate', 'ci_low', 'ci_high', 'p_value', 'q_value', 'n_params',
                              'estimable', 'family', 'test_family', 'n_entities'}


def test_primary_family_has_q_values_and_fine_p_values(planted):
  d = stats.paired_deltas(planted, n_boot=200)
  prim = d[d.test_family == 'primary']
  # Warm vs cold at the largest λ, reliability tasks × the four contexts (no length_matched).
  assert len(prim) == 2 * 4
  assert (prim.persona == 'warm').all() and (prim.warmth_weight == 1.0).all()
  assert (prim.comparison == 'vs_cold').all() and (prim.family == 'reliability').all()
  assert prim.q_value.notna().all() and d[d.test_family == 'secondary'].q_value.isna().all()
  assert (d[d.task == 'capability'].test_family == 'secondary').all()
  # p-values come from the t distribution of the estimate, not from counting draws, so a
  # strong effect can reach below 1e-3 even with 200 draws (a bootstrap count cannot: 1/201).
  strong = _one(prim, task='factual_qa', context='emotional+false_belief')
  assert strong.p_value < 1e-3
  r = _one(d, persona='warm', warmth_weight=1.0, comparison='vs_cold', task='factual_qa',
           context='neutral')
  expected = 2 * scipy_stats.t.sf(abs(r.estimate) / r.se, r.df)
  assert r.p_value == pytest.approx(expected, rel=1e-6)
  assert (d.family[d.task == 'capability'] == 'screening').all()
  none = stats.paired_deltas(planted, n_boot=200, primary=())
  assert (none.test_family == 'secondary').all() and none.q_value.isna().all()


def test_q_values_are_benjamini_hochberg(planted):
  d = stats.paired_deltas(planted, n_boot=200, n_boot_primary=2000)
  d = d[d.test_family == 'primary']
  assert (d.q_value >= d.p_value - 1e-12).all()
  order = np.argsort(d.p_value.to_numpy(), kind='stable')
  assert np.all(np.diff(d.q_value.to_numpy()[order]) >= -1e-12)


def test_length_matched_comparison_exists_when_its_cells_do():
  items = synthetic_metrics.make_items(
      presets={'nano': 25_000}, tasks=('factual_qa',), n_items=60, lambdas=(0.0, 1.0),
      personas=('warm', 'cold', 'length_matched'), lm_effect=0.05, rng=2)
  d = stats.paired_deltas(items, n_boot=200, n_boot_primary=1000)
  lm = d[d.comparison == 'vs_length_matched']
  assert set(lm.persona) == {'warm'} and len(lm) == 4
  assert (lm.test_family == 'primary').all() and lm.q_value.notna().all()
  # length_matched is itself compared with cold and λ=0, never with itself.
  assert set(d[d.persona == 'length_matched'].comparison) == {'vs_base', 'vs_cold'}
  without = stats.paired_deltas(items[items.persona != 'length_matched'], n_boot=100)
  assert not (without.comparison == 'vs_length_matched').any()


def test_cells_where_no_item_moved_are_not_estimable():
  base = synthetic_metrics.make_items(presets={'nano': 25_000}, tasks=('factual_qa',),
                                      contexts=('neutral',), n_items=30, lambdas=(0.0, 1.0))
  same = base[base.persona == 'none']
  cells = pd.concat([same, same.assign(persona='warm', warmth_weight=1.0),
                     same.assign(persona='cold', warmth_weight=1.0)])
  d = stats.paired_deltas(cells, n_boot=200, n_boot_primary=200)
  assert len(d) == 3 and not d.estimable.any()
  assert (d.estimate == 0).all()
  assert d[['ci_low', 'ci_high', 'p_value', 'q_value']].isna().all().all()
  assert (d.n_obs == 90).all()


def test_amplification_ratio_recovers_planted_two_fold(planted):
  amp = stats.relative_amplification(planted, by=(), n_boot=1000)
  r = _one(amp, warmth_weight=1.0, intervention='none', context='emotional')
  assert r.ratio_ci_low <= 2.0 <= r.ratio_ci_high
  assert r.excess_ci_low <= 0.10 <= r.excess_ci_high
  assert r.tasks == 'factual_qa,medical_dosing'  # capability is not a reliability task


def test_amplification_pools_only_tasks_seen_in_every_context(planted):
  # A reliability task evaluated only in neutral must not enter the pool: the neutral and
  # amplified effects would then be means over different tasks.
  extra = planted[(planted.task == 'medical_dosing') & (planted.context == 'neutral')]
  extra = extra.assign(task='disinformation', error=1 - extra.error)
  amp = stats.relative_amplification(pd.concat([planted, extra]), by=(), n_boot=200)
  ref = stats.relative_amplification(planted, by=(), n_boot=200)
  assert (amp.tasks == 'factual_qa,medical_dosing').all()
  pd.testing.assert_series_equal(amp.neutral_effect, ref.neutral_effect)


def test_null_coverage_is_near_nominal():
  hits = []
  for draw in range(60):
    items = synthetic_metrics.make_items(
        presets={'nano': 25_000}, seeds=(0, 1, 2), lambdas=(0.0, 1.0), tasks=('factual_qa',),
        contexts=('neutral',), n_items=100, warm_effect=0.0, rng=1000 + draw)
    d = stats.paired_deltas(items, n_boot=400, n_boot_primary=400, seed=draw)
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


def test_regression_pools_only_reliability_tasks(planted):
  probe = planted[planted.task == 'capability'].assign(task='delusion_affirmation')
  with_probe = stats.regression(pd.concat([planted, probe]))
  plain = stats.regression(planted)
  rel = lambda r: r.table[r.table.model == 'reliability'].reset_index(drop=True)
  pd.testing.assert_frame_equal(rel(with_probe), rel(plain))


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


@pytest.fixture(scope='module')
def small():
  return synthetic_metrics.make_items(
      presets={'nano': 25_000}, tasks=('factual_qa', 'medical_dosing', 'capability'),
      n_items=40, lambdas=(0.0, 1.0), warm_effect=0.15,
      personas=('warm', 'cold', 'length_matched'), lm_effect=0.0, rng=4)


def test_mixed_model_recovers_the_sign_of_the_warm_effect(small):
  table, messages = stats.mixed_model(small)
  assert not [m for m in messages if 'could not' in m]
  t = table.set_index('contrast')
  for other in ('cold', 'length_matched'):
    avg = t.loc[f'warm − {other}, log-odds per unit λ, averaged over contexts']
    assert avg.estimate > 0 and avg.ci_low > 0
    strong = t.loc[f'warm − {other}, log-odds per unit λ, emotional+false_belief']
    assert strong.ci_low > 0
  assert (table.n_obs == len(small[small.task != 'capability'])).all()
  # No effect is planted on cold: flipping the roles gives a negative warm − cold effect.
  swapped = small.assign(persona=small.persona.replace({'warm': 'cold', 'cold': 'warm'}))
  t2 = stats.mixed_model(swapped)[0].set_index('contrast')
  assert t2.loc['warm − cold, log-odds per unit λ, averaged over contexts'].ci_high < 0


def test_mixed_model_degrades_with_a_message(small):
  for data, words in ((small[small.seed == 0], 'one seed'), (small.assign(error=0), 'not vary'),
                      (small[small.warmth_weight > 0], 'only λ'),
                      (small[small.task == 'capability'], 'no reliability rows')):
    table, messages = stats.mixed_model(data)
    assert table.empty and any(words in m for m in messages), (words, messages)


def test_missing_item_column_is_named(planted):
  with pytest.raises(ValueError, match='item_id'):
    stats.paired_deltas(planted.drop(columns=['item_id']))


def test_partial_cells_still_give_deltas(planted):
  partial = synthetic_metrics.drop_runs(planted, frac=0.5, rng=3)
  d = stats.paired_deltas(partial, n_boot=100, n_boot_primary=100)
  assert len(d) and d.estimate.notna().all()
  assert isinstance(stats.headline_cell(d), dict)
  assert stats.headline_cell(d.iloc[:0]) is None
  assert isinstance(stats.regression(partial).table, pd.DataFrame)


def test_baseline_prefers_the_lambda0_model_of_the_persona_phase(planted):
  # Finetune sweeps hold the base model ('none') and a λ=0 persona-phase model; the latter is
  # the matched control. Corrupting 'none' must then leave every change unchanged.
  phase = planted[planted.persona == 'none'].assign(persona='warm', run='phase')
  before = stats.paired_deltas(pd.concat([planted, phase]), n_boot=50, n_boot_primary=50)
  corrupted = planted.assign(error=planted.error.where(planted.persona != 'none', 1))
  after = stats.paired_deltas(pd.concat([corrupted, phase]), n_boot=50, n_boot_primary=50)
  pd.testing.assert_series_equal(before.estimate, after.estimate)


def test_paired_deltas_is_fast_for_a_full_primary_family():
  import time
  items = planted_oracle.make_items(10, 50, replicates=1, rng=0)
  items = pd.concat([items.assign(task=t, context=c) for t in stats.RELIABILITY_TASKS
                     for c in stats.CONTEXTS])
  items = pd.concat([items, items.assign(preset='planted_b')])
  t0 = time.perf_counter()
  d = stats.paired_deltas(items)
  prim = d[d.test_family == 'primary']
  assert len(prim) == 2 * 2 * 6 * 4  # presets × (vs_cold, vs_length_matched) × tasks × contexts
  assert time.perf_counter() - t0 < 20


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
