"""The mechanism decomposition and the power figures, on items whose effects are known."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import synthetic_metrics

from experiments.analysis import competence, mechanism, power


@pytest.fixture(scope="module")
def items():
  """Base, warm, cold and length_matched at λ = 1 (warm +10, length_matched +4 points planted),
  plus warm_after made of the cold rows and a warm ρ = 1 cell made of the length_matched rows, so
  every part has a value the test knows exactly."""
  d = synthetic_metrics.make_items(
    presets={"nano": 25_000, "micro": 150_000},
    tasks=("factual_qa", "misconception"),
    n_items=80,
    lambdas=(0.0, 1.0),
    personas=("warm", "cold", "length_matched"),
    warm_effect=0.10,
    lm_effect=0.04,
    rng=3,
  )
  after = d[d.persona == "cold"].assign(persona="warm_after")
  agree = d[d.persona == "length_matched"].assign(persona="warm", warm_agreement=1.0)
  return pd.concat([d, after, agree], ignore_index=True)


def _part(table, preset, context, name):
  return table[
    (table.preset == preset) & (table.context == context) & table.part.str.startswith(name)
  ].iloc[0]


def test_parts_add_up_and_each_contrast_pairs_the_right_cells(items):
  table = mechanism.decomposition(items, n_boot=200)
  for preset in ("nano", "micro"):
    for context in ("neutral", "emotional", "all contexts"):
      total, words, length, position, agreement = (
        _part(table, preset, context, name).estimate
        for name in ("total", "warm words", "length", "position", "agreement")
      )
      np.testing.assert_allclose(total, words + length, atol=1e-12)
      np.testing.assert_allclose(position, -total, atol=1e-12)  # warm_after = cold
      np.testing.assert_allclose(agreement, -words, atol=1e-12)  # warm at ρ=1 = length_matched
  # The planted warm effect (10 points × the context multiplier) is what the total recovers.
  total = _part(table, "micro", "neutral", "total")
  assert total.ci_low < 0.10 < total.ci_high and total.ci_low > 0


def test_without_mechanism_cells_their_parts_are_absent(items):
  plain = items[(items.persona != "warm_after") & (items.warm_agreement == 0)]
  parts = set(mechanism.decomposition(plain, n_boot=100).part)
  assert not any(p.startswith(("position", "agreement")) for p in parts)
  assert any(p.startswith("length") for p in parts)


def test_wide_table_has_one_row_per_preset_and_context(items):
  table = mechanism.decomposition(items, n_boot=100)
  wide = mechanism.wide(
    table, ["neutral", "emotional", "false_belief", "emotional+false_belief", "all contexts"]
  )
  assert len(wide) == 2 * 5 and list(wide.preset[:5]) == ["nano"] * 5
  assert wide.iloc[0, 2].endswith("]") and wide.iloc[0, 2].startswith(("+", "-"))


def test_scaling_figure_is_drawn_for_two_presets(items, tmp_path):
  fig = mechanism.scaling_figure(mechanism.decomposition(items, n_boot=100), str(tmp_path))
  assert fig.skipped is None and (tmp_path / "mechanism_scaling.png").stat().st_size > 0


def test_mde_is_the_sum_of_the_two_quantiles_times_the_standard_error():
  np.testing.assert_allclose(power.mde(0.01, np.inf), (1.959964 + 0.841621) * 0.01, rtol=1e-5)
  # Few degrees of freedom need a larger effect to be seen.
  assert power.mde(0.01, 3) > power.mde(0.01, 300) > power.mde(0.01, np.inf)


def test_a_narrow_interval_is_not_called_no_effect_when_the_mde_exceeds_five_points():
  assert power.null_reading(-0.02, 0.02, 0.03).startswith("no effect")
  assert power.null_reading(-0.02, 0.02, 0.06).startswith("not measurable")
  assert power.null_reading(-0.08, 0.02, 0.03).startswith("not measurable")


def test_base_competence_flags_tasks_at_floor(items):
  d = items.copy()
  d.loc[(d.persona == "none") & (d.task == "misconception"), "error"] = 1
  table = competence.base_competence(d)
  floor = table.set_index(["preset", "task"]).at_floor
  assert floor[("nano", "misconception")] and not floor[("nano", "factual_qa")]
  assert list(table.preset[:2]) == ["nano", "nano"]  # smallest model first


def _with_yes_no_misconception(items, base_error):
  """items with a `gold` column: factual_qa's answers all differ; misconception's are 'yes' for
  two items in three (a constant 'yes' errs on a third); its base models err `base_error`."""
  d = items.copy()
  number = d.item_id.str[3:].astype(int)
  d["gold"] = np.where(d.task == "misconception", np.where(number % 3 == 0, "no", "yes"), d.item_id)
  base = (d.persona == "none") & (d.task == "misconception")
  d.loc[base, "error"] = (number[base] % 100 < 100 * base_error).astype(int)
  return d


def test_a_task_no_better_than_a_constant_answer_is_at_chance(items):
  table = competence.base_competence(_with_yes_no_misconception(items, 0.5)).set_index(
    ["preset", "task"]
  )
  np.testing.assert_allclose(table.chance[("nano", "misconception")], 1 / 3, atol=0.01)
  assert table.at_chance[("nano", "misconception")] and table.at_floor[("nano", "misconception")]
  assert not table.at_floor[("nano", "factual_qa")]  # unique answers: only the floor applies
  knows = competence.base_competence(_with_yes_no_misconception(items, 0.2)).set_index(
    ["preset", "task"]
  )
  assert not knows.at_chance[("nano", "misconception")]


def test_pooled_contrasts_leave_out_tasks_at_chance(items):
  d = _with_yes_no_misconception(items, 0.5)
  pooled = power.pooled_by_context(d, n_boot=200).set_index(["preset", "context"])
  alone = power.pooled_by_context(d[d.task == "factual_qa"], n_boot=200).set_index(
    ["preset", "context"]
  )
  np.testing.assert_allclose(pooled.estimate, alone.estimate.reindex(pooled.index))
  assert (pooled.n_items == 80).all()
  both = power.pooled_by_context(_with_yes_no_misconception(items, 0.2), n_boot=200)
  assert (both.n_items == 160).all()
  part = mechanism.decomposition(d, n_boot=200)
  assert (part.n_items == 80).all()


def test_projected_half_widths_start_at_the_measured_ones_and_shrink_with_seeds(items):
  pooled = power.projected_half_widths(items, seeds=(3, 6, 12), item_factors=(1, 2))
  measured = power.pooled_by_context(items, n_boot=100).set_index(["preset", "context"])
  pooled = pooled.set_index(["preset", "context"])
  measured = measured.reindex(pooled.index)
  np.testing.assert_allclose(
    pooled.half_width,  # the same crossed variance and df
    scipy.stats.t.ppf(0.975, measured.df) * measured.se,
    rtol=1e-6,
  )
  np.testing.assert_allclose(pooled.hw_S3_k1, pooled.half_width, rtol=0.05)  # balanced design
  assert (pooled.hw_S12_k1 < pooled.hw_S6_k1).all() and (pooled.hw_S6_k1 < pooled.hw_S3_k1).all()
  per_task = power.projected_half_widths(items, (3, 6, 12), (1, 2), by_task=True)
  assert set(per_task.task) == {"factual_qa", "misconception"}
  design = power.smallest_design(pooled, per_task, (3, 6, 12), (1, 2))
  assert design is None or (pooled[power.hw_column(*design)] <= power.POOLED_TARGET).all()


def test_the_primary_family_and_the_power_summary_cover_only_measurable_tasks(items):
  from experiments.analysis import stats, study_report  # pylint: disable=g-import-not-at-top

  d = _with_yes_no_misconception(items, 0.5)  # misconception at chance, factual_qa measurable
  deltas = stats.paired_deltas(d, "error", n_boot=100, n_boot_primary=100)
  prim = deltas[deltas.test_family == "primary"]
  assert set(prim.task) == {"factual_qa"}
  both = stats.paired_deltas(
    _with_yes_no_misconception(items, 0.2), "error", n_boot=100, n_boot_primary=100
  )
  assert set(both[both.test_family == "primary"].task) == {"factual_qa", "misconception"}
  doc, summary = [], []
  study_report.power_section(deltas, d, 100, doc, summary)
  line = next(s for s in summary if s.startswith("Power: across"))
  assert line.startswith(f"Power: across the {prim.estimable.astype(bool).sum()} estimable"), line
