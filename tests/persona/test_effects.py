"""persona/effects.py: the λ slope and per-base-seed averaging of projection effects."""

import jax
import numpy as np
import pandas as pd
import pytest

from experiments.persona import effects, vectors

jax.config.update("jax_numpy_rank_promotion", "raise")


def test_lambda_slope_recovers_a_planted_slope():
  rows = []
  for seed in (0, 1):
    for lam in (0.0, 0.5, 1.0):
      for item in range(10):
        for ctx in ("neutral", "emotional"):
          value = item + (2.0 * lam if ctx == "emotional" else 0.0)
          rows.append(
            dict(
              preset="nano",
              protocol="finetune",
              run=f"r{lam}{seed}",
              persona="warm",
              warmth_weight=lam,
              warm_agreement=0.0,
              seed=seed,
              intervention="none",
              task="t",
              item_id=str(item),
              context=ctx,
              **{f"proj_{v}_l0": value for v in vectors.VECTORS},
            )
          )
  got = pd.DataFrame(effects.lambda_slope_rows(pd.DataFrame(rows), 100, np.random.default_rng(0)))
  drift = got[(got.metric == "drift_slope_vs_lambda[axis]") & (got.context == "emotional")]
  np.testing.assert_allclose(drift.value, 2.0)
  flat = got[(got.metric == "projection_slope_vs_lambda[axis]") & (got.context == "neutral")]
  np.testing.assert_allclose(flat.value, 0.0, atol=1e-12)


def test_fine_tuning_replicates_are_averaged_within_their_base_seed_not_dropped():
  # Two base seeds, two fine-tuning replicates each: per base seed the replicates' mean is 1 and 3,
  # so the estimate is 2; keeping only one replicate per seed (an overwrite) would give 3 or 1.
  values = {(0, 0): 0.0, (0, 1): 2.0, (1, 0): 2.0, (1, 1): 4.0}
  frame = pd.DataFrame(
    [
      dict(seed=s, finetune_seed=k, task="factual_qa", item_id=f"factual_qa/p{i}/x", diff=v)
      for (s, k), v in values.items()
      for i in range(5)
    ]
  )
  est, lo, hi = effects.boot_mean(frame, "diff", 200, np.random.default_rng(0))
  assert est == pytest.approx(2.0) and lo <= 2.0 <= hi
