"""Runs an experiment: `python -m experiments.main --config=experiments/configs/demo.py --workdir=DIR`.

Intentionally short: the logic lives in importable, tested modules.
"""
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (file.py[:arg]).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for config.json, metrics.csv, checkpoints.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    sys.exit(f"Unexpected arguments: {' '.join(argv[1:])}")
  # Imported here so that flag errors are reported before JAX starts.
  from experiments import distributed, experiment, summary, train, workdir
  config = _CONFIG.value
  try:
    experiment.validate(config)
    workdir.check_local(_WORKDIR.value)
    distributed.initialize(config.runtime)  # before anything else touches a device
    distributed.handle_sigterm()
    writer = None
    if distributed.is_writer():
      from tensorboardX import SummaryWriter
      writer = SummaryWriter(os.path.join(_WORKDIR.value, "tb"))
    from experiments.objectives import compare  # wraps experiment.run when objectives.enabled
    runner = compare.run if compare.enabled(config) else experiment.run
    metrics, items = runner(config, _WORKDIR.value, writer)
  except ValueError as e:
    sys.exit(f"error: {e}")
  except train.Preempted as e:
    sys.exit(f"stopped: {e} Rerun the same command to resume.")
  if not distributed.is_writer():
    return  # process 0 summarises and reports
  if items is None:
    sys.exit("error: no cell finished, so there is nothing to summarise.")
  from experiments.persona import tables as persona_tables
  from experiments import stats
  deltas = stats.paired_deltas(items, "error", n_boot=config.eval.bootstrap)
  persona_rows, persona_text = persona_tables.summarize(config, _WORKDIR.value, items, metrics)
  experiment.append_changes(_WORKDIR.value, metrics, summary.change_rows(deltas, items),
                            persona_rows)
  print(summary.format_table(summary.main_table(deltas)))
  if persona_text:
    print(persona_text)
  if config.runtime.report:
    from experiments import report
    paths = report.write_report(_WORKDIR.value)
    logging.info("report: %s", paths)
  print(f"metrics: {os.path.join(_WORKDIR.value, 'metrics.csv')}")


def _parse_flags(argv):
  """absl's parser, with config-override errors (unknown fields, bad types) as one sentence."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f"error: {e}")
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    message = " ".join(str(e).replace("\\n", " ").replace("\\'", "'").split()).strip("'\"")
    sys.exit(f"error: bad --config override: {message}")


def run():
  """Console-script entry point (`warmth-sim --config=... --workdir=...`)."""
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
