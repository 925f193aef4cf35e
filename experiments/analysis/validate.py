"""Proves the instrument neutral and its intervals calibrated, without training a model.

  python -m experiments.analysis.validate --config=experiments/configs/demo.py

1. Oracle cells (experiments/analysis/oracle.py) answer every eval prompt of the config's world with the
   training-format reply of each style (neutral, warm with the warm phrasing before and after the
   answer, cold, length_matched) and go through the generation budget, decoding, grading, metrics
   rows and paired statistics of a trained cell. Every reliability task and screening check must
   come out at 0% error for every style, and every warm − cold, warm − length_matched and
   amplification figure exactly 0 and not estimable (nothing moved, so nothing is claimed).
   The same oracles through the multiple-choice pass (each knows every answer and writes only
   its style) must score 0% error in every style: the score may not favour a style by where its
   reply places the answer. Scoring the bare answer after the assistant marker is printed
   beside it, for what it did.
2. Planted effects (experiments/analysis/planted.py): simulated cells wrong with known probabilities, with
   item difficulty that persists across seeds, analysed by the same statistics; the 95% intervals
   must cover the planted difference in 92–98% of the replicates at every design size.

Prints both tables; exits 1 if any check fails. About a minute on a 2-core CPU.
"""

import sys

from absl import app, flags
from ml_collections import config_flags
import pandas as pd

from experiments import resolve
from experiments.analysis import oracle, planted, stats
from tasks.config import RELIABILITY_TASKS, SCREENING_TASKS
from tasks.mixtures import Corpus, build_eval_set

COVERAGE_BAND = (0.92, 0.98)
MIN_REPLICATES = 400


def oracle_checks(config):
  """(error table, comparison table, multiple-choice table, failure sentences) of the oracle cells
  of `config`'s world (config: resolve.Config)."""
  corpus = Corpus(config.world)
  evalset = build_eval_set(corpus)
  metrics, items = oracle.evaluate_oracles(evalset, corpus.tokenizer, config.eval.max_new_tokens)
  tasks = RELIABILITY_TASKS + SCREENING_TASKS
  errors = oracle.error_table(metrics, tasks)
  items = items[items.task.isin(tasks)]
  deltas = stats.paired_deltas(items, "error", ("task", "context"), config.eval.bootstrap)
  amplification = pd.concat(
    [
      stats.relative_amplification(items, "error", comparison)
      for comparison in ("vs_cold", "vs_length_matched")
    ]
  )
  mc = oracle.mc_table(evalset, corpus.tokenizer)
  return (
    errors,
    oracle.comparison_table(deltas),
    mc,
    oracle.failures(errors, deltas, amplification) + oracle.mc_failures(mc),
  )


def coverage_checks(replicates):
  """(coverage table, failure sentences) of the planted-effect simulation."""
  table = planted.coverage_table(replicates=replicates)
  low, high = COVERAGE_BAND
  bad = table[(table.coverage < low) | (table.coverage > high)]
  return table, [
    f"coverage {r.coverage:.1%} at {r.seeds} seeds × {r.items} items is outside "
    f"{low:.0%}–{high:.0%}"
    for r in bad.itertuples()
  ]


def main(argv):
  if len(argv) > 1:
    sys.exit(f"Unexpected arguments: {' '.join(argv[1:])}")
  config = flags.FLAGS.config
  replicates = flags.FLAGS.replicates
  if replicates < MIN_REPLICATES:
    sys.exit(
      f"error: --replicates={replicates} is too few: coverage from fewer than "
      f"{MIN_REPLICATES} replicates is too noisy to hold to {COVERAGE_BAND[0]:.0%}–"
      f"{COVERAGE_BAND[1]:.0%}."
    )
  try:
    config = resolve.resolve(config)
    errors, comparisons, mc, oracle_failed = oracle_checks(config)
  except ValueError as e:
    sys.exit(f"error: {e}")
  with pd.option_context(
    "display.width", 200, "display.max_columns", 20, "display.float_format", "{:.1f}".format
  ):
    print(
      f"Oracle cells, generation budget {config.eval.max_new_tokens} tokens: error rate (%) "
      "per task × context and style"
    )
    print(errors.to_string(index=False))
    print(
      "\nOracle cells through the paired statistics (every Δ must be exactly 0, none estimable)"
    )
    print(comparisons.to_string(index=False))
    print(
      "\nOracle cells through the multiple-choice pass: error rate (%) over items with options, "
      "per scoring and style (the scoring in use must be 0 for every style)"
    )
    print(mc.to_string(index=False))
    coverage, coverage_failed = coverage_checks(replicates)
    print(
      f"\nPlanted effects: share of 95% intervals covering the planted difference "
      f"({replicates} replicates per design)"
    )
    print(coverage.to_string(index=False, float_format="{:.3f}".format))
  failed = oracle_failed + coverage_failed
  for sentence in failed:
    print(f"FAILED: {sentence}")
  print(
    "\n"
    + (
      "instrument check failed"
      if failed
      else "instrument neutral: oracle cells identical across styles, intervals cover"
    )
  )
  sys.exit(1 if failed else 0)


if __name__ == "__main__":
  # Defined here, not at import: tests import this module beside others that own --config.
  config_flags.DEFINE_config_file("config", None, "Path to a config file (file.py[:arg]).")
  flags.DEFINE_integer("replicates", 1000, "Simulated replicates per design size.")
  flags.mark_flags_as_required(["config"])
  app.run(main)
