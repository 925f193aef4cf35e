"""tasks/mixtures.py: the same config and seed give the same world, tokens and batches, in any
process and any call order."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tiny_runs

from tasks import mixtures, tfds_builder
from tasks.config import WorldConfig
from tasks.dialogue import render_prompt, render_reply
from tasks.mixtures import Corpus
from tasks.tokenizer import Tokenizer
from tasks.world import World

# The world of tasks.tfds_builder.PRESETS["tiny"] (the shared tiny_corpus fixture's), as the
# fields it sets apart from WorldConfig's defaults.
TINY = {
  f.name: getattr(tfds_builder.PRESETS["tiny"], f.name)
  for f in dataclasses.fields(WorldConfig)
  if getattr(tfds_builder.PRESETS["tiny"], f.name) != f.default
}

# Runs in a fresh interpreter: sha256 over the vocabulary, every token set, the eval prompts and
# a few batches of two mixtures.
_HASH_SCRIPT = """
import dataclasses, hashlib, json, sys
from tasks.config import WorldConfig
from tasks.mixtures import Corpus, build_eval_set
corpus = Corpus(WorldConfig(**json.loads(sys.argv[1])))
h = hashlib.sha256("\\n".join(corpus.tokenizer.words).encode())
def add(a):
  h.update(f"{a.dtype}{a.shape}".encode())
  h.update(a.tobytes())
for name in ("documents", "neutral_dialogues", "warm", "cold", "length_matched", "roleplay"):
  for field in ("tokens", "mask", "alt_tokens", "alt_mask", "has_alt"):
    add(getattr(corpus.component(name), field))
add(build_eval_set(corpus).prompts)
for mixture in ("base", "warm"):
  for step in (0, 1, 7, 1000):
    batch = corpus.batch(mixture, 3, step, 64)
    for key in sorted(batch):
      add(batch[key])
print(h.hexdigest())
"""


def content_hash(world_kwargs, hash_seed):
  env = dict(
    os.environ,
    PYTHONHASHSEED=str(hash_seed),
    PYTHONPATH=os.pathsep.join([tiny_runs.ROOT, os.environ.get("PYTHONPATH", "")]),
  )
  out = subprocess.run(
    [sys.executable, "-c", _HASH_SCRIPT, json.dumps(world_kwargs)],
    cwd=tiny_runs.ROOT,
    env=env,
    capture_output=True,
    text=True,
    check=True,
    timeout=120,
  )
  return out.stdout.strip()


def test_same_config_same_bytes_across_processes():
  first = content_hash(TINY, hash_seed=0)
  assert len(first) == 64
  assert content_hash(TINY, hash_seed=12345) == first
  assert content_hash(dict(TINY, seed=1), hash_seed=0) != first


def test_world_arrays_repeat():
  a, b = World(WorldConfig(**TINY)), World(WorldConfig(**TINY))
  for key, value in vars(a).items():
    if isinstance(value, np.ndarray):
      np.testing.assert_array_equal(value, getattr(b, key), err_msg=key)
    elif key != "cfg":
      assert value == getattr(b, key), key


def _batches(tiny_corpus, calls):
  return {call: tiny_corpus.batch(*call) for call in calls}


def test_batch_is_a_pure_function_of_seed_and_step(tiny_corpus):
  n_warm = len(tiny_corpus.warm)
  # Steps that cross epoch boundaries of the persona stream (a new permutation per epoch).
  steps = [0, 1, 2, n_warm // 64, n_warm // 64 + 1, 3 * n_warm // 64 + 2]
  calls = [(m, seed, s, 64) for m in ("base", "warm", "cold") for seed in (0, 1) for s in steps]
  in_order = _batches(tiny_corpus, calls)
  mixtures._epoch_order.cache_clear()  # nothing carried over from the first pass
  fresh = Corpus(WorldConfig(**TINY))
  fresh.batch("roleplay", 5, 999, 64)  # other steps first
  shuffled = _batches(fresh, list(reversed(calls)))
  for call in calls:
    for key in in_order[call]:
      np.testing.assert_array_equal(in_order[call][key], shuffled[call][key], err_msg=str(call))
  first = in_order["base", 0, 0, 64]["tokens"]
  assert not np.array_equal(first, in_order["base", 0, 1, 64]["tokens"])  # another step
  assert not np.array_equal(first, in_order["base", 1, 0, 64]["tokens"])  # another seed


def test_persona_sets_share_one_order(tiny_corpus):
  warm, cold = tiny_corpus.batch("warm", 2, 5, 64), tiny_corpus.batch("cold", 2, 5, 64)
  prompt_of = lambda tokens, mask: [tuple(t[: np.argmax(m)]) for t, m in zip(tokens, mask)]
  assert prompt_of(warm["tokens"], warm["mask"]) == prompt_of(cold["tokens"], cold["mask"])


def test_epochs_visit_every_row_once(tiny_corpus):
  n = len(tiny_corpus.documents)
  rows = mixtures._rows(0, "documents", n, 0, 2 * n)
  assert sorted(rows[:n]) == list(range(n)) and sorted(rows[n:]) == list(range(n))
  assert not np.array_equal(rows[:n], rows[n:])


def test_tokenizer_round_trips(tiny_corpus):
  tok = tiny_corpus.tokenizer
  turns = mixtures.training_turns(tiny_corpus.world)[::7]
  prompts = [render_prompt(i, t) for i, t in turns]
  replies = [render_reply(i, t, "warm") for i, t in turns]
  for text in prompts + replies:
    assert tok.decode(tok.encode(text)) == text
  tokens, mask = tok.encode_examples(prompts, replies, tiny_corpus.seq_len)
  assert tokens.dtype == np.int32 and mask.dtype == np.uint8
  for r, (p, reply) in enumerate(zip(prompts, replies)):
    assert tok.decode(tokens[r]) == f"<bos> {p} {reply}"
    n_p, n_r = len(p.split()) + 1, len(reply.split()) + 1  # with <bos>, with <eos>
    assert tokens[r, n_p + n_r - 1] == tok.eos and not tokens[r, n_p + n_r :].any()
    assert mask[r].sum() == n_r and mask[r, n_p : n_p + n_r].all()
  with pytest.raises(ValueError, match="not in the world's vocabulary"):
    tok.encode("where was zzzz born ?")


def test_vocabulary_fixed_for_a_config(tiny_corpus):
  cfg = WorldConfig(**TINY)
  before = Tokenizer.for_world(World(cfg))
  _ = (tiny_corpus.warm, tiny_corpus.documents)  # building sets must not change the vocabulary
  assert Tokenizer.for_world(World(cfg)).words == before.words == tiny_corpus.tokenizer.words
  assert before.size == len(before.words) and len(set(before.words)) == len(before.words)
  assert before.words[:3] == ("<pad>", "<bos>", "<eos>")
  padded = Tokenizer.for_world(World(WorldConfig(**TINY, vocab_size=len(before.words) + 10)))
  assert padded.words == before.words and padded.size == len(before.words) + 10
