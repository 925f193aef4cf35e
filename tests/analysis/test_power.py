"""Tests for experiments.analysis.power's choice between base and fine-tuning seeds, and the report
section that shows it."""

import pytest
import synthetic_metrics

from experiments.analysis import power, stats, study_report


def _components(seed, finetune):
  """crossed_components-shaped variance components of 4 base seeds × 2 fine-tuning seeds × 40
  items."""
  return dict(
    n_seeds=4,
    n_finetune=2,
    n_clusters=40,
    n_items=40,
    seed=seed,
    finetune=finetune,
    seed_item=0.0,
    cluster=0.0,
    item=0.01,
    resid=0.05,
  )


def test_the_next_replicate_goes_where_the_variance_is():
  # Base models cost as much as ten persona cells: more base seeds pay only where the base seeds'
  # variance is, which more fine-tuning seeds of the same base models cannot average out.
  costs = dict(persona_cells=1, base_cost=10.0, persona_cost=1.0)
  seeds = power.next_replicate(_components(seed=0.05, finetune=0.0), **costs)
  finetune = power.next_replicate(_components(seed=0.0, finetune=0.05), **costs)
  assert seeds["add"] == "base seed" and finetune["add"] == "fine-tuning seed"
  assert seeds["hw_next_finetune"] > seeds["hw_next_seed"]
  # The cost model: a base seed is a base model and F replicates' persona cells, a fine-tuning
  # seed per base seed S replicates' persona cells.
  out = power.next_replicate(
    _components(0.01, 0.01), persona_cells=6, base_cost=3.0, persona_cost=0.5
  )
  assert out["cost_next_seed"] == pytest.approx(3.0 + 2 * 6 * 0.5)
  assert out["cost_next_finetune"] == pytest.approx(4 * 6 * 0.5)


def _sweep(finetune_seeds):
  return synthetic_metrics.make_items(
    presets={"nano": 25_000},
    tasks=("factual_qa", "medical_dosing"),
    n_items=40,
    lambdas=(0.0, 1.0),
    finetune_seeds=finetune_seeds,
    seed_sd=0.05,
    rng=3,
  )


def test_projection_splits_base_and_fine_tuning_seed_variance():
  # Each replicate's training noise moves its warm and cold cells apart (synthetic seed_sd),
  # while the seed's shift is common to both: warm − cold varies by fine-tuning seed.
  nested = power.projected_half_widths(_sweep(3))
  shares = nested[list(power.SOURCES)]
  assert (shares.sum(axis=1) - 1).abs().max() < 1e-9
  assert (nested.share_finetune > nested.share_seed).all()
  assert (nested.n_seeds == 3).all() and (nested.n_finetune_seeds == 3).all()
  # Persona cells per replicate: warm and cold at λ = 1 (λ = 0 is the base model alone).
  assert power.persona_cells_per_replicate(_sweep(3))["nano"] == 2
  assert (nested.cost_next_seed == 1 + 3 * 2).all() and (nested.cost_next_finetune == 3 * 2).all()
  flat = power.projected_half_widths(_sweep(1))
  assert (flat.share_finetune == 0).all() and (flat.n_finetune_seeds == 1).all()


@pytest.mark.parametrize("finetune_seeds", [1, 3])
def test_the_power_section_shows_the_split_and_what_to_add(finetune_seeds):
  items = _sweep(finetune_seeds)
  deltas = stats.paired_deltas(items, n_boot=100, n_boot_primary=100)
  doc, summary = [], []
  study_report.power_section(deltas, items, 100, doc, summary)
  table = next(b[1] for b in doc if b[0] == "table" and "add next" in b[1])
  assert set(table["add next"]) <= {"base seed", "fine-tuning seed"} and len(table) == 4
  advice = [s for s in summary if s.startswith("Per added trained model")]
  if finetune_seeds == 1:  # not separable: said in the text, no advice in the summary
    assert (table["fine-tuning seeds"] == "in base seeds").all() and not advice
  else:
    assert table["fine-tuning seeds"].str.endswith("%").all()
    assert len(advice) == 1 and "3 base seeds with 3 fine-tuning seeds each" in advice[0]


def test_the_power_verdict_is_given_per_preset():
  import pandas as pd

  columns = lambda hw, far: {
    "half_width": hw,
    "n_seeds": 3,
    power.hw_column(5, 1): far,
    power.hw_column(5, 2): far,
    power.hw_column(20, 1): far,
    power.hw_column(20, 2): hw / 4,
  }
  pooled = pd.DataFrame(
    [dict(preset="nano", **columns(0.02, 0.02)), dict(preset="micro", **columns(0.10, 0.09))]
  )
  per_task = pd.DataFrame(
    [dict(preset="nano", **columns(0.05, 0.05)), dict(preset="micro", **columns(0.24, 0.20))]
  )
  verdicts = [
    study_report._power_verdict(
      p, pooled[pooled.preset == p], per_task[per_task.preset == p], (5, 20), (1, 2)
    )
    for p in ("nano", "micro")
  ]
  assert verdicts[0].startswith("Power targets") and "met at nano" in verdicts[0]
  assert "±2.0" in verdicts[0] and "±5.0" in verdicts[0]
  assert "not met at micro" in verdicts[1] and "with 20 seeds and 2× the items" in verdicts[1]
  per_task.loc[1, power.hw_column(20, 2)] = 0.5  # no projected design meets the task target
  assert "nor by any projected design up to 20 seeds" in study_report._power_verdict(
    "micro", pooled[pooled.preset == "micro"], per_task[per_task.preset == "micro"], (5, 20), (1, 2)
  )
