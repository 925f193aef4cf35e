"""Calibrates the persona phase's regime blind: a plan frozen first, a choice on the controls alone.

  python -m experiments.tools.calibrate --config=experiments/configs/calibration.py \
      --workdir=workdirs/calibration
  python -m experiments.tools.calibrate --config=experiments/configs/calibration.py:demo \
      --workdir=workdirs/calibration --plan_only

Each plan gets a directory of its own, `<workdir>/<first 12 of the plan's sha256>/`:

  plan.json     the candidates, presets, seeds, training config and rule, with their hash,
                written before any persona cell trains (--plan_only stops here: commit it to
                pre-register); a rerun checks it is unchanged and refuses an edited one
  train/        the run that trains and evaluates the candidates (experiments.main's workdir
                layout; resumes after a kill), evaluated blind: warm's, length_matched's errors are
                never graded
  table.csv     every candidate's tests: estimate, interval, criterion, passed, intensity
  choice.json   per preset: calibrated (the regime and its fields), not calibrated (the closest
                candidate and the tests it failed) or not calibratable; written once, with the
                plan's hash, and never rewritten
  report.html   the section: plan, rule, choice and why, the table, the figure
                (plots/calibration.png); report.md beside it

Base models come from the base-model store (runtime.base_store): fill it first with
`python -m experiments.tools.bases train --config=<the same config>`, and the calibration pays for
persona cells and evaluation only. The rule and the candidates: experiments/analysis/calibration.py
and experiments/configs/calibration.py.
"""

import json
import os
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags
import pandas as pd

from experiments import experiment, resolve
from experiments.analysis import calibration, calibration_report, oracle, render
from experiments.runtime import distributed
from experiments.runtime.workdir import (
  atomic_write,
  check_local,
  code_version,
  write_json,
  write_text,
)
from tasks.mixtures import Corpus, build_eval_set


def _define_flags():
  """Defined when the tool runs, so importing it (tests) claims no flag names."""
  config_flags.DEFINE_config_file("config", None, "A calibration config (file.py[:arg]).")
  flags.DEFINE_string("workdir", None, "Where calibration directories go, one per plan hash.")
  flags.DEFINE_boolean("plan_only", False, "Write plan.json (pre-registration) and stop.")
  flags.mark_flags_as_required(["config", "workdir"])


def prepare(config, workdir):
  """(plan, its hash, the calibration directory, the training config): everything checked and the
  plan frozen before anything trains. ValueError, one sentence, on a bad config or an edited
  plan."""
  rule = calibration.Rule.from_config(config)
  train_cfg = resolve.resolve(calibration.training_config(config))
  if list(train_cfg.grid.warmth_weights) != [1.0] or list(train_cfg.grid.protocols) != ["finetune"]:
    raise ValueError(
      "grid.warmth_weights must be (1.0,) and grid.protocols ('finetune',) in a "
      "calibration: the rule compares each persona at λ = 1 with the base model."
    )
  if "warm" not in train_cfg.grid.personas or "cold" not in train_cfg.grid.personas:
    raise ValueError(
      f"grid.personas={list(train_cfg.grid.personas)} must include warm and cold "
      "(the manipulation check and the control)."
    )
  check_local(workdir)
  corpus = Corpus(train_cfg.world).encode_all()
  evalset = build_eval_set(corpus)
  warm = oracle.OracleCell("ceiling", "warm", "warm", 1.0, train_cfg.world.warm_placement, 0)
  _, warm_items = oracle.evaluate_oracles(
    evalset, corpus.tokenizer, train_cfg.eval.max_new_tokens, [warm]
  )
  plan = calibration.make_plan(rule, train_cfg, calibration.ceilings(warm_items))
  record = calibration.plan_record(plan)
  directory = os.path.join(workdir, record["hash"][:12])
  path = os.path.join(directory, calibration.PLAN)
  if os.path.exists(path):
    _, stored = calibration.read_plan(path)
    if stored != record["hash"]:
      raise ValueError(
        f"{path} holds plan {stored[:12]}, not {record['hash'][:12]}: move the directory aside."
      )
  elif distributed.is_writer():
    write_json(path, record)
  return record["plan"], record["hash"], directory, train_cfg


def run(config, workdir):
  """Calibrates; returns (choice, calibration directory). A finished calibration is read back,
  not recomputed: its choice is frozen with its plan."""
  plan, digest, directory, train_cfg = prepare(config, workdir)
  choice_path = os.path.join(directory, calibration.CHOICE)
  if os.path.exists(choice_path):
    logging.info(
      "calibration %s finished earlier: %s (its report is drawn again)", digest[:12], choice_path
    )
    with open(choice_path) as f:
      choice = json.load(f)["presets"]
    table = pd.read_csv(os.path.join(directory, calibration.TABLE))
    _write_report(directory, plan, digest, table, choice)
    return choice, directory
  logging.info(
    "calibration %s: %d candidates × %d presets × %d seeds, plan frozen in %s",
    digest[:12],
    len(plan["candidates"]),
    len(plan["presets"]),
    len(plan["seeds"]),
    directory,
  )
  metrics, items = experiment.run(train_cfg, os.path.join(directory, "train"))
  if not distributed.is_writer():
    return None, directory  # process 0 decides and writes
  if items is None:
    raise ValueError("no cell finished, so there is nothing to calibrate on.")
  table, choice = calibration.calibrate(items, metrics, plan)
  atomic_write(
    os.path.join(directory, calibration.TABLE),
    lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g"),
  )
  _write_report(directory, plan, digest, table, choice)
  # Last: the calibration is done. The code that decided is recorded beside the plan's hash.
  write_json(choice_path, {"plan": digest, "code": code_version(), "presets": choice})
  return choice, directory


def _write_report(directory, plan, digest, table, choice):
  """report.html, report.md and the figure of a decided calibration (a rendering only: the
  table and the choice are read, never recomputed)."""
  fig = calibration_report.figure(table, choice, os.path.join(directory, "plots"), plan["rule"])
  page, markdown = render.render(calibration_report.report_blocks(plan, digest, table, choice, fig))
  write_text(os.path.join(directory, "report.html"), page)
  write_text(os.path.join(directory, "report.md"), markdown)


def describe(choice):
  lines = []
  for preset, c in choice.items():
    regime = f" {c['regime']}" if c["regime"] else ""
    lines.append(f"{preset}: {c['status']}{regime}: {c['why']}")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    sys.exit(f"Unexpected arguments: {' '.join(argv[1:])}")
  start = time.perf_counter()
  config, workdir = flags.FLAGS.config, flags.FLAGS.workdir
  try:
    distributed.initialize(config.runtime)  # before any other JAX call
    distributed.handle_sigterm()
    if flags.FLAGS.plan_only:
      _, digest, directory, _ = prepare(config, workdir)
      print(f"plan {digest} frozen in {directory}")
      return
    choice, directory = run(config, workdir)
  except ValueError as e:
    sys.exit(f"error: {e}")
  except distributed.Preempted as e:
    sys.exit(f"stopped: {e} Rerun the same command to resume.")
  if choice is None:
    return
  print(describe(choice))
  print(f"calibration: {directory} ({(time.perf_counter() - start) / 60:.1f} min)")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
