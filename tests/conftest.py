"""Fixtures shared by test modules."""
import pytest

import synthetic_metrics


@pytest.fixture(scope='session')
def planted():
  """items.csv rows of one preset, 3 seeds, λ ∈ {0, 0.5, 1}, with a planted warm effect of 10
  points × the context multiplier (synthetic_metrics.CONTEXT_MULT) on the reliability tasks."""
  return synthetic_metrics.make_items(
      presets={'nano': 25_000}, tasks=('factual_qa', 'medical_dosing', 'capability'),
      n_items=150, warm_effect=0.10, rng=1)
