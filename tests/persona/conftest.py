"""Fixtures the persona tests share."""

import numpy as np
import pytest


@pytest.fixture(scope="session")
def unit():
  """unit(seed, d=32): a random unit vector, the direction a test plants and then recovers."""

  def make(seed, d=32):
    u = np.random.default_rng(seed).normal(size=d)
    return u / np.linalg.norm(u)

  return make
