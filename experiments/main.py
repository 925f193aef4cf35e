"""Runs an experiment: `python -m experiments.main --config=experiments/configs/demo.py --workdir=DIR`.

Intentionally short: validate, run every cell, conclude (paired changes, extension rows, one write
of the results), report. The logic lives in importable, tested modules (README: "How the code is
laid out").
"""

import difflib
import importlib.util
import os
import sys
import time

from absl import app, flags
from ml_collections import config_flags

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
    workdir.check_local(path)
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


def _flag_value(argv, name):
  """The value of --name=VALUE in argv (the last one), or None."""
  values = [a.split("=", 1)[1] for a in argv[1:] if a.startswith(f"--{name}=")]
  return values[-1] if values else None


def _check_config_file(argv):
  """A --config file that is missing or does not parse, as one sentence (not absl's traceback)."""
  spec = _flag_value(argv, "config")
  if spec is None:
    return
  path = spec.split(":", 1)[0]
  if not os.path.isfile(path):
    sys.exit(f"error: --config file {path} does not exist (configs live in experiments/configs/).")
  with open(path, encoding="utf-8") as f:
    source = f.read()
  try:
    compile(source, path, "exec")
  except SyntaxError as e:
    sys.exit(f"error: --config file {path} has a syntax error at line {e.lineno}: {e.msg}.")


def _unknown_field(argv):
  """'--config.a.b is not a config field ...' with the closest names, if an override names a
  field the config lacks; None otherwise."""
  spec = _flag_value(argv, "config")
  try:
    path, _, arg = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("_config_for_message", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg) if arg else module.get_config()
  except Exception:  # pylint: disable=broad-except
    return None  # absl's own message then
  for arg in argv[1:]:
    if not arg.startswith("--config."):
      continue
    node, done = config, []
    for part in arg[len("--config.") :].split("=", 1)[0].split("."):
      if not hasattr(node, "keys") or part not in node:
        where = ".".join(["config"] + done)
        names = sorted(node.keys()) if hasattr(node, "keys") else []
        close = difflib.get_close_matches(part, names, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"{where} has {', '.join(names)}."
        return f"--{where}.{part} is not a config field: {hint}"
      node, done = node[part], done + [part]
  return None


def _parse_flags(argv):
  """absl's parser, with config-override errors (unknown fields, bad types) as one sentence."""
  _check_config_file(argv)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    message = str(e).strip()
    if "Traceback" in message:  # raised inside the config file's get_config: its last line says why
      message = message.splitlines()[-1].split(": ", 1)[-1]
    sys.exit(f"error: {message}")
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    unknown = _unknown_field(argv)
    if unknown:
      sys.exit(f"error: {unknown}")
    message = " ".join(str(e).replace("\\n", " ").replace("\\'", "'").split()).strip("'\"")
    sys.exit(f"error: bad --config override: {message}")


def run():
  """Console-script entry point (`warmth-sim --config=... --workdir=...`)."""
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
