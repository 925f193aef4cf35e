"""The workdir contract: config.json, and each finished cell's metrics.csv and items.csv.

A workdir is a local directory or an object-store URL (gs://bucket/path), read and written through
etils.epath. Every file appears whole or not at all, so a killed run never leaves a half-written
file that a rerun would trust: on a local disk it is written to a temporary file and renamed; on an
object store it is written locally and uploaded as one object, which the store creates only once
the upload completes. Each cell's manifest.json (row counts and SHA-256 of its files) is written
last, and a rerun recomputes a cell whose files no longer match it. config.json carries the hash of
its config likewise. A rerun with the same config resumes; a different config is refused. Local
files are created with the permissions the umask allows, as any other tool's would be.
"""

import hashlib
import json
import os
import subprocess
import tempfile

from absl import logging
from etils import epath
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


def is_remote(path):
  """Whether `path` is an object-store URL (gs://...), not a local path."""
  return "://" in str(path)


def sha256(path):
  return hashlib.sha256(epath.Path(path).read_bytes()).hexdigest()


def _config_hash(config_dict):
  return hashlib.sha256(json.dumps(config_dict, sort_keys=True, default=str).encode()).hexdigest()


def remove_tree(path):
  """Deletes a directory (or a bucket prefix) and everything under it; nothing if it is absent."""
  path = epath.Path(path)
  if path.exists():
    path.rmtree()


def put(src, path):
  """Moves the finished local file `src` to `path` in one step: a rename on a local disk (same
  file system), one upload to an object store (whose object exists only once whole)."""
  if is_remote(path):
    with open(src, "rb") as f:
      epath.Path(path).write_bytes(f.read())
    os.remove(src)
  else:
    os.replace(src, path)


def atomic_write(path, write):
  """Calls write(tmp_path) with a local temporary file, then puts it at `path` (put)."""
  if is_remote(path):
    with tempfile.TemporaryDirectory() as directory:
      tmp = os.path.join(directory, os.path.basename(path))
      write(tmp)
      put(tmp, path)
    return
  directory = os.path.dirname(path) or "."
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".")
  os.close(fd)
  try:
    write(tmp)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 whatever the umask says
    put(tmp, path)
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


def check_location(path):
  """A workdir is a local path or a gs:// URL; another scheme is refused before anything runs."""
  if is_remote(path) and not str(path).startswith("gs://"):
    raise ValueError(
      f"--workdir={path} has a scheme this tool does not write to: use a local path or "
      "gs://bucket/path."
    )


def check_local(path):
  """For a tool whose files are written with local operations only (calibrate)."""
  if is_remote(path):
    raise ValueError(f"--workdir={path} is a remote URL: this tool writes to a local path only.")


def read_csv(path, **kwargs):
  """pandas.read_csv of a local or object-store file."""
  with epath.Path(path).open("rb") as f:
    return pd.read_csv(f, **kwargs)


def read_json(path):
  with epath.Path(path).open("r") as f:
    return json.load(f)


def read_config(config_path):
  """The config a workdir's config.json records; ValueError if the file is damaged."""
  damaged = (
    f"{config_path} is damaged ({{}}): restore it, or move the workdir aside and use a "
    "new --workdir."
  )
  try:
    record = read_json(config_path)
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
    check_location(path)
    self.path, self.writer = str(path), write
    config_path = os.path.join(self.path, "config.json")
    if epath.Path(path).is_file():
      raise ValueError(f"--workdir={path} is a file, not a directory: use a directory path.")
    if epath.Path(config_path).exists():
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
    failures = read_json(path) if epath.Path(path).exists() else []
    failures.append({"stage": stage, "members": list(members), "message": message})
    write_json(path, failures)

  def cell_dir(self, run):
    return os.path.join(self.path, "cells", run)

  def cell_done(self, run):
    """Whether the cell finished and its files still match its manifest; a damaged cell is named
    in the log and counts as unfinished, so the run recomputes it."""
    directory = self.cell_dir(run)
    manifest = os.path.join(directory, "manifest.json")
    if not epath.Path(manifest).exists():
      return False
    try:
      files = read_json(manifest)["files"]
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
    metrics = [read_csv(os.path.join(self.cell_dir(r), "metrics.csv")) for r in done]
    items = [
      read_csv(os.path.join(self.cell_dir(r), "items.csv"), keep_default_na=False, na_values=[""])
      for r in done
    ]
    if not metrics:
      return None, None
    return pd.concat(metrics, ignore_index=True), pd.concat(items, ignore_index=True)
