"""Tests for experiments.analysis.crossed: entity clusters, the crossed variance and bootstrap."""

import numpy as np

from experiments.analysis import crossed


def test_bootstrap_of_constant_differences_has_zero_width():
  est, draws = crossed.crossed_bootstrap(np.full((3, 20), 0.25), n_boot=200, rng=0)
  lo, hi, p = crossed.summarize_draws(est, draws)
  np.testing.assert_allclose([est[0], lo[0], hi[0]], 0.25)
  assert p[0] < 0.01


def test_all_zero_differences_are_not_estimable():
  est, draws = crossed.crossed_bootstrap(np.zeros((3, 20)), n_boot=200, rng=0)
  lo, hi, p = crossed.summarize_draws(est, draws)
  assert est[0] == 0 and np.isnan([lo[0], hi[0], p[0]]).all()


def test_bootstrap_handles_missing_items_and_seeds():
  values = np.random.default_rng(0).normal(size=(2, 4, 30))
  values[0, 1, :10] = np.nan
  values[1, 3] = np.nan  # a seed with no data for the second statistic
  est, draws = crossed.crossed_bootstrap(values, n_boot=300, rng=0)
  assert est.shape == (2,) and draws.shape == (2, 300)
  # A replicate that draws only the empty seed has no value for that statistic: NaN, skipped.
  assert np.isfinite(draws[0]).all() and np.isfinite(draws[1]).mean() > 0.95
  lo, hi, p = crossed.summarize_draws(est, draws)
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
  var, df = crossed.crossed_variance(x, ent)
  np.testing.assert_allclose(var, (ms_s + ms_c - ms_r) / x.size)
  assert 1 < df < s * c * m
  np.testing.assert_allclose(crossed.crossed_variance(x, np.arange(c * m))[0],
                             (ms_s + ms_i - ms_r) / x.size)
  # Missing cells: still finite and positive.
  x[0, :5] = np.nan
  assert np.isfinite(crossed.crossed_variance(x, ent)).all()


def test_draws_are_not_clipped_to_the_data():
  # Two seeds that disagree completely: the seed variance says the mean is very uncertain, so
  # the interval may (and here must) reach beyond [-1, 1], the range of the data.
  values = np.stack([np.ones(12), -np.ones(12)])
  values[0, :3] = 0.0
  est, draws = crossed.crossed_bootstrap(values, n_boot=2000, rng=0)
  lo, hi, _ = crossed.summarize_draws(est, draws)
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
  est, draws = crossed.crossed_bootstrap(values, n_boot=4000, rng=1)
  lo, hi, _ = crossed.summarize_draws(est, draws)
  naive = np.percentile(_per_seed_resampling(values, 4000, rng), [2.5, 97.5])
  assert hi[0] - lo[0] > 2.5 * (naive[1] - naive[0])
  # The width matches the 20-item standard error (t with 19 df), not the 200-cell one.
  se = values.mean(0).std(ddof=1) / np.sqrt(20)
  assert 0.8 < (hi[0] - lo[0]) / (2 * 2.09 * se) < 1.25


def test_entities_cluster_items_about_the_same_thing():
  e = crossed.item_entity
  assert e('capability/s3') != e('capability/s4')  # each word sequence its own cluster
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
    est, draws = crossed.crossed_bootstrap(values, clusters, n_boot=4000, rng=1)
    lo, hi, _ = crossed.summarize_draws(est, draws)
    width[name] = hi[0] - lo[0]
  assert width['entities'] > 1.5 * width['items']


def test_projection_at_the_observed_size_is_the_measured_variance():
  """Balanced, equal clusters: projecting to the same seeds and items changes nothing; more
  seeds shrink only the seed and residual parts, more items only the item and residual parts."""
  rng = np.random.default_rng(4)
  s, c, m = 4, 30, 3
  ent = np.repeat(np.arange(c), m)
  x = (rng.normal(0, 1.0, s)[:, None] + rng.normal(0, 0.6, c)[ent][None] +
       rng.normal(0, 0.4, c * m)[None] + rng.normal(0, 0.5, (s, c * m)))
  comp = crossed.crossed_components(x, ent)
  np.testing.assert_allclose(crossed.projected_variance(comp, s, 1.0),
                             crossed.crossed_variance(x, ent))
  var, _ = crossed.crossed_variance(x, ent)
  items_part = comp['cluster'] / c + comp['item'] / (c * m)
  np.testing.assert_allclose(crossed.projected_variance(comp, 2 * s)[0],
                             comp['seed'] / (2 * s) + items_part + comp['resid'] / (2 * s * c * m))
  np.testing.assert_allclose(crossed.projected_variance(comp, s, 2.0)[0],
                             comp['seed'] / s + items_part / 2 + comp['resid'] / (2 * s * c * m))
  assert crossed.projected_variance(comp, 2 * s)[1] > crossed.projected_variance(comp, s)[1]
