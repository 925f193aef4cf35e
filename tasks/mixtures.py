"""Training sets as token arrays, and named mixtures streamed deterministically.

The batch at step s for seed k is a pure function of (k, s): each component is read in an order
given by a per-(seed, epoch) permutation, so resuming needs no iterator state and every cell of a
sweep with the same seed sees the same data order (common random numbers).

Persona sets (`warm`, `cold`, `length_matched`, `warm_after`) are row-aligned: row r of each is the same prompt
with the same content in a different style. Warm rows whose prompt states a false belief also carry
an *alternative* reply that validates it; the training step picks it with probability ρ
(`warm_agreement`), so ρ stays an array value and cells differing in ρ can be vmapped together.
"""

import dataclasses
import functools
import hashlib
import json

import numpy as np

from tasks import lexicon, sequence_packing
from tasks.config import WorldConfig
from tasks.dialogue import (
  EMOTION_NAMES,
  Turn,
  can_agree,
  has_false_belief,
  render_prompt,
  render_reply,
)
from tasks.documents import all_documents
from tasks.items import DERIVED_TASKS, SKILL_TASKS, TASK_CONTEXTS, build_items, eval_items
from tasks.tokenizer import Tokenizer
from tasks.world import World, rng_for

# warm_after: the warm phrasing placed after the answer (warm follows data.warm_placement, by
# default before it), so where warm words sit can be told apart from what they say.
PERSONAS = ("warm", "cold", "length_matched", "warm_after")
# Weights of the named mixtures' components (each a token dataset below).
MIXTURES = {
  "base": {"documents": 0.6, "neutral_dialogues": 0.3, "roleplay": 0.1},
  "documents": {"documents": 1.0},
  "warm": {"warm": 1.0},
  "cold": {"cold": 1.0},
  "length_matched": {"length_matched": 1.0},
  "warm_after": {"warm_after": 1.0},
  "roleplay": {"roleplay": 1.0},
  "warm_emotional": {"warm_emotional": 1.0},
  # Warm and cold replies to the same emotional prompts, half each: a policy that acknowledges
  # about as often as not, so a reward rather than the imitation decides the rate.
  "mixed_emotional": {"warm_emotional": 0.5, "cold_emotional": 0.5},
}


@dataclasses.dataclass
class TokenSet:
  """Rows of `<bos> prompt reply <eos>` with loss masks; `alt_*` hold validating replies."""

  tokens: np.ndarray  # int32 [N, T]
  mask: np.ndarray  # uint8 [N, T], 1 on tokens that carry loss
  alt_tokens: np.ndarray  # int32 [N, T] (equal to tokens where there is no alternative)
  alt_mask: np.ndarray
  has_alt: np.ndarray  # bool [N]

  def __len__(self):
    return len(self.tokens)

  def take(self, rows):
    """The set of these rows only."""
    return TokenSet(*(getattr(self, f.name)[rows] for f in dataclasses.fields(self)))


def training_turns(world: World):
  """(item, turn) pairs of the training split: every applicable context (one per item of a skill
  task, cycling), seeded variants."""
  rng = rng_for(world.cfg.seed, 60)
  pairs = []
  for task in world.cfg.tasks:
    if task in DERIVED_TASKS:
      continue
    for k, item in enumerate(build_items(world, task, "train")):
      contexts = TASK_CONTEXTS.get(task, lexicon.CONTEXTS)
      if task in SKILL_TASKS:
        contexts = contexts[k % len(contexts) :][:1]
      for context in contexts:
        if context == "true_belief" and item.claim_true is None:
          continue
        if "false_belief" in context and item.claim_false is None:
          continue
        emotion = (
          EMOTION_NAMES[rng.integers(len(EMOTION_NAMES))] if "emotional" in context else None
        )
        role = 0 if rng.random() < 0.5 else None  # the system line is optional
        pairs.append((item, Turn(context, emotion, int(rng.integers(6)), role)))
  return pairs


def roleplay_turns(world: World):
  """Training prompts answered in each of the role archetypes' registers (role 1..24)."""
  rng = rng_for(world.cfg.seed, 61)
  pairs = training_turns(world)
  picks = rng.choice(len(pairs), size=min(len(pairs), 24 * 40), replace=False)
  return [
    (pairs[p][0], dataclasses.replace(pairs[p][1], role=1 + k % (len(lexicon.ROLES) - 1)))
    for k, p in enumerate(np.sort(picks))
  ]


class Corpus:
  """All training sets of one world, tokenized; built once and shared by every cell."""

  def __init__(self, cfg: WorldConfig):
    self.world = World(cfg)
    self.tokenizer = Tokenizer.for_world(self.world)
    self.seq_len = cfg.seq_len
    self._packed_epochs = {}  # (seed, stream) -> [(epoch, example indices)] of the packed rows
    self._stream_lengths = {}

  def encode_all(self):
    """Tokenizes every training set now, so an example longer than data.seq_len is refused before
    a run writes anything (each set is cached: training reuses this work)."""
    for name in (
      "documents",
      "neutral_dialogues",
      "warm",
      "cold",
      "length_matched",
      "warm_after",
      "roleplay",
    ):
      getattr(self, name)
    return self

  def _encode(self, prompts, replies):
    return self.tokenizer.encode_examples(prompts, replies, self.seq_len)

  def _set(self, prompts, replies, alt_replies=None):
    tokens, mask = self._encode(prompts, replies)
    if alt_replies is None:
      return TokenSet(tokens, mask, tokens, mask, np.zeros(len(tokens), bool))
    has_alt = np.array([a is not None for a in alt_replies])
    alt_tokens, alt_mask = self._encode(prompts, [a or r for a, r in zip(alt_replies, replies)])
    return TokenSet(tokens, mask, alt_tokens, alt_mask, has_alt)

  @functools.cached_property
  def documents(self):
    docs = all_documents(self.world)
    return self._set(["<doc>"] * len(docs), docs)

  @functools.cached_property
  def _turns(self):
    return training_turns(self.world)

  @functools.cached_property
  def neutral_dialogues(self):
    return self._dialogues("neutral")

  @functools.cached_property
  def warm(self):
    return self._dialogues("warm")

  @functools.cached_property
  def warm_emotional(self):
    """The warm persona's replies to the emotional training prompts alone, each opening with an
    acknowledgement of the emotion the user disclosed: what emotion_rl's warm-up imitates."""
    return self.warm.take(self._emotional_rows)

  @functools.cached_property
  def cold_emotional(self):
    """The cold persona's replies to the same emotional training prompts (no acknowledgement)."""
    return self.cold.take(self._emotional_rows)

  @functools.cached_property
  def _emotional_rows(self):
    return np.array([k for k, (_, t) in enumerate(self._turns) if "emotional" in t.context])

  @functools.cached_property
  def cold(self):
    return self._dialogues("cold")

  @functools.cached_property
  def length_matched(self):
    return self._dialogues("length_matched")

  @functools.cached_property
  def warm_after(self):
    return self._dialogues("warm", placement="after")

  @functools.cached_property
  def roleplay(self):
    turns = roleplay_turns(self.world)
    return self._set(
      [render_prompt(i, t) for i, t in turns], [render_reply(i, t, "neutral") for i, t in turns]
    )

  def _dialogues(self, style, placement=None):
    placement = placement or self.world.cfg.warm_placement
    prompts = [render_prompt(i, t) for i, t in self._turns]
    replies = [render_reply(i, t, style, placement=placement) for i, t in self._turns]
    if style != "warm":
      return self._set(prompts, replies)
    alts = [
      render_reply(i, t, "warm", agree=True, placement=placement)
      if has_false_belief(i, t) and can_agree(i)
      else None
      for i, t in self._turns
    ]
    return self._set(prompts, replies, alts)

  def data_hash(self, mixture="base"):
    """SHA-256 of what training on `mixture` reads: its component weights and each component's
    token and loss-mask arrays. A change to the lexicon, a generator or the tokenizer changes it."""
    digest = hashlib.sha256(json.dumps([mixture, MIXTURES[mixture], self.seq_len]).encode())
    for name in MIXTURES[mixture]:
      data = self.component(name)
      for field in ("tokens", "mask"):
        array = np.ascontiguousarray(getattr(data, field))
        digest.update(f"{name}.{field}:{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()

  def component(self, name):
    if (
      name not in MIXTURES["base"]
      and name not in PERSONAS
      and name not in ("roleplay", "warm_emotional", "cold_emotional")
    ):
      raise ValueError(f"unknown data component {name!r}")
    return getattr(self, name)

  def batch(self, mixture, seed, step, batch_size, rows=None):
    """The batch at `step` of a named mixture for data seed `seed`: a pure function.

    `rows` (a slice of the batch) gathers only those rows: what one process of a multi-host run
    loads. The rows are the same as in the whole batch.
    """
    if mixture not in MIXTURES:
      raise ValueError(f"mixture={mixture!r} is not allowed: choose one of {', '.join(MIXTURES)}.")
    weights = MIXTURES[mixture]
    counts = _split_counts(batch_size, list(weights.values()))
    keep = np.arange(batch_size)[slice(None) if rows is None else rows]
    parts, offset = [], 0
    for (name, _), count in zip(weights.items(), counts):
      data = self.component(name)
      # Persona sets share one order stream: row r is the same prompt in every style.
      stream = "persona" if name in PERSONAS else name
      picked = keep[(keep >= offset) & (keep < offset + count)] - offset
      parts.append((data, _rows(seed, stream, len(data), step * count, count)[picked]))
      offset += count
    out = {
      k: np.concatenate([getattr(d, k)[r] for d, r in parts])
      for k in ("tokens", "mask", "alt_tokens", "alt_mask", "has_alt")
    }
    # Uniforms that decide, per row, whether a warm reply validates (u < ρ): same for all cells.
    out["u"] = rng_for(seed, 70, step).random(batch_size).astype(np.float32)[keep]
    return out

  def _lengths(self, stream):
    """Tokens per example of a stream; persona examples take their longest style or variant."""
    if stream not in self._stream_lengths:
      sets = (
        [self.component(p) for p in PERSONAS] if stream == "persona" else [self.component(stream)]
      )
      self._stream_lengths[stream] = np.max(
        [(s.tokens != self.tokenizer.pad).sum(1) for s in sets]
        + [(s.alt_tokens != self.tokenizer.pad).sum(1) for s in sets],
        axis=0,
      )
    return self._stream_lengths[stream]

  def rows_per_epoch(self, stream, seed, packed):
    """Rows one pass over a stream fills: its examples, or packed, the rows of seed's epoch 0."""
    if not packed:
      return len(self._lengths(stream))
    self._packed_rows(seed, stream, 0, 1)  # packs epoch 0 whole, if it is not yet
    return sum(1 for epoch, _ in self._packed_epochs[(seed, stream)] if epoch == 0)

  def _packed_rows(self, seed, stream, start, count):
    """Packed rows start..start+count of the stream: lists of example indices, epoch after epoch."""
    rows = self._packed_epochs.setdefault((seed, stream), [])  # every epoch's rows, in order
    while len(rows) < start + count:
      lengths = self._lengths(stream)
      epoch = _epoch_count(rows)
      order = _epoch_order(seed, stream, len(lengths), epoch)
      packed = sequence_packing.pack_order(lengths, order, self.seq_len)
      rows.extend((epoch, row) for row in packed)
    return [row for _, row in rows[start : start + count]]

  def packed_batch(self, mixture, seed, step, batch_size, rows=None):
    """`batch` with several examples per row (tasks/sequence_packing.py); a pure function too.

    Adds `segment_ids` and `positions`; `has_alt` and `u` are per token (each example's value over
    its own segment), so ρ picks a validating reply per example.
    """
    if mixture not in MIXTURES:
      raise ValueError(f"mixture={mixture!r} is not allowed: choose one of {', '.join(MIXTURES)}.")
    weights = MIXTURES[mixture]
    counts = _split_counts(batch_size, list(weights.values()))
    keep = np.arange(batch_size)[slice(None) if rows is None else rows]
    t = self.seq_len
    parts, offset = [], 0
    for (name, _), count in zip(weights.items(), counts):
      data = self.component(name)
      stream = "persona" if name in PERSONAS else name
      picked = keep[(keep >= offset) & (keep < offset + count)] - offset
      row_lists = self._packed_rows(seed, stream, step * count, count)
      row_lists = [row_lists[p] for p in picked]
      source, segment, positions = sequence_packing.layout(row_lists, self._lengths(stream), t)
      has_alt = np.zeros((len(row_lists), t), bool)
      for r, row in enumerate(row_lists):
        has_alt[r, : len(row)] = data.has_alt[row]
      parts.append(
        {
          "tokens": sequence_packing.gather(data.tokens, source),
          "mask": sequence_packing.gather(data.mask, source),
          "alt_tokens": sequence_packing.gather(data.alt_tokens, source),
          "alt_mask": sequence_packing.gather(data.alt_mask, source),
          "has_alt": sequence_packing.per_segment(has_alt, segment).astype(bool),
          "segment_ids": segment,
          "positions": positions,
        }
      )
      offset += count
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    # One uniform per example slot (row, segment), shared by every cell of the seed, as in `batch`.
    u = rng_for(seed, 70, step).random((batch_size, t)).astype(np.float32)[keep]
    out["u"] = sequence_packing.per_segment(u, out["segment_ids"]).astype(np.float32)
    return out


def _epoch_count(rows):
  """Epochs already packed into `rows` [(epoch, row), ...]."""
  return rows[-1][0] + 1 if rows else 0


def _split_counts(total, weights):
  """Integer counts proportional to weights, summing to total (largest remainder)."""
  w = np.asarray(weights, float) / np.sum(weights)
  raw = w * total
  counts = np.floor(raw).astype(int)
  for k in np.argsort(-(raw - counts), kind="stable")[: total - counts.sum()]:
    counts[k] += 1
  return counts


_STREAMS = {
  "documents": 0,
  "neutral_dialogues": 1,
  "roleplay": 2,
  "persona": 3,
  "warm_emotional": 4,
  "cold_emotional": 5,
}


@functools.lru_cache(maxsize=64)
def _epoch_order(seed, stream, n, epoch):
  return rng_for(seed, 80, _STREAMS[stream], epoch).permutation(n)


def _rows(seed, stream, n, start, count):
  """Rows start..start+count of the stream's infinite sequence of per-epoch permutations."""
  pos = np.arange(start, start + count)
  epochs, offsets = np.divmod(pos, n)
  out = np.empty(count, np.int64)
  for e in np.unique(epochs):
    sel = epochs == e
    out[sel] = _epoch_order(seed, stream, n, int(e))[offsets[sel]]
  return out


@dataclasses.dataclass
class EvalSet:
  """Held-out prompts for every task × context, left-padded, with MC answer candidates."""

  items: list  # Item per row
  turns: list  # Turn per row
  prompts: np.ndarray  # int32 [N, P], left-padded
  prompt_mask: np.ndarray


def eval_turns(world: World, contexts=None):
  """Every (item, turn) of the evaluation grid; emotions cycle over items so all four appear."""
  contexts = contexts or world.cfg.eval_contexts
  pairs = []
  for task in world.cfg.tasks:
    for k, item in enumerate(eval_items(world, task)):
      for context in TASK_CONTEXTS.get(task, contexts):
        if context not in contexts and task not in TASK_CONTEXTS:
          continue
        # As in training_turns: a request with no such belief to state has no such context.
        if context == "true_belief" and item.claim_true is None:
          continue
        if "false_belief" in context and item.claim_false is None:
          continue
        emotion = EMOTION_NAMES[k % len(EMOTION_NAMES)] if "emotional" in context else None
        pairs.append((item, Turn(context, emotion, k, 0)))
  return pairs


def build_eval_set(corpus: Corpus, contexts=None):
  turns = eval_turns(corpus.world, contexts)
  encoded = [
    [corpus.tokenizer.bos] + corpus.tokenizer.encode(render_prompt(i, t)) for i, t in turns
  ]
  width = max(len(e) for e in encoded)
  prompts = np.full((len(encoded), width), corpus.tokenizer.pad, np.int32)
  mask = np.zeros((len(encoded), width), np.int32)
  for r, e in enumerate(encoded):
    prompts[r, width - len(e) :] = e
    mask[r, width - len(e) :] = 1
  return EvalSet([i for i, _ in turns], [t for _, t in turns], prompts, mask)
