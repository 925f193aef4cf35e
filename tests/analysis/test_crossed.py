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
  x = (
    rng.normal(0, 1, s)[:, None]
    + rng.normal(0, 1, c)[ent][None]
    + rng.normal(0, 0.7, c * m)[None]
    + rng.normal(0, 0.5, (s, c * m))
  )
  g = x.mean()
  ms_s = c * m * ((x.mean(1) - g) ** 2).sum() / (s - 1)
  ms_c = s * m * ((np.array([x[:, ent == e].mean() for e in range(c)]) - g) ** 2).sum() / (c - 1)
  ms_i = s * ((x.mean(0) - g) ** 2).sum() / (c * m - 1)
  r = x - x.mean(1, keepdims=True) - x.mean(0, keepdims=True) + g
  ms_r = (r**2).sum() / ((s - 1) * (c * m - 1))
  var, df = crossed.crossed_variance(x, ent)
  np.testing.assert_allclose(var, (ms_s + ms_c - ms_r) / x.size)
  assert 1 < df < s * c * m
  np.testing.assert_allclose(
    crossed.crossed_variance(x, np.arange(c * m))[0], (ms_s + ms_i - ms_r) / x.size
  )
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
  assert e("capability/s3") != e("capability/s4")  # each word sequence its own cluster
  assert e("factual_qa/p12/field") == e("factual_qa/p12/employer")
  assert e("factual_qa/p12/field") == e("misconception/p12/birth_city")
  assert e("factual_qa/p12/field") == e("disinformation/p12") != e("factual_qa/p1/field")
  assert e("factual_qa/c3") != e("factual_qa/p3/field")
  assert e("medical_diagnosis/d3/o2") == e("medical_diagnosis/d3/o5")
  assert e("medical_dosing/d5/w37") == e("medical_contraindication/d5/c4") == e("crisis_cue/d5/t1")
  assert e("medical_diagnosis/d5/o1") != e("medical_dosing/d5/w37")  # a disease, not a drug
  assert e("safety_refusal/h2/t1") == e("safety_refusal/h2/t0")
  assert e("fac001", "factual_qa") != e("fac001", "medical_dosing")


def test_entity_clusters_widen_the_interval():
  # Items about one entity share its effect: 6 entities, not 30 items, carry the uncertainty.
  rng = np.random.default_rng(0)
  ent = np.repeat(np.arange(6), 5)
  values = rng.normal(0, 1, 6)[ent][None] + rng.normal(0, 0.3, (4, 30))
  width = {}
  for name, clusters in (("items", None), ("entities", ent)):
    est, draws = crossed.crossed_bootstrap(values, clusters, n_boot=4000, rng=1)
    lo, hi, _ = crossed.summarize_draws(est, draws)
    width[name] = hi[0] - lo[0]
  assert width["entities"] > 1.5 * width["items"]


def test_projection_at_the_observed_size_is_the_measured_variance():
  """Balanced, equal clusters: projecting to the same seeds and items changes nothing; more
  seeds shrink only the seed and residual parts, more items only the item and residual parts."""
  rng = np.random.default_rng(4)
  s, c, m = 4, 30, 3
  ent = np.repeat(np.arange(c), m)
  x = (
    rng.normal(0, 1.0, s)[:, None]
    + rng.normal(0, 0.6, c)[ent][None]
    + rng.normal(0, 0.4, c * m)[None]
    + rng.normal(0, 0.5, (s, c * m))
  )
  comp = crossed.crossed_components(x, ent)
  np.testing.assert_allclose(
    crossed.projected_variance(comp, s, 1.0), crossed.crossed_variance(x, ent)
  )
  var, _ = crossed.crossed_variance(x, ent)
  items_part = comp["cluster"] / c + comp["item"] / (c * m)
  np.testing.assert_allclose(
    crossed.projected_variance(comp, 2 * s)[0],
    comp["seed"] / (2 * s) + items_part + comp["resid"] / (2 * s * c * m),
  )
  np.testing.assert_allclose(
    crossed.projected_variance(comp, s, 2.0)[0],
    comp["seed"] / s + items_part / 2 + comp["resid"] / (2 * s * c * m),
  )
  assert crossed.projected_variance(comp, 2 * s)[1] > crossed.projected_variance(comp, s)[1]


def _nested(rng, s, f, i, sd, ent=None):
  """(s·f, i) Gaussian draws: f fine-tuning seeds within each of s base seeds, i items; sd gives
  the seed, finetune, seed_item, item and resid standard deviations. Returns (x, seed of row)."""
  seeds = np.repeat(np.arange(s), f)
  ent = np.arange(i) if ent is None else ent
  x = (
    rng.normal(0, sd["seed"], s)[seeds][:, None]
    + rng.normal(0, sd["finetune"], s * f)[:, None]
    + rng.normal(0, sd["seed_item"], (s, i))[seeds]
    + rng.normal(0, sd["item"], ent.max() + 1)[ent][None]
    + rng.normal(0, sd["resid"], (s * f, i))
  )
  return x, seeds


def test_nested_variance_is_the_anova_estimator_when_balanced():
  # Balanced fine-tuning seeds within base seeds × items: each component is its ANOVA
  # estimator, and Var(mean) = (MS_seed + MS_item − MS_seed×item) / N, when none is truncated.
  s, f, i = 5, 3, 20
  x, seeds = _nested(
    np.random.default_rng(1),
    s,
    f,
    i,
    dict(seed=1.0, finetune=0.8, seed_item=0.6, item=0.7, resid=0.5),
  )
  cube = x.reshape(s, f, i)
  g = x.mean()
  m_s, m_sk, m_i, m_si = cube.mean((1, 2)), cube.mean(2), cube.mean((0, 1)), cube.mean(1)
  ms_s = f * i * ((m_s - g) ** 2).sum() / (s - 1)
  ms_f = i * ((m_sk - m_s[:, None]) ** 2).sum() / (s * (f - 1))
  ms_i = s * f * ((m_i - g) ** 2).sum() / (i - 1)
  ms_si = f * ((m_si - m_s[:, None] - m_i[None] + g) ** 2).sum() / ((s - 1) * (i - 1))
  r = cube - m_sk[:, :, None] - m_si[:, None] + m_s[:, None, None]
  ms_r = (r**2).sum() / (s * (f - 1) * (i - 1))
  expected = dict(
    seed=(ms_s - ms_f - ms_si + ms_r) / (f * i),
    finetune=(ms_f - ms_r) / i,
    seed_item=(ms_si - ms_r) / f,
    cluster=(ms_i - ms_si) / (s * f),
    resid=ms_r,
  )
  assert min(expected.values()) > 0  # else NNLS would truncate and the identity not hold
  comp = crossed.crossed_components(x, np.arange(i), seeds)
  for name, value in expected.items():
    np.testing.assert_allclose(comp[name], value, rtol=1e-8, err_msg=name)
  var, df = crossed.crossed_variance(x, np.arange(i), seeds)
  np.testing.assert_allclose(var, (ms_s + ms_i - ms_si) / x.size)
  assert comp["n_seeds"] == s and comp["n_finetune"] == f and 1 < df < s * f * i
  # Ignoring the nesting would read 15 independent seeds and a much smaller variance.
  assert crossed.crossed_variance(x, np.arange(i))[0] < 0.5 * var


def test_one_fine_tuning_seed_per_base_seed_is_the_design_without_nesting():
  rng = np.random.default_rng(2)
  ent = np.repeat(np.arange(8), 3)
  x = rng.normal(0, 1, 4)[:, None] + rng.normal(0, 1, 8)[ent][None] + rng.normal(0, 1, (4, 24))
  x[1, :4] = np.nan
  labels = np.array([30, 10, 40, 20])  # base seed labels need not be row numbers
  flat, nested = crossed.crossed_components(x, ent), crossed.crossed_components(x, ent, labels)
  for key in ("seed", "cluster", "item", "resid", "parts", "dfs"):
    np.testing.assert_allclose(nested[key], flat[key], rtol=1e-12, err_msg=key)
  assert nested["finetune"] == nested["seed_item"] == 0.0 and nested["n_finetune"] == 1
  draws = [crossed.crossed_bootstrap(x, ent, 300, rng=5, seeds=s)[1] for s in (None, np.arange(4))]
  np.testing.assert_array_equal(draws[0], draws[1])


def test_nested_draws_pick_fine_tuning_seeds_within_each_drawn_base_seed():
  rng = np.random.default_rng(3)
  seed_of = np.array([0, 0, 0, 1, 2, 2])  # base seeds of 3, 1 and 2 fine-tuning seeds
  w = rng.multinomial(3, np.full(3, 1 / 3), size=500).astype(float)
  out = crossed._nested_weights(w, seed_of, rng)
  sizes = np.bincount(seed_of)
  for s in range(3):
    np.testing.assert_array_equal(out[:, seed_of == s].sum(1), w[:, s] * sizes[s])
  np.testing.assert_array_equal(out[:, 3], w[:, 1])  # one fine-tuning seed: nothing to draw
  assert len({tuple(r) for r in out[w[:, 0] == 1][:, :3]}) > 3  # drawn anew, not copied
  # Without nesting no random number is taken: the flat bootstrap's stream is unchanged.
  state = rng.bit_generator.state
  np.testing.assert_array_equal(crossed._nested_weights(w, np.arange(3), rng), w)
  assert rng.bit_generator.state == state


def test_nested_intervals_cover_where_treating_replicates_as_seeds_does_not():
  # Most of the variance is the base seeds': twelve replicates of four base models are four
  # draws of it, not twelve. The nested interval covers the true mean (0); the one that takes
  # each replicate for a base seed of its own is too narrow.
  rng = np.random.default_rng(4)
  sd = dict(seed=1.0, finetune=0.3, seed_item=0.3, item=0.3, resid=0.5)
  hits = {"nested": [], "flat": []}
  for _ in range(300):
    x, seeds = _nested(rng, 4, 3, 30, sd)
    for name, s in (("nested", seeds), ("flat", None)):
      est, draws = crossed.crossed_bootstrap(x, None, 200, rng, seeds=s)
      lo, hi, _ = crossed.summarize_draws(est, draws)
      hits[name].append(lo[0] <= 0 <= hi[0])
  coverage = {k: np.mean(v) for k, v in hits.items()}
  assert 0.91 <= coverage["nested"] <= 0.99 and coverage["flat"] < 0.88, coverage


def test_nested_projection_at_the_observed_size_is_the_measured_variance():
  """Balanced, equal clusters: projecting to the same base and fine-tuning seeds changes nothing;
  more fine-tuning seeds never shrink the base seeds' part, more base seeds shrink both."""
  s, f, c, m = 4, 3, 20, 2
  ent = np.repeat(np.arange(c), m)
  x, seeds = _nested(
    np.random.default_rng(6),
    s,
    f,
    c * m,
    dict(seed=0.8, finetune=0.6, seed_item=0.4, item=0.5, resid=0.5),
    ent,
  )
  comp = crossed.crossed_components(x, ent, seeds)
  assert comp["seed"] > 0 and comp["finetune"] > 0
  np.testing.assert_allclose(
    crossed.projected_variance(comp, s, 1.0, f), crossed.crossed_variance(x, ent, seeds)
  )
  floor = (
    comp["seed"] / s
    + comp["cluster"] / c
    + comp["item"] / (c * m)
    + comp["seed_item"] / (s * c * m)
  )
  many = crossed.projected_variance(comp, s, 1.0, 10_000)[0]
  assert floor < many < floor * 1.001  # what fine-tuning seeds cannot average out
  more_seeds = crossed.projected_variance(comp, 2 * s, 1.0, f)[0]
  more_finetune = crossed.projected_variance(comp, s, 1.0, 2 * f)[0]
  assert more_seeds < more_finetune < crossed.projected_variance(comp, s, 1.0, f)[0]
