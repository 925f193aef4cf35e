"""The workdir contract: config.json, and each finished cell's metrics.csv and items.csv.

Everything is written to a temporary file and renamed, so a killed run never leaves a half-written
file that a rerun would trust; each cell's manifest.json (row counts and SHA-256 of its files) is
written last, and a rerun recomputes a cell whose files no longer match it. config.json carries the
hash of its config likewise. A rerun with the same config resumes; a different config is refused.
Files are created with the permissions the umask allows, as any other tool's would be.
"""

import hashlib
import json
import os
import subprocess
import tempfile

from absl import logging
import pandas as pd

# Fields that may change between reruns of one workdir without changing any result.
# The mesh and checkpoint cadence may change too: a checkpoint restores onto any mesh.
RUNTIME_FIELDS = (
  "runtime",
  "mesh",
  "train.log_every",
  "eval.batch_size",
  "train.checkpoint_every",
  "train.checkpoints_to_keep",
  "train.async_checkpoints",
  "train.divergence_factor",
)


def _umask():
  mask = os.umask(0)
  os.umask(mask)
  return mask


def sha256(path):
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def _config_hash(config_dict):
  return hashlib.sha256(json.dumps(config_dict, sort_keys=True, default=str).encode()).hexdigest()


def atomic_write(path, write):
  """Calls write(tmp_path), then renames onto path."""
  directory = os.path.dirname(path) or "."
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".")
  os.close(fd)
  try:
    write(tmp)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 whatever the umask says
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_json(path, obj):
  """Atomically writes obj as indented JSON (anything JSON lacks as its str)."""

  def write(tmp):
    with open(tmp, "w") as f:
      json.dump(obj, f, indent=2, sort_keys=True, default=str)

  atomic_write(path, write)


def write_text(path, text):
  """Atomically writes a UTF-8 text file."""

  def write(tmp):
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)

  atomic_write(path, write)


def code_version():
  """The git commit of the code (with a -dirty mark), or 'unknown' outside a checkout."""
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    commit = subprocess.run(
      ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()
    dirty = subprocess.run(
      ["git", "status", "--porcelain", "--untracked-files=no"],
      cwd=here,
      capture_output=True,
      text=True,
      timeout=10,
    ).stdout.strip()
    return commit + ("-dirty" if dirty else "")
  except (OSError, subprocess.SubprocessError):
    return "unknown"


def library_versions():
  # Imported here: the workdir contract is read by tools and tests that never load JAX.
  import flax
  import jax
  import optax
  import orbax.checkpoint as ocp

  return {
    "jax": jax.__version__,
    "flax": flax.__version__,
    "optax": optax.__version__,
    "orbax-checkpoint": getattr(ocp, "__version__", "unknown"),
  }


def _flatten(d, prefix=""):
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(_flatten(v, key + "."))
    else:
      out[key] = v
  return out


def _result_fields(config_dict):
  # Through JSON, as config.json holds it: tuples become lists, so a rerun compares like with like.
  flat = _flatten(json.loads(json.dumps(config_dict, default=str)))
  return {
    k: v
    for k, v in flat.items()
    if not any(k == f or k.startswith(f + ".") for f in RUNTIME_FIELDS)
  }


def check_local(path):
  """Results are written with local file operations (temp file + rename) that object stores lack;
  a gs:// path would silently become a local folder named "gs:"."""
  if "://" in str(path):
    raise ValueError(
      f"--workdir={path} is a remote URL: use a local or mounted path (e.g. a "
      "gcsfuse mount of the bucket)."
    )


def read_config(config_path):
  """The config a workdir's config.json records; ValueError if the file is damaged."""
  damaged = (
    f"{config_path} is damaged ({{}}): restore it, or move the workdir aside and use a "
    "new --workdir."
  )
  try:
    with open(config_path) as f:
      record = json.load(f)
    config = record["config"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ValueError(damaged.format(type(e).__name__)) from None
  if "config_sha256" in record and record["config_sha256"] != _config_hash(config):
    raise ValueError(damaged.format("its config does not match its hash"))
  return config


class Workdir:
  """A run's directory. Creating it checks (or writes) config.json.

  config.json's `config` is the config as resolved (resolve.Config.record: what every reader of a
  workdir reads, and what a rerun is checked against), `asked` the config as given, when known.
  With write=False (processes other than 0 of a multi-host run) it checks but writes nothing.
  """

  def __init__(self, path, config_dict, asked=None, write=True):
    check_local(path)
    self.path, self.writer = path, write
    config_path = os.path.join(path, "config.json")
    if os.path.isfile(path):
      raise ValueError(f"--workdir={path} is a file, not a directory: use a directory path.")
    if os.path.exists(config_path):
      previous = read_config(config_path)
      old, new = _result_fields(previous), _result_fields(config_dict)
      changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
      if changed:
        k = changed[0]
        raise ValueError(
          f"--workdir={path} holds a run of a different config ({k}: "
          f"{old.get(k)!r} there, {new.get(k)!r} now); use a new --workdir."
        )
    if not write:
      return
    record = {
      "config": config_dict,
      **({"asked": asked} if asked is not None else {}),
      "config_sha256": _config_hash(config_dict),
      "code_version": code_version(),
      "versions": library_versions(),
    }
    try:
      write_json(config_path, record)
    except OSError as e:
      raise ValueError(
        f"--workdir={path} cannot be written ({e.strerror}): choose a directory you may write to."
      ) from None

  def record_failure(self, stage, members, message):
    """Adds a failed stage (its members never became results) to failed.json."""
    if not self.writer:
      return
    path = os.path.join(self.path, "failed.json")
    failures = []
    if os.path.exists(path):
      with open(path) as f:
        failures = json.load(f)
    failures.append({"stage": stage, "members": list(members), "message": message})
    write_json(path, failures)

  def cell_dir(self, run):
    return os.path.join(self.path, "cells", run)

  def cell_done(self, run):
    """Whether the cell finished and its files still match its manifest; a damaged cell is named
    in the log and counts as unfinished, so the run recomputes it."""
    directory = self.cell_dir(run)
    manifest = os.path.join(directory, "manifest.json")
    if not os.path.exists(manifest):
      return False
    try:
      with open(manifest) as f:
        files = json.load(f)["files"]
      for name, want in files.items():
        if sha256(os.path.join(directory, name)) != want["sha256"]:
          raise ValueError(f"{name} does not match its manifest")
    except (OSError, ValueError, KeyError, TypeError) as e:
      logging.warning("cells/%s is damaged (%s): the cell is recomputed", run, e)
      return False
    return True

  def save_cell(self, run, metrics, items):
    """Items, metrics, then manifest.json (rows and hash of each): the manifest marks it finished."""
    if not self.writer:
      return
    directory = self.cell_dir(run)
    frames = {"items.csv": items, "metrics.csv": metrics}
    for name, frame in frames.items():
      atomic_write(os.path.join(directory, name), lambda t, f=frame: f.to_csv(t, index=False))
    write_json(
      os.path.join(directory, "manifest.json"),
      {
        "files": {
          name: {"rows": len(frame), "sha256": sha256(os.path.join(directory, name))}
          for name, frame in frames.items()
        }
      },
    )

  def merge(self, runs):
    """(metrics, items) of the finished cells among `runs`, in that order; (None, None) if none.

    Reads only: runtime/results.py writes the merged files once the analysis has run."""
    done = [r for r in runs if self.cell_done(r)]
    metrics = [pd.read_csv(os.path.join(self.cell_dir(r), "metrics.csv")) for r in done]
    items = [
      pd.read_csv(
        os.path.join(self.cell_dir(r), "items.csv"), keep_default_na=False, na_values=[""]
      )
      for r in done
    ]
    if not metrics:
      return None, None
    return pd.concat(metrics, ignore_index=True), pd.concat(items, ignore_index=True)
