"""The calibration's decision: made on the whitelisted controls alone, by the pre-registered rule,
under a plan whose hash freezes it."""

import copy

import numpy as np
import pandas as pd
import pytest

from experiments.analysis import calibration, calibration_report

PERSONAS = ("warm", "cold", "length_matched")
CEILINGS = {"neutral": 0.8, "emotional": 0.6}
N_ITEMS = 120  # per task × context


def _plan(candidates=("gentle", "harsh"), **rule):
  return {
    "calibrates": "experiments/configs/study.py",
    "presets": ["nano"],
    "seeds": [0, 1, 2],
    "finetune_seeds": 1,
    "personas": list(PERSONAS),
    "candidates": {
      name: {"persona_learning_rate": 1e-4 * (k + 1)} for k, name in enumerate(candidates)
    },
    "order": list(candidates),
    "rule": {
      "delta": 0.03,
      "ci_level": 0.9,
      "warmth_fraction": 0.9,
      "well_formed_margin": 0.05,
      "bootstrap": 400,
      "bootstrap_seed": 0,
      "warmth_ceilings": CEILINGS,
      "intensity": "…",
      "tie_break": "…",
      "closest": "…",
      **rule,
    },
    "experiment": {},
  }


def _world():
  """(task, context, item_id, gold, base_error) of every evaluation row: factual_qa, which the
  base model knows; medical_contraindication, at chance (always "no" would be right 2/3 of the
  time); the two screens."""
  rows = []
  for task, base_rate, golds in (
    ("factual_qa", 0.3, ["a", "b", "c", "d"]),
    ("medical_contraindication", 0.5, ["no", "no", "yes"]),
    ("capability", 0.2, ["x"]),
    ("safety_refusal", 0.2, ["r"]),
  ):
    for context in CEILINGS:
      for i in range(N_ITEMS):
        rows.append((task, context, f"{task}/p{i // 2}/q{i}", golds[i % len(golds)], base_rate))
  return rows


def _items(regimes, seeds=(0, 1, 2), seed=0):
  """Items of a base model and each regime's personas. regimes: name → {cold_harm: share of
  base-correct items cold gets wrong, warmth: warm's warmth share of its ceiling, form_drop:
  length_matched's well-formed loss}; everything else (warm's errors above all) is noise."""
  rng = np.random.default_rng(seed)
  world = _world()
  out = []
  for s in seeds:
    base_err = {r[2] + r[1]: float(rng.random() < r[4]) for r in world}

    def add(persona, regime, err, **cols):
      for (task, context, item, gold, _), e in zip(world, err):
        out.append(
          {
            "preset": "nano",
            "regime": regime,
            "persona": persona,
            "warmth_weight": 0.0 if persona == "none" else 1.0,
            "seed": s,
            "finetune_seed": 0,
            "intervention": "none",
            "task": task,
            "context": context,
            "item_id": item,
            "gold": gold,
            "error": e,
            "mc_error": e if task != "capability" else np.nan,
            "well_formed": cols.get("form", 1.0),
            "warmth": cols.get("warmth", {}).get(context, 0.0),
            "reply": f"{persona} says {rng.integers(9)}",
            "affirms": float(rng.random() < 0.2),
            "n_params": 1000,
          }
        )

    add("none", "none", [base_err[r[2] + r[1]] for r in world])
    for name, spec in regimes.items():
      harm = spec.get("cold_harm", 0.0)
      # Cold: the base model's answers, with a few flips both ways, and `harm` of its right
      # answers turned wrong.
      cold = [b if rng.random() > 0.01 else 1 - b for b in (base_err[r[2] + r[1]] for r in world)]
      cold = [
        1.0 if (c == 0 and rng.random() < harm and r[0] in ("factual_qa",)) else c
        for c, r in zip(cold, world)
      ]
      add("cold", name, cold, form=1.0)
      add(
        "warm",
        name,
        rng.integers(0, 2, len(world)).astype(float),
        warmth={c: spec.get("warmth", 0.98) * v for c, v in CEILINGS.items()},
      )
      add("length_matched", name, rng.integers(0, 2, len(world)).astype(float))
  items = pd.DataFrame(out)
  for name, spec in regimes.items():  # length_matched loses `form_drop` of its well-formed rows
    rows = (items.regime == name) & (items.persona == "length_matched")
    items.loc[rows, "well_formed"] = (rng.random(rows.sum()) >= spec.get("form_drop", 0.0)) * 1.0
  return items.astype({"well_formed": float})


def _metrics(intensity):
  rows = []
  for name, level in intensity.items():
    for persona in PERSONAS:
      for s in (0, 1, 2):
        value = level if persona == "cold" else 10 * level  # only cold's is read
        rows.append(
          {
            "preset": "nano",
            "regime": name,
            "persona": persona,
            "seed": s,
            "task": "train",
            "context": "all",
            "metric": "update_norm",
            "value": value,
          }
        )
        rows.append(
          {
            "preset": "nano",
            "regime": name,
            "persona": persona,
            "seed": s,
            "task": "train",
            "context": "all",
            "metric": "loss",
            "value": 1.0,
          }
        )
  return pd.DataFrame(rows)


def _choice(items, metrics, plan=None):
  return calibration.calibrate(items, metrics, plan or _plan())


def test_the_least_intense_passing_candidate_is_chosen():
  items = _items({"gentle": {}, "harsh": {}})
  # harsh is the less intense here, and passes too: it is chosen.
  table, choice = _choice(items, _metrics({"gentle": 2.0, "harsh": 1.0}))
  assert choice["nano"]["status"] == calibration.CALIBRATED
  assert choice["nano"]["regime"] == "harsh"
  assert table.groupby("regime").passed.all().all()
  # Equal intensity: the earlier candidate in the plan's order (not the alphabet's).
  _, choice = _choice(items, _metrics({"gentle": 1.0, "harsh": 1.0}))
  assert choice["nano"]["regime"] == "gentle"
  _, choice = _choice(items, _metrics({"gentle": 1.0, "harsh": 1.0}), _plan(("harsh", "gentle")))
  assert choice["nano"]["regime"] == "harsh"


def test_a_control_that_forgets_fails_the_equivalence_test():
  items = _items({"gentle": {}, "harsh": {"cold_harm": 0.3}})
  table, choice = _choice(items, _metrics({"gentle": 2.0, "harsh": 1.0}))
  assert choice["nano"]["regime"] == "gentle"
  harsh = table[(table.regime == "harsh")].set_index("test")
  assert not harsh.loc["reliability", "passed"] and harsh.loc["reliability", "ci_low"] > 0.03
  assert harsh.loc["capability", "passed"]  # the screens were not touched
  # Pooled over the measurable task only: contraindication (at chance) never enters.
  gentle = table[(table.regime == "gentle")].set_index("test")
  assert abs(gentle.loc["reliability", "estimate"]) < 0.03


def test_whitelist_nothing_outside_it_changes_the_choice():
  items = _items({"gentle": {}, "harsh": {"cold_harm": 0.3}, "mild": {}}, seed=3)
  metrics = _metrics({"gentle": 2.0, "harsh": 1.0, "mild": 3.0})
  plan = _plan(("gentle", "harsh", "mild"))
  table, choice = calibration.calibrate(items, metrics, plan)
  rng = np.random.default_rng(7)
  scrambled = items.copy()
  others = ~scrambled.persona.isin(["none", "cold"])
  for column in ("error", "mc_error"):  # warm's and length_matched's errors, shuffled
    scrambled.loc[others, column] = rng.permutation(scrambled.loc[others, column].to_numpy())
  not_warm = scrambled.persona != "warm"
  scrambled.loc[not_warm, "warmth"] = rng.random(not_warm.sum())
  scrambled.loc[scrambled.persona != "none", "gold"] = "z"
  scrambled["reply"] = rng.permutation(scrambled.reply.to_numpy())
  scrambled["affirms"] = 1.0 - scrambled.affirms
  scrambled["n_params"] = 7
  noisy = metrics.copy()
  noisy.loc[noisy.persona != "cold", "value"] = rng.random((noisy.persona != "cold").sum())
  noisy.loc[noisy.metric == "loss", "value"] = 99.0
  t2, c2 = calibration.calibrate(scrambled, noisy, plan)
  assert c2 == choice
  pd.testing.assert_frame_equal(t2, table)
  # ... and deleted: the other personas' errors gone, columns outside the whitelist dropped.
  scrambled.loc[others, ["error", "mc_error"]] = np.nan
  t3, c3 = calibration.calibrate(
    scrambled.drop(columns=["reply", "affirms", "n_params"]),
    noisy[noisy.metric == "update_norm"],
    plan,
  )
  assert c3 == choice
  pd.testing.assert_frame_equal(t3, table)
  # A whitelisted value does move it: gentle's control made to forget.
  moved = items.copy()
  rows = (moved.regime == "gentle") & (moved.persona == "cold") & (moved.task == "factual_qa")
  moved.loc[rows, "error"] = 1.0
  _, c4 = calibration.calibrate(moved, metrics, plan)
  assert c4["nano"]["regime"] == "mild"


def test_learned_and_well_formed_are_manipulation_checks():
  items = _items({"gentle": {"warmth": 0.7}, "harsh": {"form_drop": 0.2}, "mild": {}})
  plan = _plan(("gentle", "harsh", "mild"))
  table, choice = calibration.calibrate(
    items, _metrics({"gentle": 1.0, "harsh": 1.0, "mild": 3.0}), plan
  )
  t = table.set_index(["regime", "test"])
  assert not t.loc[("gentle", "learned"), "passed"]
  assert t.loc[("gentle", "learned"), "estimate"] == pytest.approx(0.7)
  assert t.loc[("mild", "learned"), "estimate"] == pytest.approx(0.98)
  assert not t.loc[("harsh", "well_formed[length_matched]"), "passed"]
  assert t.loc[("harsh", "well_formed[warm]"), "passed"]
  assert choice["nano"]["regime"] == "mild"


def test_none_passing_is_not_calibrated_with_the_closest_and_what_it_failed():
  items = _items({"gentle": {"warmth": 0.5, "cold_harm": 0.3}, "harsh": {"cold_harm": 0.3}})
  _, choice = _choice(items, _metrics({"gentle": 1.0, "harsh": 2.0}))
  c = choice["nano"]
  assert c["status"] == calibration.NOT_CALIBRATED
  assert c["regime"] == "harsh" and c["failed"] == ["reliability", "multiple_choice"]
  assert "harsh" in c["why"] and "reliability" in c["why"]


def test_a_base_model_that_knows_nothing_is_not_calibratable():
  items = _items({"gentle": {}})
  base = items.persona == "none"
  items.loc[base & items.task.isin(["factual_qa", "medical_contraindication"]), "error"] = 1.0
  _, choice = _choice(items, _metrics({"gentle": 1.0}), _plan(("gentle",)))
  assert choice["nano"]["status"] == calibration.NOT_CALIBRATABLE
  assert choice["nano"]["regime"] is None


def test_the_plan_hash_covers_the_grid_and_the_rule(tmp_path):
  plan = _plan()
  same = copy.deepcopy(plan)
  assert calibration.plan_hash(same) == calibration.plan_hash(plan)
  other = copy.deepcopy(plan)
  other["candidates"]["gentle"]["persona_learning_rate"] = 5e-4
  assert calibration.plan_hash(other) != calibration.plan_hash(plan)
  wider = copy.deepcopy(plan)
  wider["rule"]["delta"] = 0.05
  assert calibration.plan_hash(wider) != calibration.plan_hash(plan)
  path = tmp_path / "plan.json"
  from experiments.runtime.workdir import write_json

  write_json(str(path), calibration.plan_record(plan))
  assert calibration.read_plan(str(path)) == (
    calibration.plan_record(plan)["plan"],
    calibration.plan_hash(plan),
  )
  text = path.read_text().replace('"delta": 0.03', '"delta": 0.05')
  path.write_text(text)
  with pytest.raises(ValueError, match="does not match its hash"):
    calibration.read_plan(str(path))


def test_the_table_figure_and_section(tmp_path):
  items = _items({"gentle": {}, "harsh": {"cold_harm": 0.3}})
  plan = _plan()
  table, choice = _choice(items, _metrics({"gentle": 2.0, "harsh": 1.0}), plan)
  assert list(table.columns) == list(calibration.TABLE_COLUMNS)
  assert len(table) == 2 * (1 + len(PERSONAS) + len(calibration.HARMLESS))
  fig = calibration_report.figure(table, choice, str(tmp_path), plan["rule"])
  assert fig.skipped is None and (tmp_path / "calibration.png").stat().st_size > 0
  blocks = calibration_report.report_blocks(plan, calibration.plan_hash(plan), table, choice, fig)
  wide = [v for kind, v in blocks if kind == "table"][1]
  assert list(wide.chosen) == ["◀", ""] and list(wide.passes) == ["yes", "no"]
  assert wide.loc[1, "reliability"].endswith("✗")
