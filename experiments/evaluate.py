"""Evaluation of a pack: greedy replies graded as a user reads them, plus log-likelihood MC.

`error` grades the generated reply (what the user reads); `mc_error` asks which answer option
the model finds most likely (what it knows). Both are per item, so cells can be compared paired.
"""

import dataclasses
import functools
import time

from absl import logging
import jax
import numpy as np
import pandas as pd

from experiments.runtime import distributed, heartbeat
from experiments.runtime.members import current as members_mode
from experiments.runtime.members import over_members
from models.decode import generate_fn, score_fn
from tasks.dialogue import render_reply
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
    rows = order[i : i + batch_size]
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
    self.beat = heartbeat.Heartbeat(
      lambda: f"{self.name} {self.what}: batch {self.k + 1}/{self.total} running"
    )

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
    logging.info(
      "%s %s: %d/%d batches  %.0fs  ETA %.0fs",
      self.name,
      self.what,
      k,
      self.total,
      elapsed,
      elapsed / k * (self.total - k),
    )


# The compiled functions of evaluation, one per model structure, member mode and static setting:
# a run evaluates many packs of one model, and a jax.jit made afresh for each would compile every
# batch shape again. (The scoring function is part of the key, so a test may swap it.)
@functools.lru_cache(maxsize=64)
def _reply_generator(graphdef, mode, max_new_tokens, eos_id, pad_id, intervention_on, steered):
  del mode  # a key only: over_members reads the mode in force, which it names
  gen = functools.partial(
    generate_fn,
    graphdef,
    max_new_tokens=max_new_tokens,
    eos_id=eos_id,
    pad_id=pad_id,
    intervention_on=intervention_on,
  )
  return jax.jit(over_members(gen, in_axes=(0, None, None, None, 0 if steered else None)))


@functools.lru_cache(maxsize=64)
def _scorer(score, graphdef, mode):
  del mode  # as in _reply_generator
  return jax.jit(over_members(functools.partial(score, graphdef), in_axes=(0, None, None, None)))


def generate_replies(
  graphdef,
  state_E,
  evalset,
  tokenizer,
  max_new_tokens,
  batch_size,
  intervention=None,
  intervention_on="response",
):
  """Greedy replies of every member for every eval prompt: list (per member) of strings."""
  gen_E = _reply_generator(
    graphdef,
    members_mode(),
    max_new_tokens,
    tokenizer.eos,
    tokenizer.pad,
    intervention_on,
    intervention is not None,
  )
  # Prompts are left-padded: a batch of short ones keeps only its last `width` columns.
  chunks = buckets(evalset.prompt_mask.sum(1), batch_size)
  n_members = jax.tree.leaves(state_E)[0].shape[0]
  tokens_ENN = np.zeros((n_members, len(evalset.items), max_new_tokens), np.int32)
  with Progress(
    f"replies of {n_members} model(s), {len(evalset.items)} prompts", len(chunks)
  ) as progress:
    for k, (rows, width) in enumerate(chunks):
      iv = None if intervention is None else intervention(rows)
      tokens_EBN, _ = gen_E(
        state_E, evalset.prompts[rows, -width:], evalset.prompt_mask[rows, -width:], None, iv
      )
      tokens_ENN[:, rows] = np.asarray(tokens_EBN)
      progress.done(k + 1)
  return decode_replies(tokens_ENN, tokenizer)


def decode_replies(tokens_ENN, tokenizer):
  """Reply text per member and prompt: tokens up to end-of-sequence, pads dropped."""
  return [[tokenizer.decode(row) for row in member] for member in tokens_ENN]


# The reply styles a multiple-choice option may be scored in: (style, warm placement). Each model
# is scored in the style it writes (`mc_pass`), so the score asks what it knows, not whether its
# style puts the answer right after the assistant marker: scoring the bare answer there asks a warm
# or cold model for a reply it never gives (analysis/oracle.py's multiple-choice check shows that
# bias, and its absence here). Warm phrasing after the answer starts like the neutral reply.
MC_STYLES = (
  ("neutral", "before"),
  ("warm", "before"),
  ("cold", "before"),
  ("length_matched", "before"),
)
# The bare answer right after the assistant marker, in every context: how options were once
# scored, kept so that the oracle check can show what it did to each style.
ANSWER_ONLY = (("answer", None),)
MC_PROBE_ITEMS = 128  # eval rows with options a model's style is read from (evenly spaced)


def _option_reply(item, turn, style, placement):
  if style == "answer":
    return item.answer
  return render_reply(item, turn, style, placement=placement)


def mc_sequences(evalset, tokenizer, style, rows=None):
  """One row per (eval row, option): the prompt + the reply asserting the option in `style`
  ((style, placement) of MC_STYLES or ANSWER_ONLY) + end-of-sequence, scored on the reply; only
  eval rows `rows` if given. Returns (tokens, mask, target, owners, options, is_gold): each row's
  eval row and option index."""
  seqs, owners, options, is_gold = [], [], [], []
  for r in range(len(evalset.items)) if rows is None else rows:
    item, turn = evalset.items[r], evalset.turns[r]
    prompt = evalset.prompts[r][evalset.prompt_mask[r] > 0].tolist()
    for k, option in enumerate(item.options):
      reply = _option_reply(dataclasses.replace(item, gold=option), turn, *style)
      seqs.append((prompt, tokenizer.encode(reply) + [tokenizer.eos]))
      owners.append(r)
      options.append(k)
      is_gold.append(option == item.gold)
  width = max((len(p) + len(a) for p, a in seqs), default=1)
  tokens = np.full((len(seqs), width), tokenizer.pad, np.int32)
  mask = np.zeros_like(tokens)
  target = np.zeros_like(tokens)
  for k, (p, a) in enumerate(seqs):
    tokens[k, : len(p) + len(a)] = p + a
    mask[k, : len(p) + len(a)] = 1
    target[k, len(p) : len(p) + len(a)] = 1
  return (
    tokens,
    mask,
    target,
    np.array(owners, int),
    np.array(options, int),
    np.array(is_gold, bool),
  )


def mc_choice(scores_ES, owners, options, is_gold, n_items):
  """[E, N] multiple-choice error from [E, S] sequence log-probabilities: an item is wrong when
  its likeliest option is not gold (ties: the earlier option; NaN where it has no options)."""
  errors = np.full((scores_ES.shape[0], n_items), np.nan)
  for r in np.unique(owners):
    sel = np.flatnonzero(owners == r)
    best = np.argmax(scores_ES[:, sel], axis=1)
    errors[:, r] = ~is_gold[sel][best]
  return errors


def mc_pass(score_rows, evalset, tokenizer, n_members, styles=MC_STYLES):
  """([E, N] multiple-choice error, [E] index into `styles` each member was scored in).

  score_rows(members, tokens, mask, target, owners) gives members' [len(members), rows] reply
  log-probabilities. A member's style is the one whose replies, every option of
  MC_PROBE_ITEMS evenly spaced items, it finds likeliest in total: read without the gold label,
  so the choice cannot favour the right option. Every option is then scored in that style."""
  errors = np.full((n_members, len(evalset.items)), np.nan)
  with_options = np.flatnonzero([len(item.options) > 0 for item in evalset.items])
  if not len(with_options):
    return errors, np.zeros(n_members, int)
  everyone = np.arange(n_members)
  style_E = np.zeros(n_members, int)
  if len(styles) > 1:
    probe = with_options[
      np.unique(np.linspace(0, len(with_options) - 1, MC_PROBE_ITEMS).round().astype(int))
    ]
    totals_ES = np.stack(
      [score_rows(everyone, *_row_inputs(evalset, tokenizer, s, probe)).sum(1) for s in styles],
      axis=1,
    )
    style_E = np.argmax(totals_ES, axis=1)
  for s in np.unique(style_E):
    members = np.flatnonzero(style_E == s)
    tokens, mask, target, owners, options, is_gold = mc_sequences(
      evalset, tokenizer, styles[s], with_options
    )
    scores = score_rows(members, tokens, mask, target, owners)
    errors[members] = mc_choice(scores, owners, options, is_gold, len(evalset.items))
  return errors, style_E


def _row_inputs(evalset, tokenizer, style, rows):
  tokens, mask, target, owners, _, _ = mc_sequences(evalset, tokenizer, style, rows)
  return tokens, mask, target, owners


def mc_errors(graphdef, state_E, evalset, tokenizer, batch_size, styles=MC_STYLES):
  """[E, N] multiple-choice error (NaN where the item has no options), each member scored in
  its own style (mc_pass)."""
  n_members = jax.tree.leaves(state_E)[0].shape[0]
  score_E = _scorer(score_fn, graphdef, members_mode())

  def score_rows(members, tokens, mask, target, owners):
    del owners  # no per-row input
    state = state_E if len(members) == n_members else jax.tree.map(lambda a: a[members], state_E)
    scores = np.zeros((len(members), len(tokens)), np.float32)
    chunks = buckets(mask.sum(1), batch_size)  # right-padded: each keeps its first `width` columns
    with Progress(
      f"multiple choice of {len(members)} model(s), {len(tokens)} option replies", len(chunks)
    ) as progress:
      for k, (rows, width) in enumerate(chunks):
        scores[:, rows] = np.asarray(
          score_E(state, tokens[rows, :width], mask[rows, :width], target[rows, :width])
        )
        progress.done(k + 1)
    return scores

  return mc_pass(score_rows, evalset, tokenizer, n_members, styles)[0]


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
    rows.append(
      {
        "task": item.task,
        "context": turn.context,
        "emotion": turn.emotion or "none",
        "item_id": item.item_id,
        "gold": item.gold,
        "mc_error": mc_error_N[r],
        "reply": "" if blind else replies[r],
        **labels,
      }
    )
  return pd.DataFrame(rows)


def evaluate_pack(graphdef, state_E, evalset, tokenizer, eval_cfg, intervention=None, graded=None):
  """Per-member DataFrames of graded items; graded[e] False grades member e blind (its
  multiple-choice pass is not run at all: grade_replies)."""
  replies = generate_replies(
    graphdef,
    state_E,
    evalset,
    tokenizer,
    eval_cfg.max_new_tokens,
    eval_cfg.batch_size,
    intervention,
  )
  graded = [True] * len(replies) if graded is None else list(graded)
  mc = np.full((len(replies), len(evalset.items)), np.nan)
  rows = [e for e in range(len(replies)) if graded[e]]
  if rows:
    graded_E = (
      state_E if len(rows) == len(replies) else jax.tree.map(lambda a: a[np.asarray(rows)], state_E)
    )
    mc[rows] = mc_errors(graphdef, graded_E, evalset, tokenizer, eval_cfg.batch_size)
  return [
    grade_replies(evalset, replies[e], mc[e], blind=not graded[e]) for e in range(len(replies))
  ]
