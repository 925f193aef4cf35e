"""absl's flag parser for a command with `--config`, with its errors as one sentence each.

absl reports a missing or broken config file, an override of a field the config lacks and a value
of the wrong type as a traceback or a long usage text; `parse` turns each into one line naming the
flag and what is allowed, and a non-zero exit, before JAX is imported.
"""

import difflib
import importlib.util
import os
import sys

from absl import flags


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


def parse(argv):
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
