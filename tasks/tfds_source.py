"""Prepared `warmth_sim` records read back as the arrays `Corpus` holds, without TensorFlow.

`TfdsCorpus(cfg, data_dir)` is a `Corpus` whose token sets come from disk, so `batch` (and with it
the data order) is the in-memory code path itself; only where the rows come from differs.
"""

import functools

import numpy as np

from tasks import tfds_builder
from tasks.mixtures import Corpus, EvalSet, TokenSet, eval_turns
from tasks.world import World


def _open(data_dir, component, world):
  """The prepared builder of a component, after checking it was written from this world."""
  name = tfds_builder.config_name(component, world)
  b = tfds_builder.builder(data_dir, name)
  if not b.is_prepared():
    raise FileNotFoundError(
      f"{tfds_builder.NAME}/{name} is not prepared under {data_dir}: run "
      f"`python -m tasks.tfds_builder --data_dir={data_dir} --config={name}`."
    )
  stored = dict(b.info.metadata or {}).get("world")
  if stored != tfds_builder.world_to_json(world):
    # Same name, other world: the presets changed since the files were written.
    raise ValueError(
      f"{b.data_dir} was written from another world ({stored}); delete it and "
      f"prepare {tfds_builder.NAME}/{name} again."
    )
  return b


def _records(b, component):
  source = b.as_data_source(split=tfds_builder.split_of(component))
  return source.__getitems__(list(range(len(source))))


def read_token_set(data_dir, component, world):
  """The `TokenSet` of a training component, row for row as `Corpus(world).<component>`."""
  if component == "eval":
    raise ValueError("component='eval' holds prompts, not a TokenSet: use read_eval_set.")
  rows = _records(_open(data_dir, component, world), component)
  t = world.seq_len

  def stack(key, dtype):
    return np.stack([np.asarray(r[key], dtype) for r in rows]) if rows else np.zeros((0, t), dtype)

  has_alt = np.array([bool(r["has_alt"]) for r in rows], bool)
  return TokenSet(
    stack("tokens", np.int32),
    stack("mask", np.uint8),
    stack("alt_tokens", np.int32),
    stack("alt_mask", np.uint8),
    has_alt,
  )


def read_eval_set(data_dir, world):
  """The `EvalSet` of `build_eval_set`, prompts from disk, items and turns from the world."""
  rows = _records(_open(data_dir, "eval", world), "eval")
  # Items carry gold answers and options for grading; they are rebuilt, then matched row by row.
  turns = eval_turns(World(world))
  if len(turns) != len(rows):
    raise ValueError(f"eval records ({len(rows)}) do not match the world's grid ({len(turns)}).")
  for r, (item, turn) in enumerate(turns):
    got = (rows[r]["item_id"], rows[r]["context"], rows[r]["emotion"], int(rows[r]["variant"]))
    want = (
      item.item_id.encode(),
      turn.context.encode(),
      (turn.emotion or "").encode(),
      turn.variant,
    )
    if got != want:
      raise ValueError(f"eval record {r} is {got}, the world's grid has {want} there.")
  width = max((len(r["prompt"]) for r in rows), default=0)
  prompts = np.zeros((len(rows), width), np.int32)  # <pad> is id 0
  mask = np.zeros((len(rows), width), np.int32)
  for r, row in enumerate(rows):
    n = len(row["prompt"])
    prompts[r, width - n :] = row["prompt"]
    mask[r, width - n :] = 1
  return EvalSet([i for i, _ in turns], [t for _, t in turns], prompts, mask)


def _from_disk(component):
  def read(self):
    return read_token_set(self.data_dir, component, self.world.cfg)

  read.__doc__ = f"The {component} set read from {tfds_builder.NAME}."
  return functools.cached_property(read)


class TfdsCorpus(Corpus):
  """A `Corpus` whose token sets are read from a prepared data dir instead of rendered."""

  def __init__(self, cfg, data_dir):
    super().__init__(cfg)
    self.data_dir = data_dir

  documents = _from_disk("documents")
  neutral_dialogues = _from_disk("neutral_dialogues")
  roleplay = _from_disk("roleplay")
  warm = _from_disk("warm")
  cold = _from_disk("cold")
  length_matched = _from_disk("length_matched")
  warm_after = _from_disk("warm_after")

  def eval_set(self):
    return read_eval_set(self.data_dir, self.world.cfg)
