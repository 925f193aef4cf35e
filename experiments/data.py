"""Training batches of a pack: stacked [E, B, T] arrays, a pure function of seed and step.

A stream is what a stage trains on. Batches are a function of (data seed, step) only, so a resumed
stage reads exactly the rows an uninterrupted one would; cells with the same seed share rows
(common random numbers). An on-policy stream (emotion RL) also reads the current parameters, and
records what it sampled in its `journal`, which the stage keeps with its checkpoints.
"""

import itertools

import jax
import numpy as np

STAGE2_SEED_OFFSET = 10_000  # the persona phase reads its own data stream, disjoint from stage 1's
# Fine-tuning seed k > 0 of base seed s reads the persona stream of s + k × this (grid seeds stay
# below it), so its data order is its own and fine-tuning seed 0 reads what it always read.
FINETUNE_SEED_STRIDE = 1_000_000
BASE_FIELDS = ("tokens", "mask")
PERSONA_FIELDS = ("tokens", "mask", "alt_tokens", "alt_mask", "has_alt", "u")
PACKED_FIELDS = ("segment_ids", "positions")  # added to every part of a packed batch


class BatchStream:
  """A pack's batches: the global [E, B, ...] shapes, and step → numpy arrays.

  stream(step) gives every member's rows; stream(step, members, rows) only a block of them (the
  slices one process of a multi-host run holds), with the same values. `state` is passed to
  on-policy streams only (built with on_policy=True); `journal` holds their per-step records.
  """

  def __init__(self, shapes, build, on_policy=False):
    self.shapes, self._build, self.on_policy, self.journal = shapes, build, on_policy, []

  def __call__(self, step, members=slice(None), rows=slice(None), state=None):
    if self.on_policy:
      return self._build(step, members, rows, state)
    return self._build(step, members, rows)


def take(tree_E, index):
  """Rows `index` of every leaf's leading (member) axis."""
  index = np.asarray(index)
  return jax.tree.map(lambda a: a[index], tree_E)


class Batches:
  """Stacked [E, B, T] batches for a pack; rows are shared by cells with the same seed.

  pack_sequences=True fills each row with several examples (tasks/sequence_packing.py): the same
  number of rows per step carries more examples, and every part gains segment ids and positions.
  """

  def __init__(self, corpus, data_seed, batch_size, pack_sequences=False):
    self.corpus, self.data_seed, self.batch_size = corpus, data_seed, batch_size
    self.pack_sequences = pack_sequences

  def _rows(self, mixture, seed, step, n, rows):
    read = self.corpus.packed_batch if self.pack_sequences else self.corpus.batch
    return read(mixture, seed, step, n, rows)

  def _fields(self, fields):
    return fields + PACKED_FIELDS if self.pack_sequences else fields

  def _shapes(self, fields, e, b):
    t = self.corpus.seq_len
    per_row = () if self.pack_sequences else ("has_alt", "u")  # packed: one value per token
    return {f: (e, b) if f in per_row else (e, b, t) for f in self._fields(fields)}

  def base(self, seeds):
    """Stage 1: base-mixture rows only, one member per seed."""
    seeds = list(seeds)
    fields = self._fields(BASE_FIELDS)

    def fn(step, members, rows):
      parts = [
        self._rows("base", self.data_seed + s, step, self.batch_size, rows) for s in seeds[members]
      ]
      return {"base": {k: np.stack([p[k] for p in parts]) for k in fields}}

    return BatchStream({"base": self._shapes(BASE_FIELDS, len(seeds), self.batch_size)}, fn)

  def persona(self, cells, offset):
    """Half base rows, half rows of each cell's persona mixture (its seed's stream + offset, and
    its fine-tuning seed's stride)."""
    half = self.batch_size // 2
    all_cells = list(cells)
    base_fields, persona_fields = self._fields(BASE_FIELDS), self._fields(PERSONA_FIELDS)

    def fn(step, members, rows):
      # (mixture, seed) of each cell's base and persona rows; λ = 0 cells still need persona rows
      # of the right shape (their weight is exactly zero), so `none` reads the warm set.
      seeds = [
        self.data_seed + offset + c.seed + FINETUNE_SEED_STRIDE * getattr(c, "finetune_seed", 0)
        for c in all_cells[members]
      ]
      keys = [
        (("base", s), (c.persona if c.persona != "none" else "warm", s))
        for c, s in zip(all_cells[members], seeds)
      ]
      cache = {}
      for key in itertools.chain.from_iterable(keys):
        if key not in cache:  # cells of one seed share rows: build each batch once
          cache[key] = self._rows(*key, step, half, rows)
      return {
        "base": {f: np.stack([cache[b][f] for b, _ in keys]) for f in base_fields},
        "persona": {f: np.stack([cache[p][f] for _, p in keys]) for f in persona_fields},
      }

    e = len(all_cells)
    return BatchStream(
      {
        "base": self._shapes(BASE_FIELDS, e, half),
        "persona": self._shapes(PERSONA_FIELDS, e, half),
      },
      fn,
    )
