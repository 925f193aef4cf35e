"""Tests for the planted oracle and the coverage of paired_deltas intervals on it."""

import numpy as np
import pytest

from experiments.analysis import crossed, planted, stats


def test_planted_items_have_the_items_csv_shape():
  items = planted.make_items(3, 20, replicates=2, rng=0)
  assert set(stats.CELL + ["seed", "task", "context", "item_id", "error"]) <= set(items.columns)
  assert set(items.persona) == {"none", "warm", "cold", "length_matched"}
  assert set(items.warmth_weight) == {0.0, 1.0}
  assert set(items.preset) == {"planted0", "planted1"}
  assert (items.intervention == "none").all() and (items.protocol == "finetune").all()
  assert len(items) == 2 * 4 * 3 * 20 and set(items.error) <= {0, 1}
  # Items cluster by entity (several items per person) and are the same for every seed.
  one = items[(items.preset == "planted0") & (items.persona == "warm")]
  ents = {crossed.item_entity(i) for i in one.item_id}
  assert 1 < len(ents) < 20
  assert one.groupby("seed").item_id.apply(tuple).nunique() == 1


def test_planted_difference_is_exactly_the_planted_one_in_expectation():
  items = planted.make_items(4, 50, replicates=200, rng=1, p_warm=0.45, p_cold=0.30)
  rate = items.groupby("persona").error.mean()
  n = 200 * 4 * 50
  se = np.sqrt(2 * 0.25 / n)
  assert abs(rate.warm - rate.cold - 0.15) < 4 * se
  assert abs(rate["none"] - planted.PLANTED["p_base"]) < 4 * se


def test_planted_item_effects_persist_across_seeds():
  # Item difficulty, and whether warm training breaks an item, are shared by seeds: per-item
  # rates correlate between two halves of the seeds, for the error and for warm − cold.
  items = planted.make_items(40, 60, rng=2)
  per = items.assign(half=items.seed < 20).groupby(["persona", "half", "item_id"]).error.mean()
  for persona in ("cold", "warm"):
    assert np.corrcoef(per[persona, True], per[persona, False])[0, 1] > 0.5
  diff = {h: per["warm", h] - per["cold", h] for h in (True, False)}
  assert np.corrcoef(diff[True], diff[False])[0, 1] > 0.3


def test_nested_planted_items_replicate_the_persona_cells_only():
  items = planted.make_items(3, 20, replicates=2, n_finetune=4, rng=0)
  per_seed = items.groupby(["preset", "persona", "seed"]).finetune_seed.nunique()
  assert (per_seed.drop("none", level="persona") == 4).all()
  assert (items[items.persona == "none"].finetune_seed == 0).all()
  assert len(items) == 2 * (3 * 20 + 3 * 3 * 4 * 20)
  # Every replicate sees the same items, and the expected rates are still the planted ones
  # (the base model, with no fine-tuning term, too).
  one = items[(items.preset == "planted0") & (items.persona == "warm")]
  assert one.groupby(["seed", "finetune_seed"]).item_id.apply(tuple).nunique() == 1
  many = planted.make_items(
    4, 50, replicates=100, n_finetune=2, rng=1, p_warm=0.45, p_cold=0.30, finetune_weight=0.5
  )
  rate = many.groupby("persona").error.mean()
  se = np.sqrt(2 * 0.25 / (100 * 4 * 2 * 50))
  assert abs(rate.warm - rate.cold - 0.15) < 4 * se
  assert abs(rate["none"] - planted.PLANTED["p_base"]) < 8 * se


def test_the_fine_tuning_shift_separates_replicates_of_one_seed():
  # Replicate means of one base seed differ by the fine-tuning shift, beyond sampling noise.
  def spread(weight):
    items = planted.make_items(20, 200, n_finetune=2, rng=4, finetune_weight=weight)
    cold = items[items.persona == "cold"].groupby(["seed", "finetune_seed"]).error.mean()
    return cold.groupby("seed").std().mean()

  assert spread(0.5) > 3 * spread(0.0)


def test_impossible_planted_parameters_are_refused():
  with pytest.raises(ValueError, match="leaves"):
    planted.make_items(2, 10, p_cold=0.0)
  with pytest.raises(ValueError, match="leaves"):
    planted.make_items(2, 10, entity_weight=0.8, item_weight=0.8)
  with pytest.raises(ValueError, match="finetune_weight"):
    planted.make_items(2, 10, entity_weight=0.7, finetune_weight=0.8)


def _independent_bootstrap_ci(diff_SI, n_boot, rng):
  """95% CI of the mean when every (seed, item) difference is resampled as if independent: the
  analysis that ignores that every seed sees the same items."""
  flat = diff_SI.ravel()
  draws = flat[rng.integers(0, flat.size, (n_boot, flat.size))].mean(axis=1)
  return np.percentile(draws, [2.5, 97.5])


def test_intervals_that_ignore_the_crossing_would_be_caught():
  # On the planted sweeps, resampling (seed, item) pairs independently must under-cover while
  # paired_deltas covers: otherwise the coverage check could not tell right from wrong.
  items = planted.make_items(10, 50, replicates=150, rng=3)
  truth = planted.PLANTED["p_warm"] - planted.PLANTED["p_cold"]
  d = stats.paired_deltas(items, n_boot=300, n_boot_primary=300, primary=())
  d = d[(d.persona == "warm") & (d.comparison == "vs_cold")]
  crossed = ((d.ci_low <= truth) & (truth <= d.ci_high)).mean()
  rng, hits = np.random.default_rng(0), []
  for _, g in items[items.persona.isin(["warm", "cold"])].groupby("preset"):
    e = g.pivot_table(index=["seed", "item_id"], columns="persona", values="error")
    diff_SI = (e.warm - e.cold).unstack("item_id").to_numpy()
    lo, hi = _independent_bootstrap_ci(diff_SI, 300, rng)
    hits.append(lo <= truth <= hi)
  naive = np.mean(hits)
  assert naive < 0.88 and 0.92 <= crossed, (naive, crossed)


def test_coverage_reports_width_bias_and_estimability():
  out = planted.coverage(3, 20, replicates=30, seed=5)
  assert out["replicates"] == 30 and out["truth"] == pytest.approx(0.08)
  assert 0 <= out["coverage"] <= 1 and out["mean_ci_width"] > 0
  assert abs(out["bias"]) < 0.05 and out["not_estimable"] == 0
  table = planted.coverage_table(sizes=((2, 10), (2, 3, 10)), replicates=10)
  assert list(table.columns[:6]) == [
    "seeds",
    "items",
    "replicates",
    "truth",
    "coverage",
    "mean_ci_width",
  ]
  assert list(table.finetune_seeds) == [1, 3] and (table.replicates == 10).all()


@pytest.mark.slow
def test_planted_coverage_is_nominal_at_three_sizes():
  table = planted.coverage_table(seed=0)
  assert list(zip(table.seeds, table["items"])) == [(2, 12), (5, 25), (10, 50)]
  assert (table.replicates >= 400).all()
  assert table.coverage.between(0.92, 0.98).all(), table
  assert (table.bias.abs() < 0.01).all(), table


@pytest.mark.slow
def test_planted_coverage_is_nominal_in_nested_designs():
  # The seeds the module's table uses for these rows (after the designs without nesting).
  table = planted.coverage_table(planted.NESTED_SIZES, seed=len(planted.SIZES))
  assert list(zip(table.seeds, table.finetune_seeds, table["items"])) == [(3, 2, 12), (4, 3, 25)]
  assert (table.replicates >= 400).all()
  assert table.coverage.between(0.92, 0.98).all(), table
  assert (table.bias.abs() < 0.01).all(), table
