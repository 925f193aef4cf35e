"""The base-model store: stage-1 models trained once, kept, and reused by any run whose key matches.

A base model is a pure function of its key (experiments/base_models.py builds it): the world
config, a hash of the tokenized base-training data, the model config, the base-training fields of
the train section, its seed, how a pack's members run and the mesh's data axes (both change the
last float bits). The environment that computed it (jax's version and backend) is recorded beside
the key and must match as well.

  <store>/<preset>-<digest>/     digest: SHA-256 of the key (without the seed) and environment
    key.json                     that key and environment in full
    seed<s>/
      manifest.json              written last, and only if absent: the first complete copy wins.
                                 Key, environment, seed, the loss curve, and every file of the
                                 attempt below with its size and SHA-256
      attempt-<id>/              one writer's orbax checkpoint: state/ (the parameters) and
                                 opt_state/ (base training's final optimizer state), each with a
                                 leading member axis of 1
      competence.json            the base model's error rates, once a run has evaluated it

A reader trusts a base only through its manifest. No manifest: the base is not stored (a writer is
still at work, or was killed; `python -m experiments.tools.bases prune` removes its attempt). A
manifest that does not match its key, or files that do not match the manifest, are named in the
log, set aside (manifest.json.damaged-<id>) and the base is trained again; they are never used.
Publishing is one exclusive create of manifest.json (on a local disk a hard link of a finished
temporary file, which fails if the name exists; on gs:// an upload with if_generation_match=0,
which GCS refuses if the object exists), so two processes that train the same base leave one valid
copy, and the later one removes its attempt. The store is a local directory or a gs:// URL, read
through etils.epath.
"""

import dataclasses
import datetime
import hashlib
import json
import os
import string
import uuid

from absl import logging
from etils import epath
import jax
import orbax.checkpoint as ocp

from experiments.runtime.workdir import is_remote, remove_tree, write_json

# configs/common.py's runtime.base_store, the store a command without a config reads.
DEFAULT_ROOT = "$XDG_CACHE_HOME/warmth-sim/bases"
MANIFEST = "manifest.json"
KEY_FILE = "key.json"
COMPETENCE = "competence.json"


def environment():
  """What computed a base besides its key: the same key on another jax or backend can differ."""
  return {"jax": jax.__version__, "backend": jax.default_backend()}


def _canonical(obj):
  """obj as JSON holds it (tuples become lists), so a key compares equal after a round trip."""
  return json.loads(json.dumps(obj, sort_keys=True, default=str))


@dataclasses.dataclass(frozen=True)
class Key:
  """The key of a preset's base models, one per seed: fields and environment as JSON data."""

  preset: str
  fields: dict
  env: dict

  @classmethod
  def of(cls, preset, fields, env=None):
    return cls(preset, _canonical(fields), _canonical(env or environment()))

  @property
  def name(self):
    record = json.dumps({"key": self.fields, "env": self.env}, sort_keys=True)
    return f"{self.preset}-{hashlib.sha256(record.encode()).hexdigest()[:12]}"


@dataclasses.dataclass
class Stored:
  """One seed's base model as the store holds it (numpy arrays, leading member axis 1)."""

  state: dict  # nnx.to_pure_dict of the parameters
  opt_state: list  # the optimizer state's leaves, in tree order
  curve: list  # [[step, loss], ...] at every logged step of base training
  path: str  # the seed's directory in the store


class Damaged(Exception):
  """A stored base that must not be used; the message says what is wrong with it."""


def _checkpointer():
  """orbax's own: with several processes its saves and restores are collective (every process
  calls them, process 0 writes the host arrays), as the rest of a run's checkpoints are."""
  return ocp.Checkpointer(ocp.CompositeCheckpointHandler())


def _size_and_hash(path):
  data = epath.Path(path).read_bytes()
  return [len(data), hashlib.sha256(data).hexdigest()]


def _walk(directory):
  """Every file under `directory` (an epath.Path), as epath.Paths; recursion by hand: epath's
  walk drops a gs:// path's scheme and its glob refuses `**` on GCS."""
  for path in sorted(directory.iterdir()):
    if path.is_dir():
      yield from _walk(path)
    else:
      yield path


def _files(directory):
  """{relative path: [size, sha256]} of every file under directory."""
  root = epath.Path(directory)
  return {str(p.relative_to(root)): _size_and_hash(p) for p in _walk(root)}


def _create_exclusive(path, data):
  """Creates `path` with `data` unless it exists; True if this call created it. The file appears
  whole or not at all: on a local disk written under a temporary name, then hard-linked into
  place; on gs:// uploaded on the condition that no object of that name exists."""
  if is_remote(path):
    # google-cloud-storage, not epath: fsspec's gcsfs has no conditional create.
    from google.api_core import exceptions  # pylint: disable=g-import-not-at-top
    from google.cloud import storage  # pylint: disable=g-import-not-at-top

    bucket, _, name = path[len("gs://") :].partition("/")
    try:
      storage.Client().bucket(bucket).blob(name).upload_from_string(data, if_generation_match=0)
    except exceptions.PreconditionFailed:
      return False
    return True
  tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex}")
  try:
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    try:
      os.link(tmp, path)
    except FileExistsError:
      return False
    return True
  finally:
    os.remove(tmp)


def resolve(root):
  """The directory `root` names: ~ and $VARIABLES expanded, $XDG_CACHE_HOME being ~/.cache where
  the environment does not set it (the XDG base directory convention)."""
  env = {"XDG_CACHE_HOME": os.path.join(os.path.expanduser("~"), ".cache"), **os.environ}
  root = string.Template(str(root)).safe_substitute(env)
  return root.rstrip("/") if is_remote(root) else os.path.abspath(os.path.expanduser(root))


class BaseStore:
  """A directory of stored base models (layout in the module docstring)."""

  def __init__(self, root):
    if is_remote(root) and not str(root).startswith("gs://"):
      raise ValueError(
        f"runtime.base_store={root} has a scheme this tool does not write to: use a local path, "
        'gs://bucket/path, or "" to train base models in every run.'
      )
    self.root = resolve(root)

  def seed_dir(self, key, seed):
    return os.path.join(self.root, key.name, f"seed{seed}")

  def fetch(self, key, seed, label, target):
    """The stored base of `seed`, or None (not stored, or damaged: named in the log).

    target: (state, opt_state) trees of numpy arrays shaped as stored, which the restored arrays
    take the place of (a checkpoint alone does not say that a dict's keys were integers)."""
    directory = self.seed_dir(key, seed)
    manifest = os.path.join(directory, MANIFEST)
    try:
      raw = epath.Path(manifest).read_bytes()
    except FileNotFoundError:
      if _names(directory, lambda n: n.startswith("attempt-")):
        logging.info(
          "%s: %s holds no finished copy (a writer was killed, or is still at work): training it",
          label,
          directory,
        )
      other = self._other_environment(key, seed)
      if other is not None:
        logging.info(
          "%s: the stored base %s was computed with jax %s on %s, this run has jax %s "
          "on %s: training it anew",
          label,
          other[0],
          other[1].get("jax"),
          other[1].get("backend"),
          key.env["jax"],
          key.env["backend"],
        )
      return None
    try:
      return self._read(directory, raw, key, seed, target)
    except Damaged as e:
      logging.warning(
        "%s: the stored base %s %s: it is set aside and trained anew, never used",
        label,
        directory,
        e,
      )
      self._set_aside(manifest, raw)
      return None

  def _read(self, directory, raw, key, seed, target=None):
    try:
      m = json.loads(raw)
    except ValueError:
      raise Damaged("has a manifest that is not JSON") from None
    if (
      not isinstance(m, dict)
      or m.get("key") != key.fields
      or m.get("env") != key.env
      or (m.get("seed") != seed or m.get("preset") != key.preset)
    ):
      raise Damaged("has a manifest that does not match its key")
    attempt = os.path.join(directory, str(m.get("attempt")))
    files = m.get("files") or {}
    if not files:
      raise Damaged("has a manifest that lists no files")
    for rel, want in files.items():
      path = os.path.join(attempt, rel)
      if not epath.Path(path).is_file():
        raise Damaged(f"lacks {rel}")
      if _size_and_hash(path) != list(want):
        raise Damaged(f"has a file {rel} that does not match its manifest")
    if target is None:  # a check of the files alone (bases list)
      return None
    try:
      restored = _checkpointer().restore(
        attempt,
        ocp.args.Composite(
          state=ocp.args.StandardRestore(target[0]),
          opt_state=ocp.args.StandardRestore(list(target[1])),
        ),
      )
    except Exception as e:  # pylint: disable=broad-except  (any unreadable checkpoint is damaged)
      raise Damaged(f"cannot be read by orbax ({type(e).__name__}: {e})") from None
    return Stored(restored["state"], list(restored["opt_state"]), m["curve"], directory)

  def _set_aside(self, manifest, raw):
    """Renames a damaged manifest out of the way, unless another process already replaced it."""
    try:
      if epath.Path(manifest).read_bytes() != raw:
        return
      epath.Path(manifest).rename(f"{manifest}.damaged-{uuid.uuid4().hex[:8]}")
    except FileNotFoundError:
      pass

  def _other_environment(self, key, seed):
    """(directory, env) of this key's base stored by another jax version or backend, or None."""
    for entry in self._key_dirs(key.preset):
      record = _read_json(os.path.join(entry, KEY_FILE))
      if (
        record
        and record.get("key") == key.fields
        and record.get("env") != key.env
        and epath.Path(entry, f"seed{seed}", MANIFEST).exists()
      ):
        return os.path.join(entry, f"seed{seed}"), record.get("env") or {}
    return None

  def _key_dirs(self, preset=None):
    return [
      os.path.join(self.root, d)
      for d in _names(
        self.root,
        lambda d: not d.startswith(".") and (preset is None or d.startswith(preset + "-")),
        dirs=True,
      )
    ]

  def publish(self, key, seed, state, opt_state, curve, attempt=None):
    """Stores one seed's base (numpy trees with a leading axis of 1); True if this copy became
    the stored one, False if another writer had published it first (this attempt is removed).

    With several processes every one calls it, with the same `attempt` id (process 0's): the
    orbax save is collective; process 0 alone writes the manifest, and its answer is returned."""
    directory = self.seed_dir(key, seed)
    epath.Path(directory).mkdir(parents=True, exist_ok=True)
    writer = jax.process_index() == 0
    key_file = os.path.join(os.path.dirname(directory), KEY_FILE)
    if writer and not epath.Path(key_file).exists():
      write_json(key_file, {"preset": key.preset, "key": key.fields, "env": key.env})
    attempt = f"attempt-{attempt or uuid.uuid4().hex[:12]}"
    path = os.path.join(directory, attempt)
    _checkpointer().save(
      path,
      ocp.args.Composite(
        state=ocp.args.StandardSave(state), opt_state=ocp.args.StandardSave(opt_state)
      ),
    )
    if not writer:
      return False
    manifest = {
      "preset": key.preset,
      "seed": seed,
      "key": key.fields,
      "env": key.env,
      "attempt": attempt,
      "files": _files(path),
      "curve": _canonical(curve),
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    data = json.dumps(manifest, indent=1, sort_keys=True).encode()
    if _create_exclusive(os.path.join(directory, MANIFEST), data):
      return True
    remove_tree(path)
    return False

  def note_competence(self, key, seed, values):
    """Records a base model's measured error rates beside it (read by `bases list`)."""
    directory = self.seed_dir(key, seed)
    if epath.Path(directory, MANIFEST).exists():
      write_json(os.path.join(directory, COMPETENCE), _canonical(values))

  def entries(self, verify=True):
    """One dict per seed directory: preset, key name, seed, status (stored, damaged: why, or
    incomplete: no manifest), size in bytes, key fields, environment, competence, created, and
    `leftovers` (attempts no manifest names, manifests set aside)."""
    out = []
    for entry in self._key_dirs():
      record = _read_json(os.path.join(entry, KEY_FILE)) or {}
      for name in _names(entry, lambda n: n.startswith("seed"), dirs=True):
        directory = os.path.join(entry, name)
        manifest = _read_json(os.path.join(directory, MANIFEST))
        status = "incomplete"
        if manifest is not None:
          status = "stored"
          if verify:
            key = Key(record.get("preset", ""), record.get("key"), record.get("env"))
            try:
              raw = epath.Path(directory, MANIFEST).read_bytes()
              self._read(directory, raw, key, int(name[4:]))
            except (Damaged, ValueError) as e:
              status = f"damaged: {e}"
        attempt = (manifest or {}).get("attempt")
        leftovers = _names(
          directory, lambda n: (n.startswith("attempt-") and n != attempt) or ".damaged-" in n
        )
        out.append(
          {
            "preset": record.get("preset", entry.rsplit("-", 1)[0]),
            "key": os.path.basename(entry),
            "seed": name[4:],
            "status": status,
            "bytes": _size(directory),
            "fields": record.get("key") or {},
            "env": record.get("env") or {},
            "path": directory,
            "competence": _read_json(os.path.join(directory, COMPETENCE)),
            "created": (manifest or {}).get("created", ""),
            "leftovers": leftovers,
          }
        )
    return out

  def remove(self, path):
    """Deletes one seed directory (and its key directory once no seed is left)."""
    remove_tree(path)
    parent = os.path.dirname(path)
    if not _names(parent, lambda n: n.startswith("seed")):
      remove_tree(parent)


def _names(directory, keep, dirs=False):
  """Sorted names in `directory` that keep(name) accepts (directories only, if dirs); [] if it
  does not exist."""
  path = epath.Path(directory)
  if not path.is_dir():
    return []
  return sorted(p.name for p in path.iterdir() if keep(p.name) and (not dirs or p.is_dir()))


def _read_json(path):
  try:
    return json.loads(epath.Path(path).read_text())
  except (OSError, ValueError):
    return None


def _size(directory):
  return sum(p.stat().length for p in _walk(epath.Path(directory)))
