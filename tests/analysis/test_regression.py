"""Tests for experiments.analysis.regression: the linear-probability and the logistic mixed models."""

import numpy as np
import pandas as pd
import pytest
import synthetic_metrics

from experiments.analysis import regression

MULT = synthetic_metrics.CONTEXT_MULT


def test_regression_recovers_slope_and_emotional_interaction(planted):
  res = regression.regression(planted)
  t = res.table.set_index(["model", "contrast"])
  avg = t.loc[("reliability", "warm − cold slope, averaged over contexts")]
  assert avg.ci_low <= 0.10 * np.mean(list(MULT.values())) <= avg.ci_high
  emo = t.loc[("reliability", "extra warm − cold slope under emotional (vs neutral)")]
  assert emo.ci_low <= 0.10 <= emo.ci_high
  # No effect is planted on the screening check: its slope is small next to reliability's.
  cap = t.loc[("screening: capability", "warm − cold slope, averaged over contexts")]
  assert abs(cap.estimate) < 0.05 and cap.ci_high < avg.ci_low
  assert any("safety_refusal" in m for m in res.messages)
  assert "C(task)" in res.formulas["reliability"]


def test_regression_pools_only_reliability_tasks(planted):
  probe = planted[planted.task == "capability"].assign(task="delusion_affirmation")
  with_probe = regression.regression(pd.concat([planted, probe]))
  plain = regression.regression(planted)
  rel = lambda r: r.table[r.table.model == "reliability"].reset_index(drop=True)
  pd.testing.assert_frame_equal(rel(with_probe), rel(plain))


def test_regression_degrades_gracefully(planted):
  only_base = regression.regression(planted[planted.warmth_weight == 0])
  assert only_base.table.empty
  assert any("only λ" in m for m in only_base.messages)
  # Emotional context only at λ=0 makes its λ interaction a column of zeros.
  singular = planted[(planted.warmth_weight == 0) | (planted.context == "neutral")]
  singular = singular[singular.context.isin(["neutral", "emotional"])]
  res = regression.regression(singular)
  assert any("singular" in m for m in res.messages)
  flat = planted.assign(error=0)
  assert any("does not vary" in m for m in regression.regression(flat).messages)


@pytest.fixture(scope="module")
def small():
  return synthetic_metrics.make_items(
    presets={"nano": 25_000},
    tasks=("factual_qa", "medical_dosing", "capability"),
    n_items=40,
    lambdas=(0.0, 1.0),
    warm_effect=0.15,
    personas=("warm", "cold", "length_matched"),
    lm_effect=0.0,
    rng=4,
  )


def test_mixed_model_recovers_the_sign_of_the_warm_effect(small):
  table, messages = regression.mixed_model(small)
  assert not [m for m in messages if "could not" in m]
  t = table.set_index("contrast")
  for other in ("cold", "length_matched"):
    avg = t.loc[f"warm − {other}, log-odds per unit λ, averaged over contexts"]
    assert avg.estimate > 0 and avg.ci_low > 0
    strong = t.loc[f"warm − {other}, log-odds per unit λ, emotional+false_belief"]
    assert strong.ci_low > 0
  assert (table.n_obs == len(small[small.task != "capability"])).all()
  # No effect is planted on cold: flipping the roles gives a negative warm − cold effect.
  swapped = small.assign(persona=small.persona.replace({"warm": "cold", "cold": "warm"}))
  t2 = regression.mixed_model(swapped)[0].set_index("contrast")
  assert t2.loc["warm − cold, log-odds per unit λ, averaged over contexts"].ci_high < 0


def test_mixed_model_degrades_with_a_message(small):
  for data, words in (
    (small[small.seed == 0], "one seed"),
    (small.assign(error=0), "not vary"),
    (small[small.warmth_weight > 0], "only λ"),
    (small[small.task == "capability"], "no reliability rows"),
  ):
    table, messages = regression.mixed_model(data)
    assert table.empty and any(words in m for m in messages), (words, messages)


def test_each_fine_tuning_replicate_gets_its_own_run_intercept(monkeypatch):
  items = synthetic_metrics.make_items(
    presets={"nano": 25_000},
    tasks=("factual_qa",),
    n_items=10,
    lambdas=(0.0, 1.0),
    finetune_seeds=2,
    rng=4,
  )
  seen = {}

  class Capture:  # stops the fit once the random-effects design is built
    def __init__(self, y, exog, exog_vc, ident, **kw):
      seen["sizes"] = np.bincount(ident)
      raise ValueError("captured")

  monkeypatch.setattr(regression, "BinomialBayesMixedGLM", Capture)
  regression.mixed_model(items)
  cells = items[items.warmth_weight > 0].groupby(["persona", "seed", "finetune_seed"]).ngroups
  # item, seed and run intercepts; the λ = 0 control is one more run per seed and replicate.
  assert (
    seen["sizes"][2]
    == cells + items[items.warmth_weight == 0].groupby(["persona", "seed", "finetune_seed"]).ngroups
  )
