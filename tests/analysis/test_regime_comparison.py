"""The answer per regime, side by side, on items whose effects per regime are planted."""

import numpy as np
import pandas as pd
import pytest
import synthetic_metrics

from experiments.analysis import regime_comparison as rc
from experiments.analysis import study_report

KW = dict(
  presets={"nano": 25_000},
  tasks=("factual_qa", "misconception"),
  n_items=120,
  lambdas=(0.0, 1.0),
  personas=("warm", "cold", "length_matched"),
  seed_sd=0.0,
  context_mult={"emotional": 1.0, "false_belief": 1.0, "emotional+false_belief": 1.0},
)
CONFIG = {
  "grid": {
    "regimes": {"gentle": {"labels": {"nano": "not calibrated: failed learned"}}, "forgetting": {}}
  }
}


@pytest.fixture(scope="module")
def items():
  """Two regimes fine-tune the same base models (drawn once: the `none` rows). In `gentle` warm
  errs 6 points more than cold and cold as much as the base model, and no persona loses
  knowledge (its multiple-choice answers are the base model's); in `forgetting` every persona
  forgets 25 points and loses it as knowledge (multiple-choice error = generated error)."""
  gentle = synthetic_metrics.make_items(warm_effect=0.06, rng=5, **KW)
  harsh = synthetic_metrics.make_items(
    warm_effect=0.31, cold_effect=0.25, lm_effect=0.25, rng=7, **KW
  )
  base = gentle[gentle.persona == "none"]
  key = ["seed", "task", "context", "item_id"]
  base_mc = base.set_index(key).error.astype(float)
  gentle = gentle[gentle.persona != "none"].assign(regime="gentle")
  gentle = gentle.assign(mc_error=base_mc.reindex(pd.MultiIndex.from_frame(gentle[key])).values)
  harsh = harsh[harsh.persona != "none"].assign(regime="forgetting")
  harsh = harsh.assign(mc_error=harsh.error.astype(float))
  base = base.assign(mc_error=base.error.astype(float))
  return pd.concat([base, gentle, harsh], ignore_index=True)


@pytest.fixture(scope="module")
def metrics(items):
  cells = items.drop_duplicates(["run", "regime"])
  norm = {"gentle": 2.0, "forgetting": 9.0}
  rows = [
    dict(
      run=r.run,
      preset=r.preset,
      n_params=r.n_params,
      n_params_nonembed=r.n_params,
      protocol=r.protocol,
      regime=r.regime,
      persona=r.persona,
      warmth_weight=r.warmth_weight,
      warm_agreement=0.0,
      seed=r.seed,
      intervention="none",
      task="train",
      context="all",
      metric="update_norm",
      value=norm[r.regime],
      n=1,
    )
    for r in cells.itertuples()
    if r.persona != "none"
  ]
  return pd.DataFrame(rows)


def test_each_regime_is_read_against_the_base_models_alone(items):
  answer = rc.answer_table(items, 200, CONFIG)
  assert list(dict.fromkeys(answer.regime)) == ["gentle", "forgetting"]  # grid.regimes' order
  pooled = answer[answer.context == "all contexts"].set_index("regime")
  assert pooled.loc["gentle", "estimate"] == pytest.approx(0.06, abs=0.03)
  assert pooled.loc["forgetting", "estimate"] == pytest.approx(0.06, abs=0.03)
  # The same numbers as a workdir that holds the gentle regime alone.
  alone = rc.answer_table(rc.of_regime(items, "gentle"), 200, CONFIG)
  pd.testing.assert_frame_equal(
    alone.reset_index(drop=True), answer[answer.regime == "gentle"].reset_index(drop=True)
  )
  assert set(answer.context) >= {"neutral", "emotional", "all contexts"}
  assert answer.mde.notna().all()


def test_knows_versus_says_splits_each_change_item_by_item(items):
  knows = rc.knows_vs_says(items, 200, CONFIG).set_index(["regime", "persona"])
  gentle, harsh = knows.loc[("gentle", "warm")], knows.loc[("forgetting", "cold")]
  # Gentle: the multiple-choice answers are the base model's, so nothing is lost as knowledge.
  assert gentle.knowledge == 0 and gentle.knowledge_ci_low == gentle.knowledge_ci_high == 0
  assert gentle.expression == pytest.approx(gentle.total) and gentle.total > 0.03
  assert gentle.total_ci_low < gentle.total < gentle.total_ci_high
  # Forgetting: every error is a multiple-choice error too, so it is all knowledge.
  assert harsh.knowledge == pytest.approx(harsh.total) and harsh.total > 0.15
  assert harsh.expression == 0
  for r in knows.itertuples():
    if r.Index[1] != "none":
      assert r.total == pytest.approx(r.knowledge + r.expression)
  assert np.isnan(knows.loc[("gentle", "none")].total)  # the base model is the reference
  # A regime that trains no cell at a preset gets no row there, its base model's included.
  micro = items[items.persona == "none"].assign(preset="micro", n_params=148_000)
  knows = rc.knows_vs_says(pd.concat([items, micro]), 50, CONFIG)
  assert set(knows[knows.preset == "micro"].regime) == set()
  assert set(knows[knows.preset == "nano"].regime) == {"gentle", "forgetting"}


def test_the_diagram_places_each_regime_at_its_intensity(items, metrics):
  table = rc.diagram_table(items, metrics, 200, CONFIG).set_index(["regime", "comparison"])
  assert table.loc[("gentle", "cold − base")].intensity == 2.0
  assert table.loc[("forgetting", "cold − base")].intensity == 9.0
  assert abs(table.loc[("gentle", "cold − base")].estimate) < 0.02
  assert table.loc[("forgetting", "cold − base")].estimate == pytest.approx(0.25, abs=0.03)
  warm_cold = table.loc[("forgetting", "warm − cold")]
  assert warm_cold.estimate == pytest.approx(0.06, abs=0.03)
  assert warm_cold.ci_low < warm_cold.estimate < warm_cold.ci_high


def test_the_report_section_labels_each_regime_and_draws_the_diagram(items, metrics, tmp_path):
  doc, summary, figs = [], [], []
  study_report.regimes_section(items, metrics, CONFIG, 200, doc, summary, figs, str(tmp_path))
  tables = [b for k, b in doc if k == "table"]
  assert "gentle (not calibrated: failed learned)" in set(tables[0].regime)
  assert "forgetting" in set(tables[0].regime)
  assert {"knowledge (MC)", "expression"} <= set(tables[-1].columns)
  assert figs and figs[0].png and figs[0].png.endswith("regime_diagram.png")
  assert any(s.startswith("Warm − cold by regime (nano") for s in summary)
  assert any("Knows versus says (nano, forgetting)" in s for s in summary)
  amplification = next(t for t in tables if "excess [95% CI]" in t.columns)
  assert set(amplification.context) == {"emotional", "false_belief", "emotional+false_belief"}
  assert any(s.startswith("Amplification (nano, gentle)") for s in summary)
  # A workdir of one regime gets no such section.
  doc, summary, figs = [], [], []
  study_report.regimes_section(
    rc.of_regime(items, "gentle"), metrics, CONFIG, 200, doc, summary, figs, str(tmp_path)
  )
  assert doc == [] and figs == []


def test_amplification_is_read_per_regime():
  """The emotional context doubles warm − cold in `gentle` and leaves it alone in `forgetting`."""
  amplified = dict(
    KW,
    n_items=300,
    context_mult={"emotional": 2.0, "false_belief": 1.0, "emotional+false_belief": 1.0},
  )
  gentle = synthetic_metrics.make_items(warm_effect=0.10, rng=11, **amplified)
  flat = synthetic_metrics.make_items(warm_effect=0.10, rng=11, **dict(KW, n_items=300))
  base = gentle[gentle.persona == "none"]
  items = pd.concat(
    [
      base,
      gentle[gentle.persona != "none"].assign(regime="gentle"),
      flat[flat.persona != "none"].assign(regime="forgetting"),
    ],
    ignore_index=True,
  )
  amp = rc.amplification_table(items, 200, CONFIG).set_index(["regime", "context"])
  assert list(dict.fromkeys(amp.index.get_level_values("regime"))) == ["gentle", "forgetting"]
  gentle_emotional = amp.loc[("gentle", "emotional")]
  assert gentle_emotional.excess_ci_low < 0.10 < gentle_emotional.excess_ci_high
  assert gentle_emotional.excess_ci_low > 0
  for regime, context in (("forgetting", "emotional"), ("gentle", "false_belief")):
    r = amp.loc[(regime, context)]
    assert r.excess_ci_low < 0 < r.excess_ci_high, (regime, context)
