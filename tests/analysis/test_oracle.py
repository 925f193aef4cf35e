"""The instrument is neutral: format-perfect replies of every style score the same, end to end."""

import os
import subprocess
import sys

import pandas as pd
import pytest
import tiny_runs

from experiments import resolve
from experiments.analysis import oracle, report, stats, validate
from experiments.configs import demo
from tasks import budget
from tasks.config import RELIABILITY_TASKS, SCREENING_TASKS
from tasks.mixtures import Corpus, build_eval_set


@pytest.fixture(scope="module")
def full_demo():
  """The full demo config, its world's corpus and eval set."""
  config = resolve.resolve(demo.get_config())
  corpus = Corpus(config.world)
  return config, corpus, build_eval_set(corpus)


def test_oracle_cells_of_every_style_score_identically():
  errors, comparisons, mc, failed = validate.oracle_checks(resolve.resolve(demo.get_config()))
  assert failed == []
  styles = [c for c in errors.columns if c not in ("task", "context")]
  assert set(styles) == {
    "warm (before)",
    "warm (after)",
    "cold",
    "length_matched (before)",
    "length_matched (after)",
  }
  assert set(errors.task) == set(RELIABILITY_TASKS + SCREENING_TASKS)
  assert len(errors) == 4 * len(set(errors.task))  # every task in every context
  assert (errors[styles] == 0).all().all()
  assert (comparisons["max |Δ| (pts)"] == 0).all() and (comparisons.estimable == 0).all()
  assert set(comparisons.comparison) >= {"warm − cold", "warm − length_matched"}


def test_multiple_choice_favours_no_style_by_where_it_places_the_answer(full_demo):
  # Oracles that know every answer and write one style each: scored in their own style (read
  # from a probe), none errs; scored on the bare answer after the assistant marker, every style
  # that opens with something else (and every belief context, which opens with a correction)
  # errs, so the check can tell the two apart.
  _, corpus, evalset = full_demo
  table = oracle.mc_table(evalset, corpus.tokenizer).set_index("scoring")
  own, bare = table.iloc[0], table.iloc[1]
  assert (own == 0).all(), own
  assert bare["warm (before)"] > 40 and bare["cold"] > 40 and bare["length_matched"] > 40, bare
  assert 0 < bare["neutral"] == bare["warm (after)"] < bare["cold"], bare
  assert oracle.mc_failures(table.reset_index()) == []
  named = " ".join(oracle.mc_failures(table.reset_index(), "bare answer after the marker"))
  assert "a warm (before) oracle scores" in named and "a cold oracle" in named, named


def test_a_budget_that_cuts_warm_replies_is_caught(full_demo):
  # The budget the demo once had: warm replies put the answer after the warm phrasing, so a cut
  # makes them wrong by construction, and the oracle check must say so.
  config, corpus, evalset = full_demo
  metrics, items = oracle.evaluate_oracles(evalset, corpus.tokenizer, 40)
  errors = oracle.error_table(metrics, RELIABILITY_TASKS)
  deltas = stats.paired_deltas(items[items.task.isin(RELIABILITY_TASKS)], "error", n_boot=50)
  failed = oracle.failures(errors, deltas, pd.DataFrame(columns=["excess"]))
  assert any("warm (before): medical_dosing" in f for f in failed), failed
  assert errors["cold"].max() == 0  # short replies are unaffected


def test_the_derived_budget_holds_every_format_reply(full_demo):
  config, corpus, evalset = full_demo
  longest = budget.longest_reply(corpus.world)
  assert config.eval.max_new_tokens == longest + budget.MARGIN
  assert longest == max(
    len(r.split()) + 1
    for i, t in zip(evalset.items, evalset.turns)
    for r in budget.format_replies(i, t)
  )
  with pytest.raises(ValueError, match=f"eval.max_new_tokens={longest - 1} is shorter"):
    budget.generation_budget(corpus.world, longest - 1)
  assert budget.generation_budget(corpus.world, longest) == longest


def test_the_report_on_oracle_cells_claims_nothing(full_demo, tmp_path):
  config, corpus, evalset = full_demo
  metrics, items = oracle.evaluate_oracles(
    evalset,
    corpus.tokenizer,
    config.eval.max_new_tokens,
    oracle.oracle_cells(placements=("before",)),
  )
  metrics.to_csv(tmp_path / "metrics.csv", index=False)
  items.to_csv(tmp_path / "items.csv", index=False)
  report.write_report(str(tmp_path), n_boot=100)
  deltas = pd.read_csv(tmp_path / "paired_deltas.csv")
  reliable = deltas[deltas.task.isin(RELIABILITY_TASKS)]
  assert (reliable.estimate == 0).all() and not reliable.estimable.any()
  with open(tmp_path / "report.md", encoding="utf-8") as f:
    text = f.read()
  assert "Primary family: none of the" in text
  assert "q < 0.05:" not in text
  assert os.path.exists(tmp_path / "report.html")


def test_validate_refuses_too_few_replicates():
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.analysis.validate",
      f"--config={tiny_runs.DEMO}",
      "--replicates=10",
    ],
    cwd=tiny_runs.ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  assert proc.returncode != 0
  assert "--replicates=10 is too few" in proc.stderr.strip().splitlines()[-1]
