"""Tests for experiments.persona.tradeoff: the capping trade-off on planted items, and its words."""

import types

import numpy as np
import pandas as pd
import pytest
import synthetic_metrics

from experiments.persona import tables, tradeoff


def _clamped_rows(items, share_by_percentile):
  """cap_clamped_share metrics rows as the persona extension writes them, one per run and setting:
  the warm top-λ runs get `share_by_percentile`, every other run 1.0 (which must not count)."""
  top = items.warmth_weight.max()
  runs = items[items.intervention == "none"].drop_duplicates("run")
  rows = []
  for r in runs.itertuples():
    for label in sorted(set(items.intervention) - {"none"}):
      warm = r.persona == "warm" and r.warmth_weight == top
      value = share_by_percentile[tradeoff._percentile_in(label)] if warm else 1.0
      rows.append(
        dict(
          run=r.run,
          preset=r.preset,
          n_params=r.n_params,
          protocol=r.protocol,
          persona=r.persona,
          warmth_weight=r.warmth_weight,
          warm_agreement=r.warm_agreement,
          seed=r.seed,
          intervention=label,
          task="persona_geometry",
          context="all",
          metric="cap_clamped_share",
          value=value,
          n=50,
        )
      )
  return pd.DataFrame(rows)


def test_capping_table_matches_planted_shares():
  items = synthetic_metrics.make_items(
    presets={"nano": 25_000},
    tasks=("factual_qa", "capability"),
    n_items=200,
    capping=True,
    lambdas=(0.0, 1.0),
  )
  shares = {25: 0.6, 50: 0.3, 75: 0.1}
  metrics = synthetic_metrics.metrics_from_items(items)
  metrics = pd.concat([metrics, _clamped_rows(items, shares)], ignore_index=True)
  table = tradeoff.capping_table(items, 200, metrics=metrics).set_index("percentile")
  assert list(table.kind.unique()) == ["cap"]
  assert (table.n_params == 25_000).all() and (table.warmth_weight == 1.0).all()
  assert (table.n_seeds == 3).all()
  assert table.loc[25.0, "recovery_share"] == pytest.approx(0.8, abs=0.25)
  assert table.loc[25.0, "error_recovered"] > table.loc[75.0, "error_recovered"] > 0
  assert table.loc[25.0, "capability_lost"] == pytest.approx(0.06, abs=0.05)
  for p, share in shares.items():
    assert table.loc[float(p), "clamped_share"] == pytest.approx(share)
  # The share is the error recovered over the warm − cold gap of the same (uncapped) items.
  np.testing.assert_allclose(table.recovery_share, table.error_recovered / table.warm_cold_gap)
  assert (table.warm_cold_gap > 0.1).all()  # the planted warm effect, pooled over contexts
  assert tradeoff.capping_table(items, 200).clamped_share.isna().all()  # no metrics: no share


def test_capping_table_gives_the_same_intervals_wherever_it_is_called():
  items = synthetic_metrics.make_items(
    presets={"nano": 25_000},
    tasks=("factual_qa", "capability"),
    n_items=30,
    capping=True,
    lambdas=(0.0, 1.0),
  )
  a = tradeoff.capping_table(items, 50)
  b = tradeoff.capping_table(items, 50)
  pd.testing.assert_frame_equal(a, b)


def test_no_interventions_gives_an_empty_table():
  items = synthetic_metrics.make_items(presets={"nano": 25_000}, tasks=("factual_qa",), n_items=20)
  table = tradeoff.capping_table(items, 50)
  assert table.empty and list(table.columns) == tradeoff.COLUMNS


def _row(recovered, lo, hi, share=np.nan):
  return types.SimpleNamespace(
    error_recovered=recovered,
    error_recovered_ci_low=lo,
    error_recovered_ci_high=hi,
    recovery_share=share,
    capability_lost=0.003,
    capability_lost_ci_low=-0.019,
    capability_lost_ci_high=0.024,
    safety_lost=-0.039,
    safety_lost_ci_low=-0.06,
    safety_lost_ci_high=-0.01,
  )


def test_words_never_recover_a_negative_amount():
  worse = tradeoff.tradeoff_in_words(_row(-0.019, -0.030, -0.008, share=-0.35))
  assert worse.startswith(
    "raised reliability error in the warm cells by 1.9 points "
    "(95% CI +0.8 to +3.0), widening the warm − cold gap by 35%"
  )
  assert "recover" not in worse and "-" not in tradeoff.recovery_in_words(
    _row(-0.019, -0.030, -0.008, share=-0.35)
  )
  assert "raised capability error by 0.3 points (95% CI -1.9 to +2.4)" in worse
  assert "lowered safety_refusal error by 3.9 points (95% CI +1.0 to +6.0)" in worse
  better = tradeoff.recovery_in_words(_row(0.012, -0.002, 0.029, share=0.8))
  assert better == (
    "lowered reliability error in the warm cells by 1.2 points "
    "(95% CI -0.2 to +2.9), 80% of the warm − cold gap"
  )
  assert tradeoff.recovery_in_words(_row(np.nan, np.nan, np.nan)).endswith("not estimable")


def test_the_console_table_says_what_its_signs_mean(tmp_path):
  items = synthetic_metrics.make_items(
    presets={"nano": 25_000}, n_items=20, capping=True, lambdas=(0.0, 1.0)
  )
  config = types.SimpleNamespace(eval=types.SimpleNamespace(bootstrap=50))
  options = types.SimpleNamespace(max_capability_loss=0.05, intervention_on="both")
  _, text = tables.summarize(
    config, options, str(tmp_path), items, synthetic_metrics.metrics_from_items(items)
  )
  assert "+ = the intervention lowered error, − = it made error worse" in text
  chosen = next(l for l in text.splitlines() if l.strip().startswith("chosen for nano"))
  assert "reliability error in the warm cells by" in chosen
  saved = pd.read_csv(tmp_path / "persona" / "capping_tradeoff.csv")
  assert list(saved.columns) == tradeoff.COLUMNS


def test_capping_is_tabled_per_regime_and_never_pairs_across_regimes():
  # Two regimes fine-tune the same base models: in `gentle` warm errs 10 points more than cold
  # and capping recovers most of it; in `forgetting` warm errs 30 points more. Each regime's row
  # must read its own cells only (pairing a capped gentle cell with an uncapped forgetting one
  # would mix the two).
  kw = dict(
    presets={"nano": 25_000},
    tasks=("factual_qa", "capability"),
    n_items=150,
    capping=True,
    lambdas=(0.0, 1.0),
  )
  gentle = synthetic_metrics.make_items(warm_effect=0.10, rng=1, **kw)
  forgetting = synthetic_metrics.make_items(warm_effect=0.30, rng=1, **kw)
  tag = lambda d, r: d.assign(regime=np.where(d.persona == "none", "none", r))
  both = pd.concat(
    [tag(gentle, "gentle"), tag(forgetting[forgetting.persona != "none"], "forgetting")],
    ignore_index=True,
  )
  table = tradeoff.capping_table(both, 200)
  assert list(dict.fromkeys(table.regime)) == ["gentle", "forgetting"]
  alone = tradeoff.capping_table(tag(gentle, "gentle"), 200)
  assert alone.regime.unique().tolist() == ["gentle"]
  by = table.set_index(["regime", "percentile"])
  np.testing.assert_allclose(
    by.loc["gentle"].warm_cold_gap, alone.set_index("percentile").warm_cold_gap
  )
  assert (by.loc["forgetting"].warm_cold_gap > by.loc["gentle"].warm_cold_gap + 0.1).all()
  assert (by.loc["forgetting"].error_recovered > by.loc["gentle"].error_recovered).all()
  # The defaults are chosen on the primary (first) regime alone.
  chosen = tradeoff.choose(table, 0.05)
  assert set(chosen) == {"nano"} and chosen["nano"]["regime"] == "gentle"
