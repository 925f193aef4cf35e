"""Runs an experiment: `python -m experiments.main --config=experiments/configs/demo.py --workdir=DIR`.

Intentionally short: validate, run every cell, conclude (paired changes, extension rows, one write
of the results), report. The logic lives in importable, tested modules (README: "How the code is
laid out").
"""

import os
import sys
import time

from absl import app, flags
from ml_collections import config_flags

from experiments import flag_errors

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (file.py[:arg]).")
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Directory for config.json, metrics.csv, checkpoints."
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    sys.exit(f"Unexpected arguments: {' '.join(argv[1:])}")
  # Imported here so that flag errors are reported before JAX starts.
  start = time.perf_counter()
  from experiments import experiment, resolve, train  # pylint: disable=g-import-not-at-top
  from experiments.analysis import summary  # pylint: disable=g-import-not-at-top
  from experiments.runtime import distributed, workdir  # pylint: disable=g-import-not-at-top

  path = _WORKDIR.value
  try:
    config = resolve.resolve(_CONFIG.value)
    workdir.check_location(path)
    distributed.initialize(config.runtime)  # before anything else touches a device
    distributed.handle_sigterm()
    metrics, items = experiment.run(config, path, tensorboard=True)
    if not distributed.is_writer():
      return  # process 0 summarises and reports
    if items is None:
      sys.exit("error: no cell finished, so there is nothing to summarise.")
    tables = experiment.conclude(config, path, metrics, items)
    if config.runtime.verbose:
      print(tables)
    report_path = None
    if config.runtime.report:
      from experiments.analysis import report  # pylint: disable=g-import-not-at-top

      report_path = report.write_report(path)["html"]
    print(
      summary.bottom_line(items, config.eval.bootstrap, time.perf_counter() - start, report_path)
    )
  except (ValueError, train.Diverged) as e:
    sys.exit(f"error: {e}")
  except distributed.Preempted as e:
    sys.exit(f"stopped: {e} Rerun the same command to resume.")
  print(f"metrics: {os.path.join(path, 'metrics.csv')}")


def run():
  """Console-script entry point (`warmth-sim --config=... --workdir=...`)."""
  app.run(main, flags_parser=flag_errors.parse)


if __name__ == "__main__":
  run()
