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
PERSONA_FIELDS = ("tokens", "mask", "alt_tokens", "alt_mask", "has_alt", "u")


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
  """Stacked [E, B, T] batches for a pack; rows are shared by cells with the same seed."""

  def __init__(self, corpus, data_seed, batch_size):
    self.corpus, self.data_seed, self.batch_size = corpus, data_seed, batch_size

  def base(self, seeds):
    """Stage 1: base-mixture rows only, one member per seed."""
    seeds = list(seeds)
    def fn(step, members, rows):
      parts = [self.corpus.batch("base", self.data_seed + s, step, self.batch_size, rows)
               for s in seeds[members]]
      return {"base": {k: np.stack([p[k] for p in parts]) for k in ("tokens", "mask")}}
    shape = (len(seeds), self.batch_size, self.corpus.seq_len)
    return BatchStream({"base": {"tokens": shape, "mask": shape}}, fn)

  def persona(self, cells, offset):
    """Half base rows, half rows of each cell's persona mixture (its seed's stream + offset)."""
    half = self.batch_size // 2
    all_cells = list(cells)
    def fn(step, members, rows):
      # (mixture, seed) of each cell's base and persona rows; λ = 0 cells still need persona rows
      # of the right shape (their weight is exactly zero), so `none` reads the warm set.
      keys = [(("base", self.data_seed + offset + c.seed),
               (c.persona if c.persona != "none" else "warm", self.data_seed + offset + c.seed))
              for c in all_cells[members]]
      cache = {}
      for key in itertools.chain.from_iterable(keys):
        if key not in cache:  # cells of one seed share rows: build each batch once
          cache[key] = self.corpus.batch(*key, step, half, rows)
      return {"base": {f: np.stack([cache[b][f] for b, _ in keys]) for f in ("tokens", "mask")},
              "persona": {f: np.stack([cache[p][f] for _, p in keys]) for f in PERSONA_FIELDS}}
    e, t = len(all_cells), self.corpus.seq_len
    shapes = {"base": {"tokens": (e, half, t), "mask": (e, half, t)},
              "persona": {f: (e, half) if f in ("has_alt", "u") else (e, half, t)
                          for f in PERSONA_FIELDS}}
    return BatchStream(shapes, fn)
