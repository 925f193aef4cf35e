"""Tests for experiments.analysis.scaling: power-law and Chinchilla fits on planted laws."""

import numpy as np
import pandas as pd
import pytest
import synthetic_metrics

from experiments.analysis import scaling


def _seed_fx(effects_by_n, seeds=5, noise=0.0, rng=0):
  """A seed_effects-shaped frame with effect = f(N) · exp(noise) per seed."""
  rng = np.random.default_rng(rng)
  rows = [
    dict(
      preset=f"p{i}",
      seed=s,
      warmth_weight=1.0,
      warm_agreement=0.0,
      effect=f(n, rng),
      n_params=n,
      tokens=20 * n,
    )
    for i, (n, f) in enumerate(effects_by_n.items())
    for s in range(seeds)
  ]
  return pd.DataFrame(rows)


NS = (1e5, 1e6, 1e7, 1e8)


def test_planted_power_law_is_recovered():
  fx = _seed_fx(
    {n: (lambda n_, r: 0.02 * (n_ / 1e5) ** 0.25 * np.exp(r.normal(0, 0.05))) for n in NS}
  )
  fit = scaling.fit_power_law(fx, n_boot=1000)
  assert fit.supported, fit.reason
  assert fit.b == pytest.approx(0.25, abs=0.03)
  assert fit.a * 1e5**fit.b == pytest.approx(0.02, rel=0.1)
  assert fit.b_ci[0] <= 0.25 <= fit.b_ci[1]
  assert fit.draws.shape[1] == 2
  assert fit.statement().endswith("two parameters through 4 presets leave 2 degrees of freedom.")
  three = scaling.fit_power_law(fx[fx.n_params < 1e8], n_boot=200)
  assert "through 3 presets leave 1 degree of freedom" in three.statement(), three.statement()


def test_planted_power_law_through_metrics_csv():
  items = synthetic_metrics.make_items(
    presets=dict(zip("abcd", NS)),
    tasks=("factual_qa", "capability"),
    n_items=200,
    warm_effect=0.08,
    exponent=0.15,
    lambdas=(0.0, 1.0),
    context_mult={"emotional": 1.0, "false_belief": 1.0, "emotional+false_belief": 1.0},
  )
  fx = scaling.seed_effects(synthetic_metrics.metrics_from_items(items))
  assert set(fx.columns) >= {"preset", "seed", "effect", "n_params", "tokens", "flops"}
  fit = scaling.fit_power_law(fx, n_boot=1000)
  assert fit.supported and fit.trend, fit.reason
  assert fit.b_ci[0] <= 0.15 <= fit.b_ci[1]
  assert fit.b == pytest.approx(0.15, abs=0.08)


def test_flat_noisy_effect_is_unsupported():
  fx = _seed_fx({n: (lambda n_, r: 0.01 + r.normal(0, 0.03)) for n in NS})
  fit = scaling.fit_power_law(fx, n_boot=500)
  assert not fit.supported
  assert "positive" in fit.reason or "both signs" in fit.reason


def test_flat_positive_effect_is_drawn_as_a_descriptive_fit_without_a_trend():
  fx = _seed_fx({n: (lambda n_, r: 0.10 * np.exp(r.normal(0, 0.2))) for n in NS}, rng=2)
  fit = scaling.fit_power_law(fx, n_boot=500)
  assert fit.supported and not fit.trend
  assert fit.b_ci[0] < 0 < fit.b_ci[1]
  assert "spans zero: no detectable trend" in fit.statement()
  assert "descriptive fit" in fit.statement()


def test_too_few_presets_or_seeds_is_unsupported():
  two = _seed_fx({n: (lambda n_, r: 0.1) for n in NS[:2]})
  assert "at least 3" in scaling.fit_power_law(two).reason
  one_seed = _seed_fx({n: (lambda n_, r: 0.01 * n_**0.2) for n in NS}, seeds=1)
  fit = scaling.fit_power_law(one_seed)
  assert not fit.supported and "single seed" in fit.reason
  assert fit.b == pytest.approx(0.2)


def test_chinchilla_fit_recovers_planted_law():
  fit = scaling.fit_chinchilla(
    synthetic_metrics.loss_grid(e=2.0, a=60.0, alpha=0.32, b=90.0, beta=0.28)
  )
  assert fit.supported, fit.reason
  assert fit.params["E"] == pytest.approx(2.0, rel=0.05)
  assert fit.params["alpha"] == pytest.approx(0.32, abs=0.05)
  assert fit.params["beta"] == pytest.approx(0.28, abs=0.05)
  assert fit.rmse_log < 0.01
  assert np.allclose(fit.predict(fit.data.N, fit.data.D), fit.data.loss, rtol=0.02)


def test_chinchilla_without_variation_says_so():
  grid = synthetic_metrics.loss_grid()
  one_d = grid[grid.tokens == grid.tokens.min()]
  assert "not enough variation" in scaling.fit_chinchilla(one_d).reason
  tied = grid.assign(tokens=grid.n_params * 20)  # D ∝ N: one curve, exponents not separable
  assert "not enough variation" in scaling.fit_chinchilla(tied).reason
  no_loss = grid.assign(metric="error_rate")
  assert "no loss rows" in scaling.fit_chinchilla(no_loss).reason
  assert not scaling.fit_chinchilla(grid.drop(columns=["tokens"])).supported


def test_no_cold_gives_empty_effects():
  items = synthetic_metrics.make_items(presets={"nano": 25_000}, tasks=("factual_qa",), n_items=20)
  m = synthetic_metrics.metrics_from_items(items)
  assert scaling.seed_effects(m[m.persona != "cold"]).empty
