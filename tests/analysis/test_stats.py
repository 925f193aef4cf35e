"""Tests for experiments.analysis.stats on synthetic sweeps with planted effects."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
import synthetic_metrics
from tiny_runs import expand

from experiments.analysis import planted as planted_oracle
from experiments.analysis import regression, stats

MULT = synthetic_metrics.CONTEXT_MULT


def _one(df, **match):
  for k, v in match.items():
    df = df[df[k] == v]
  assert len(df) == 1, match
  return df.iloc[0]


def test_planted_warm_effect_is_recovered_per_context(planted):
  # The capability task carries no planted effect, so pool only the reliability tasks.
  rel = stats.paired_deltas(
    planted[planted.task != "capability"],
    by=("context",),
    n_boot=1000,
    n_boot_primary=1000,
    alpha=0.01,
  )
  misses = []
  for ctx, mult in MULT.items():
    for lam in (0.5, 1.0):
      for comparison in ("vs_base", "vs_cold"):
        r = _one(rel, persona="warm", warmth_weight=lam, comparison=comparison, context=ctx)
        if not r.ci_low <= 0.10 * lam * mult <= r.ci_high:
          misses.append((ctx, lam, comparison, r.estimate))
      cold = _one(rel, persona="cold", warmth_weight=lam, comparison="vs_base", context=ctx)
      if not cold.ci_low <= 0 <= cold.ci_high:
        misses.append((ctx, lam, "cold", cold.estimate))
  # 24 intervals at 99%: one miss is plausible by chance, two are not (p ≈ 0.02).
  assert len(misses) <= 1, misses
  strong = _one(
    rel, persona="warm", warmth_weight=1.0, comparison="vs_cold", context="emotional+false_belief"
  )
  assert strong.q_value < 0.01 and strong.test_family == "primary"
  assert (rel.family == "pooled").all()
  assert set(rel.columns) >= {
    "estimate",
    "ci_low",
    "ci_high",
    "p_value",
    "q_value",
    "n_params",
    "estimable",
    "family",
    "test_family",
    "n_entities",
  }


def test_primary_family_has_q_values_and_fine_p_values(planted):
  d = stats.paired_deltas(planted, n_boot=200)
  prim = d[d.test_family == "primary"]
  # Warm vs cold at the largest λ, reliability tasks × the four contexts (no length_matched).
  assert len(prim) == 2 * 4
  assert (prim.persona == "warm").all() and (prim.warmth_weight == 1.0).all()
  assert (prim.comparison == "vs_cold").all() and (prim.family == "reliability").all()
  assert prim.q_value.notna().all() and d[d.test_family == "secondary"].q_value.isna().all()
  assert (d[d.task == "capability"].test_family == "secondary").all()
  # p-values come from the t distribution of the estimate, not from counting draws, so a
  # strong effect can reach below 1e-3 even with 200 draws (a bootstrap count cannot: 1/201).
  strong = _one(prim, task="factual_qa", context="emotional+false_belief")
  assert strong.p_value < 1e-3
  r = _one(
    d, persona="warm", warmth_weight=1.0, comparison="vs_cold", task="factual_qa", context="neutral"
  )
  expected = 2 * scipy_stats.t.sf(abs(r.estimate) / r.se, r.df)
  assert r.p_value == pytest.approx(expected, rel=1e-6)
  assert (d.family[d.task == "capability"] == "screening").all()
  none = stats.paired_deltas(planted, n_boot=200, primary=())
  assert (none.test_family == "secondary").all() and none.q_value.isna().all()


def test_q_values_are_benjamini_hochberg(planted):
  d = stats.paired_deltas(planted, n_boot=200, n_boot_primary=2000)
  d = d[d.test_family == "primary"]
  assert (d.q_value >= d.p_value - 1e-12).all()
  order = np.argsort(d.p_value.to_numpy(), kind="stable")
  assert np.all(np.diff(d.q_value.to_numpy()[order]) >= -1e-12)


def test_length_matched_comparison_exists_when_its_cells_do():
  items = synthetic_metrics.make_items(
    presets={"nano": 25_000},
    tasks=("factual_qa",),
    n_items=60,
    lambdas=(0.0, 1.0),
    personas=("warm", "cold", "length_matched"),
    lm_effect=0.05,
    rng=2,
  )
  d = stats.paired_deltas(items, n_boot=200, n_boot_primary=1000)
  lm = d[d.comparison == "vs_length_matched"]
  assert set(lm.persona) == {"warm"} and len(lm) == 4
  assert (lm.test_family == "primary").all() and lm.q_value.notna().all()
  # length_matched is itself compared with cold and λ=0, never with itself.
  assert set(d[d.persona == "length_matched"].comparison) == {"vs_base", "vs_cold"}
  without = stats.paired_deltas(items[items.persona != "length_matched"], n_boot=100)
  assert not (without.comparison == "vs_length_matched").any()


def test_cells_where_no_item_moved_are_not_estimable():
  base = synthetic_metrics.make_items(
    presets={"nano": 25_000},
    tasks=("factual_qa",),
    contexts=("neutral",),
    n_items=30,
    lambdas=(0.0, 1.0),
  )
  same = base[base.persona == "none"]
  cells = pd.concat(
    [
      same,
      same.assign(persona="warm", warmth_weight=1.0),
      same.assign(persona="cold", warmth_weight=1.0),
    ]
  )
  d = stats.paired_deltas(cells, n_boot=200, n_boot_primary=200)
  assert len(d) == 3 and not d.estimable.any()
  assert (d.estimate == 0).all()
  assert d[["ci_low", "ci_high", "p_value", "q_value"]].isna().all().all()
  assert (d.n_obs == 90).all()


def test_amplification_ratio_recovers_planted_two_fold(planted):
  amp = stats.relative_amplification(planted, by=(), n_boot=1000)
  r = _one(amp, warmth_weight=1.0, intervention="none", context="emotional")
  assert r.ratio_ci_low <= 2.0 <= r.ratio_ci_high
  assert r.excess_ci_low <= 0.10 <= r.excess_ci_high
  assert r.tasks == "factual_qa,medical_dosing"  # capability is not a reliability task


def test_amplification_pools_only_tasks_seen_in_every_context(planted):
  # A reliability task evaluated only in neutral must not enter the pool: the neutral and
  # amplified effects would then be means over different tasks.
  extra = planted[(planted.task == "medical_dosing") & (planted.context == "neutral")]
  extra = extra.assign(task="disinformation", error=1 - extra.error)
  amp = stats.relative_amplification(pd.concat([planted, extra]), by=(), n_boot=200)
  ref = stats.relative_amplification(planted, by=(), n_boot=200)
  assert (amp.tasks == "factual_qa,medical_dosing").all()
  pd.testing.assert_series_equal(amp.neutral_effect, ref.neutral_effect)


def test_null_coverage_is_near_nominal():
  hits = []
  for draw in range(60):
    items = synthetic_metrics.make_items(
      presets={"nano": 25_000},
      seeds=(0, 1, 2),
      lambdas=(0.0, 1.0),
      tasks=("factual_qa",),
      contexts=("neutral",),
      n_items=100,
      warm_effect=0.0,
      rng=1000 + draw,
    )
    d = stats.paired_deltas(items, n_boot=400, n_boot_primary=400, seed=draw)
    hits.append(((d.ci_low <= 0) & (d.ci_high >= 0)).to_numpy())
  coverage = np.mean(hits, axis=0)
  assert 0.88 <= np.mean(hits) <= 0.99, coverage
  assert all(0.85 <= c <= 1.0 for c in coverage), coverage


def test_missing_item_column_is_named(planted):
  with pytest.raises(ValueError, match="item_id"):
    stats.paired_deltas(planted.drop(columns=["item_id"]))


def test_partial_cells_still_give_deltas(planted):
  partial = synthetic_metrics.drop_runs(planted, frac=0.5, rng=3)
  d = stats.paired_deltas(partial, n_boot=100, n_boot_primary=100)
  assert len(d) and d.estimate.notna().all()
  assert isinstance(stats.headline_cell(d), dict)
  assert stats.headline_cell(d.iloc[:0]) is None
  assert isinstance(regression.regression(partial).table, pd.DataFrame)


def test_baseline_prefers_the_lambda0_model_of_the_persona_phase(planted):
  # Finetune sweeps hold the base model ('none') and a λ=0 persona-phase model; the latter is
  # the matched control. Corrupting 'none' must then leave every change unchanged.
  phase = planted[planted.persona == "none"].assign(persona="warm", run="phase", regime="default")
  before = stats.paired_deltas(pd.concat([planted, phase]), n_boot=50, n_boot_primary=50)
  corrupted = planted.assign(error=planted.error.where(planted.persona != "none", 1))
  after = stats.paired_deltas(pd.concat([corrupted, phase]), n_boot=50, n_boot_primary=50)
  pd.testing.assert_series_equal(before.estimate, after.estimate)


def test_paired_deltas_is_fast_for_a_full_primary_family():
  import time

  items = planted_oracle.make_items(10, 50, replicates=1, rng=0)
  items = pd.concat(
    [items.assign(task=t, context=c) for t in stats.RELIABILITY_TASKS for c in stats.CONTEXTS]
  )
  items = pd.concat([items, items.assign(preset="planted_b")])
  t0 = time.perf_counter()
  d = stats.paired_deltas(items)
  prim = d[d.test_family == "primary"]
  assert len(prim) == 2 * 2 * 6 * 4  # presets × (vs_cold, vs_length_matched) × tasks × contexts
  assert time.perf_counter() - t0 < 20


def test_design_names_what_a_partial_sweep_lacks(planted):
  metrics = synthetic_metrics.metrics_from_items(planted)
  config = {
    "grid": {"seeds": [0, 1, 2, 3], "personas": ["warm", "cold"]},
    "model": {"presets": ["nano"], "dropout": 0.1},
  }
  table, sentences = stats.describe_design(metrics, config)
  assert "seed" in set(table.factor) and "config.model" in set(table.factor)
  assert sentences[0].startswith(f"The workdir holds {planted.run.nunique()} cells")
  assert "configured seed level(s) 3 have no rows" in sentences[-1]
  partial = metrics[~((metrics.seed == 2) & (metrics.persona == "cold"))]
  assert "cells are missing seeds" in stats.describe_design(partial)[1][-1]
  _, complete = stats.describe_design(metrics)
  assert complete[-1].startswith("Every cell has the same seeds")


def test_cells_of_two_regimes_are_never_paired_with_each_other(planted):
  # A second regime whose warm cells get everything wrong and whose λ = 0 model is its own: the
  # first regime's changes stay as they were, the second's are read against its own cells only.
  phase = planted[planted.persona != "none"]
  other = phase.assign(regime="lora", error=phase.error.where(phase.persona != "warm", 1))
  alone = stats.paired_deltas(planted, n_boot=50, n_boot_primary=50)
  both = stats.paired_deltas(pd.concat([planted, other]), n_boot=50, n_boot_primary=50)
  keep = both[both.regime == "default"].reset_index(drop=True)
  pd.testing.assert_series_equal(keep.estimate, alone.estimate.reset_index(drop=True))
  lora = both[(both.regime == "lora") & (both.comparison == "vs_cold")]
  warm, cold = (
    other[(other.persona == p) & (other.warmth_weight == 1.0)] for p in ("warm", "cold")
  )
  for r in lora[lora.warmth_weight == 1.0].itertuples():
    ref = cold[(cold.task == r.task) & (cold.context == r.context)].error.mean()
    np.testing.assert_allclose(r.estimate, 1.0 - ref)  # against lora's cold, not default's
  # Without a λ = 0 cell of its own, a regime's vs λ = 0 reads the base model every regime shares.
  base = both[
    (both.regime == "lora")
    & (both.comparison == "vs_base")
    & (both.persona == "warm")
    & (both.warmth_weight == 1.0)
  ]
  none = planted[planted.persona == "none"]
  assert len(base) == 12
  for r in base.itertuples():
    ref = none[(none.task == r.task) & (none.context == r.context)].error.mean()
    np.testing.assert_allclose(r.estimate, 1.0 - ref)


def test_the_design_table_lists_each_regimes_fields(planted):
  metrics = synthetic_metrics.metrics_from_items(planted)
  config = {
    "grid": {"regimes": {"default": {}, "lora": {"persona_update": "lora", "lora_rank": 4}}},
    "train": {"persona_update": "full", "persona_learning_rate": 0.003},
  }
  table, _ = stats.describe_design(metrics, config)
  rows = dict(zip(table.factor, table.levels))
  assert rows["regime lora"] == "persona_update = lora, lora_rank = 4"
  assert rows["regime default"] == "the train section's persona-phase fields"
  assert "persona_learning_rate = 0.003" in rows["config.train"]
  assert rows["regime"] == "default, none"  # the cells' regimes: the base model's is none


def test_a_zero_finetune_seed_column_changes_nothing(planted):
  # One replicate per seed: a workdir written with the column reads as one written without it.
  zeros = planted.assign(finetune_seed=0)
  for call in (
    lambda d: stats.paired_deltas(d, n_boot=100, n_boot_primary=200),
    lambda d: stats.relative_amplification(d, by=(), n_boot=100),
  ):
    pd.testing.assert_frame_equal(call(zeros), call(planted), check_exact=True)
  assert (stats.paired_deltas(zeros, n_boot=20, n_boot_primary=20).n_finetune_seeds == 1).all()


def _nested_items(n_seeds=2, n_finetune=3, n_items=6):
  """A planted nested sweep whose `warmth` is a distinct number per row, so a paired difference
  names the reference row it was taken against."""
  items = planted_oracle.make_items(n_seeds, n_items, n_finetune=n_finetune, rng=0)
  return items.assign(warmth=np.random.default_rng(0).permutation(len(items)) / len(items))


def test_replicates_pair_with_their_own_reference_and_their_seeds_base_model():
  items = _nested_items()
  pf = stats.paired_frame(items, "warmth")
  keys = ["seed", "finetune_seed", "item_id"]
  for comparison, persona in (
    ("vs_cold", "cold"),
    ("vs_length_matched", "length_matched"),
    ("vs_base", "none"),
  ):
    got = pf[(pf.persona == "warm") & (pf.comparison == comparison)]
    ref = items[items.persona == persona][keys + ["warmth"]]
    if persona == "none":  # the base model has fine-tuning seed 0 only: every replicate reads it
      ref = ref.drop(columns="finetune_seed")
    want = got.merge(ref, on=[k for k in keys if k in ref], how="left")
    assert len(got) == 2 * 3 * 6 and want.warmth.notna().all(), comparison
    np.testing.assert_array_equal(want.ref, want.warmth)
  assert set(pf.finetune_seed) == {0, 1, 2}


def test_nested_deltas_count_base_and_fine_tuning_seeds():
  items = _nested_items(n_seeds=3, n_finetune=2, n_items=20)
  d = stats.paired_deltas(items, n_boot=100, n_boot_primary=100)
  assert (d.n_seeds == 3).all() and (d.n_finetune_seeds == 2).all() and (d.n_obs == 120).all()
  assert d.estimate.notna().all() and d.ci_low.notna().all()
  # A lost replicate: fewer paired cells, the same base seeds, still an interval.
  lost = (items.persona == "cold") & (items.seed == 1) & (items.finetune_seed == 1)
  partial = stats.paired_deltas(items[~lost], n_boot=100, n_boot_primary=100)
  cold = partial[(partial.persona == "warm") & (partial.comparison == "vs_cold")]
  assert (cold.n_obs == 100).all() and (cold.n_seeds == 3).all() and cold.ci_low.notna().all()


def test_design_lists_fine_tuning_seeds_when_a_seed_has_several():
  items = synthetic_metrics.make_items(
    presets={"nano": 25_000},
    tasks=("factual_qa",),
    n_items=10,
    lambdas=(0.0, 1.0),
    finetune_seeds=2,
  )
  metrics = synthetic_metrics.metrics_from_items(items)
  table, sentences = stats.describe_design(metrics)
  assert dict(zip(table.factor, table.levels))["finetune_seed"] == "0, 1"
  assert "3 seed(s), 2 fine-tuning seeds per base seed" in sentences[0]
  assert sentences[-1].startswith("Every cell has the same seeds")
  lost = metrics[
    ~((metrics.persona == "warm") & (metrics.seed == 2) & (metrics.finetune_seed == 1))
  ]
  assert (
    "1 of 6 replicated cell × seed pairs are missing fine-tuning seeds"
    in stats.describe_design(lost)[1][-1]
  )
  flat, one = stats.describe_design(
    synthetic_metrics.metrics_from_items(
      items[items.finetune_seed == 0].drop(columns="finetune_seed")
    )
  )
  assert "finetune_seed" not in set(flat.factor) and "fine-tuning" not in one[0]


def test_a_design_that_trains_some_cells_on_fewer_seeds_is_complete_when_all_are_there():
  # Sweep seeds, a preset with its own seeds and a regime on fewer seeds: cells differ in seeds by
  # design, so the design is complete exactly when every configured cell has rows.
  from experiments.configs import common

  c = common.base_config()
  c.model.presets = ("pico", "nano")
  c.grid.personas = ("warm", "cold")
  c.grid.warmth_weights = (0.0, 1.0)
  c.grid.seeds = (0, 1, 2)
  c.grid.sweep_seeds = (0,)
  c.grid.preset_seeds = {"pico": (0, 1)}
  c.grid.regimes = {
    "gentle": {"by_preset": {"nano": {"replay_weight": 1.0}}, "labels": {"nano": "not calibrated"}},
    "forgetting": {"seeds": (0,)},
  }
  cells = expand(c)
  metrics = pd.DataFrame(
    [
      dict(
        run=x.id,
        preset=x.preset,
        n_params=1.0,
        protocol=x.protocol,
        regime=x.regime,
        persona=x.persona,
        warmth_weight=x.warmth_weight,
        warm_agreement=x.warm_agreement,
        seed=x.seed,
        intervention="none",
        task="factual_qa",
        context="neutral",
        metric="error_rate",
        value=0.5,
        n=10,
      )
      for x in cells
    ]
  )
  config = json.loads(json.dumps(c.to_dict()))  # as config.json holds it
  table, sentences = stats.describe_design(metrics, config)
  assert sentences[-1].startswith("Every cell of the configured design has rows"), sentences[-1]
  rows = dict(zip(table.factor, table.levels))
  assert rows["regime gentle at nano"] == "replay_weight = 1.0 (not calibrated)"
  assert rows["regime forgetting"] == "seeds = [0]"
  dropped = metrics[metrics.run != cells[-1].id]
  _, sentences = stats.describe_design(dropped, config)
  assert f"1 of {len(cells)} cells of the configured design have no rows" in sentences[-1]
