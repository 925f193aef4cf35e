"""Runs an experiment: `python -m experiments.main --config=experiments/configs/demo.py --workdir=DIR`.

Intentionally short: validate, run every cell, conclude (paired changes, extension rows, one write
of the results), report. The logic lives in importable, tested modules (README: "How the code is
laid out").
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
  from experiments import experiment, train  # pylint: disable=g-import-not-at-top
  from experiments.runtime import distributed, workdir  # pylint: disable=g-import-not-at-top
  config, path = _CONFIG.value, _WORKDIR.value
  try:
    experiment.validate(config)
    workdir.check_local(path)
    distributed.initialize(config.runtime)  # before anything else touches a device
    distributed.handle_sigterm()
    writer = None
    if distributed.is_writer():
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      writer = SummaryWriter(os.path.join(path, "tb"))
    metrics, items = experiment.run(config, path, writer)
  except ValueError as e:
    sys.exit(f"error: {e}")
  except train.Preempted as e:
    sys.exit(f"stopped: {e} Rerun the same command to resume.")
  if not distributed.is_writer():
    return  # process 0 summarises and reports
  if items is None:
    sys.exit("error: no cell finished, so there is nothing to summarise.")
  print(experiment.conclude(config, path, metrics, items))
  if config.runtime.report:
    from experiments.analysis import report  # pylint: disable=g-import-not-at-top
    logging.info("report: %s", report.write_report(path))
  print(f"metrics: {os.path.join(path, 'metrics.csv')}")


def _parse_flags(argv):
  """absl's parser, with config-override errors (unknown fields, bad types) as one sentence."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    message = str(e).strip()
    if "Traceback" in message:  # raised inside the config file's get_config: its last line says why
      message = message.splitlines()[-1].split(": ", 1)[-1]
    sys.exit(f"error: {message}")
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    message = " ".join(str(e).replace("\\n", " ").replace("\\'", "'").split()).strip("'\"")
    sys.exit(f"error: bad --config override: {message}")


def run():
  """Console-script entry point (`warmth-sim --config=... --workdir=...`)."""
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
