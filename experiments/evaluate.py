"""Evaluation of a pack: greedy replies graded as a user reads them, plus log-likelihood MC.

`error` grades the generated reply (what the user reads); `mc_error` asks which answer option
the model finds most likely (what it knows). Both are per item, so cells can be compared paired.
"""
import functools
import time

from absl import logging
import jax
import numpy as np
import pandas as pd

from experiments.runtime import distributed, heartbeat
from experiments.runtime.members import over_members
from models.decode import generate_fn, score_fn
from tasks.grading import BEHAVIOURS, grade

ITEM_COLUMNS = ("task", "context", "emotion", "item_id", "error", "mc_error", "warmth") + BEHAVIOURS
# What a blind evaluation keeps of every other persona's replies.
BLIND_KEEPS = ("warmth", "well_formed")


BUCKET = 16  # batch widths are rounded up to a multiple of this: few shapes, few compilations


def buckets(lengths, batch_size):
  """(rows, width) batches over rows sorted by length: each batch only as wide as its longest row
  (rounded up to BUCKET), so short prompts do not pay for the longest one's padding."""
  order = np.argsort(lengths, kind="stable")
  out = []
  for i in range(0, len(order), batch_size):
    rows = order[i:i + batch_size]
    out.append((rows, int(min(-(-int(lengths[rows].max()) // BUCKET) * BUCKET, max(lengths)))))
  return out


class Progress:
  """Logs a pass over batches about ten times, and at least every 10 s: batches done, seconds so
  far, and the ETA; each batch is also where a SIGTERM stops the run."""

  def __init__(self, what, total, stage="evaluation", timed_only=False):
    """timed_only: only the 10-second lines (for passes too many or too short to narrate)."""
    self.what, self.total, self.stage = what, total, stage
    self.t0 = self.last = time.perf_counter()
    self.every = total + 1 if timed_only else max(1, total // 10)
    self.k = 0
    # Within one long batch (the first compiles), a line every ~10 s all the same.
    self.beat = heartbeat.Heartbeat(lambda: f"{self.name} {self.what}: batch {self.k + 1}/"
                                            f"{self.total} running")

  @property
  def name(self):
    return "eval" if self.stage == "evaluation" else self.stage

  def __enter__(self):
    self.beat.__enter__()
    return self

  def __exit__(self, *exc):
    return self.beat.__exit__(*exc)

  def done(self, k):
    distributed.stop_if_asked(f"{self.stage} ({self.what}) at batch {k} of {self.total}")
    self.k = k
    now = time.perf_counter()
    if k % self.every and (k != self.total or self.every > self.total) and now - self.last < 10:
      return
    self.last = now
    self.beat.touch()
    elapsed = now - self.t0
    logging.info("%s %s: %d/%d batches  %.0fs  ETA %.0fs", self.name, self.what, k, self.total,
                 elapsed, elapsed / k * (self.total - k))


def generate_replies(graphdef, state_E, evalset, tokenizer, max_new_tokens, batch_size,
                     intervention=None, intervention_on="response"):
  """Greedy replies of every member for every eval prompt: list (per member) of strings."""
  gen = functools.partial(generate_fn, graphdef, max_new_tokens=max_new_tokens,
                          eos_id=tokenizer.eos, pad_id=tokenizer.pad, intervention_on=intervention_on)
  in_axes = (0, None, None, None, None if intervention is None else 0)
  gen_E = jax.jit(over_members(gen, in_axes=in_axes))
  # Prompts are left-padded: a batch of short ones keeps only its last `width` columns.
  chunks = buckets(evalset.prompt_mask.sum(1), batch_size)
  n_members = jax.tree.leaves(state_E)[0].shape[0]
  tokens_ENN = np.zeros((n_members, len(evalset.items), max_new_tokens), np.int32)
  with Progress(f"replies of {n_members} model(s), {len(evalset.items)} prompts",
                len(chunks)) as progress:
    for k, (rows, width) in enumerate(chunks):
      iv = None if intervention is None else intervention(rows)
      tokens_EBN, _ = gen_E(state_E, evalset.prompts[rows, -width:],
                            evalset.prompt_mask[rows, -width:], None, iv)
      tokens_ENN[:, rows] = np.asarray(tokens_EBN)
      progress.done(k + 1)
  return decode_replies(tokens_ENN, tokenizer)


def decode_replies(tokens_ENN, tokenizer):
  """Reply text per member and prompt: tokens up to end-of-sequence, pads dropped."""
  return [[tokenizer.decode(row) for row in member] for member in tokens_ENN]


def mc_sequences(evalset, tokenizer):
  """One row per (eval row, option): prompt + the option's neutral answer, scored on the answer."""
  seqs, owners, is_gold = [], [], []
  for r, item in enumerate(evalset.items):
    prompt = evalset.prompts[r][evalset.prompt_mask[r] > 0].tolist()
    for option in item.options:
      answer = tokenizer.encode(item.answer_for(option)) + [tokenizer.eos]
      seqs.append((prompt, answer))
      owners.append(r)
      is_gold.append(option == item.gold)
  width = max((len(p) + len(a) for p, a in seqs), default=1)
  tokens = np.full((len(seqs), width), tokenizer.pad, np.int32)
  mask = np.zeros_like(tokens)
  target = np.zeros_like(tokens)
  for k, (p, a) in enumerate(seqs):
    tokens[k, :len(p) + len(a)] = p + a
    mask[k, :len(p) + len(a)] = 1
    target[k, len(p):len(p) + len(a)] = 1
  return tokens, mask, target, np.array(owners, int), np.array(is_gold, bool)


def mc_errors(graphdef, state_E, evalset, tokenizer, batch_size, intervention=None):
  """[E, N] multiple-choice error (NaN where the item has no options)."""
  tokens, mask, target, owners, is_gold = mc_sequences(evalset, tokenizer)
  n_members = jax.tree.leaves(state_E)[0].shape[0]
  errors = np.full((n_members, len(evalset.items)), np.nan)
  if len(tokens) == 0:
    return errors
  score_E = jax.jit(over_members(functools.partial(score_fn, graphdef),
                                 in_axes=(0, None, None, None)))
  scores = np.zeros((n_members, len(tokens)), np.float32)
  chunks = buckets(mask.sum(1), batch_size)  # right-padded: each keeps its first `width` columns
  with Progress(f"multiple choice of {n_members} model(s), {len(tokens)} options",
                len(chunks)) as progress:
    for k, (rows, width) in enumerate(chunks):
      scores[:, rows] = np.asarray(score_E(state_E, tokens[rows, :width], mask[rows, :width],
                                           target[rows, :width]))
      progress.done(k + 1)
  for r in np.unique(owners):
    sel = owners == r
    best = np.argmax(scores[:, sel], axis=1)
    errors[:, r] = ~is_gold[sel][best]
  return errors


def grade_replies(evalset, replies, mc_error_N, blind=False):
  """Per-item grading of one member's replies, as a DataFrame with ITEM_COLUMNS.

  blind: only the warmth score and well-formedness leave this function; the error, the
  behaviours and the reply itself (which would show whether the answer was right) are NaN or
  empty, as a blind evaluation of a non-control persona needs."""
  rows = []
  for r, (item, turn) in enumerate(zip(evalset.items, evalset.turns)):
    labels = grade(item, turn, replies[r])
    if blind:
      labels = {k: (v if k in BLIND_KEEPS else np.nan) for k, v in labels.items()}
    rows.append({"task": item.task, "context": turn.context, "emotion": turn.emotion or "none",
                 "item_id": item.item_id, "gold": item.gold, "mc_error": mc_error_N[r],
                 "reply": "" if blind else replies[r], **labels})
  return pd.DataFrame(rows)


def evaluate_pack(graphdef, state_E, evalset, tokenizer, eval_cfg, intervention=None,
                  graded=None):
  """Per-member DataFrames of graded items; graded[e] False grades member e blind (its
  multiple-choice pass is not run at all: grade_replies)."""
  replies = generate_replies(graphdef, state_E, evalset, tokenizer, eval_cfg.max_new_tokens,
                             eval_cfg.batch_size, intervention)
  graded = [True] * len(replies) if graded is None else list(graded)
  mc = np.full((len(replies), len(evalset.items)), np.nan)
  rows = [e for e in range(len(replies)) if graded[e]]
  if rows:
    graded_E = state_E if len(rows) == len(replies) else jax.tree.map(
        lambda a: a[np.asarray(rows)], state_E)
    mc[rows] = mc_errors(graphdef, graded_E, evalset, tokenizer, eval_cfg.batch_size)
  return [grade_replies(evalset, replies[e], mc[e], blind=not graded[e])
          for e in range(len(replies))]

