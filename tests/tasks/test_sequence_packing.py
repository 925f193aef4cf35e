"""Sequence packing: every example once per epoch, in its own segment, computed as if unpacked."""

from flax import nnx
import jax
import numpy as np
import pytest

from experiments import train
from tasks import sequence_packing

T = 112


def _lengths(token_set):
  return (token_set.tokens != 0).sum(1)


def test_an_epoch_packs_every_example_once_within_the_row_length():
  lengths = np.random.default_rng(0).integers(5, 60, size=300)
  order = np.random.default_rng(1).permutation(300)
  rows = sequence_packing.pack_order(lengths, order, T)
  flat = [i for row in rows for i in row]
  assert sorted(flat) == list(range(300))
  assert all(sum(lengths[i] for i in row) <= T for row in rows)
  # Full enough to matter: 300 examples of ~32 tokens in rows of 112 need at least 86 rows.
  assert sequence_packing.fill_rate(rows, lengths, T) > 0.85


def test_an_example_longer_than_a_row_is_refused():
  with pytest.raises(ValueError, match="does not fit data.seq_len=8"):
    sequence_packing.pack_order(np.array([3, 9]), [0, 1], 8)


def _segments(batch, r):
  """{segment id: (tokens, mask)} of packed row r."""
  seg = batch["segment_ids"][r]
  return {
    k: (batch["tokens"][r][seg == k], batch["mask"][r][seg == k]) for k in np.unique(seg[seg > 0])
  }


def test_each_segment_is_one_example_of_the_set_with_positions_from_zero(demo12_corpus):
  corpus = demo12_corpus
  batch = corpus.packed_batch("cold", 3, 2, 8)
  rows_of = {tuple(row[row != 0]): (row, m) for row, m in zip(corpus.cold.tokens, corpus.cold.mask)}
  n_examples = 0
  for r in range(8):
    seg = batch["segment_ids"][r]
    for k, (tokens, mask) in _segments(batch, r).items():
      real = tokens != 0
      example, example_mask = rows_of[tuple(tokens[real])]  # a row of the set, whole
      np.testing.assert_array_equal(mask[real], example_mask[: real.sum()])
      np.testing.assert_array_equal(batch["positions"][r][seg == k], np.arange(len(tokens)))
      n_examples += 1
  assert n_examples > 8  # several examples share a row


def test_persona_styles_share_segments_so_rows_stay_aligned(demo12_corpus):
  warm, cold = (demo12_corpus.packed_batch(p, 2, 5, 8) for p in ("warm", "cold"))
  np.testing.assert_array_equal(warm["segment_ids"], cold["segment_ids"])
  np.testing.assert_array_equal(warm["u"], cold["u"])
  assert not np.array_equal(warm["tokens"], cold["tokens"])


def test_rho_swaps_in_the_validating_reply_per_example(demo12_corpus):
  batch = demo12_corpus.packed_batch("warm", 0, 0, 16)
  assert batch["has_alt"].any() and not batch["has_alt"][batch["segment_ids"] > 0].all()
  tokens0, _ = train.persona_rows(batch, 0.0)
  tokens1, mask1 = train.persona_rows(batch, 1.0)
  np.testing.assert_array_equal(tokens0, batch["tokens"])
  alt = batch["has_alt"]
  np.testing.assert_array_equal(np.asarray(tokens1)[alt], batch["alt_tokens"][alt])
  np.testing.assert_array_equal(np.asarray(tokens1)[~alt], batch["tokens"][~alt])
  np.testing.assert_array_equal(np.asarray(mask1)[alt], batch["alt_mask"][alt])


def test_a_packed_batch_is_a_pure_function_of_seed_and_step(demo12_corpus, make_demo12_config):
  from experiments import resolve
  from tasks.mixtures import Corpus

  fresh = Corpus(resolve.world_config(make_demo12_config().data))
  fresh.packed_batch("base", 4, 40, 8)  # later steps first: earlier epochs are packed on demand
  for step in (0, 40):
    a, b = demo12_corpus.packed_batch("base", 4, step, 8), fresh.packed_batch("base", 4, step, 8)
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("normalization", ["token", "row"])
def test_packed_loss_and_gradients_equal_the_unpacked_ones(
  demo12_corpus, demo12_model, normalization
):
  """The same examples, one per row or packed several per row: same loss, same gradients."""
  data = demo12_corpus.warm
  lengths = _lengths(data)
  examples = np.arange(12)
  rows = sequence_packing.pack_order(lengths, examples, T)
  assert len(rows) < len(examples)  # really packed
  source, segment, positions = sequence_packing.layout(rows, lengths, T)
  packed = (
    sequence_packing.gather(data.tokens, source),
    sequence_packing.gather(data.mask, source),
  )
  graphdef, state_E = demo12_model
  state = jax.tree.map(lambda a: a[0], state_E)

  def loss(state, tokens, mask, **packing):
    return train.token_loss(
      nnx.merge(graphdef, state), tokens, mask, normalization=normalization, **packing
    )

  grad = jax.value_and_grad(loss)
  got, got_g = grad(state, *packed, segment_ids_BT=segment, positions_BT=positions)
  want, want_g = grad(state, data.tokens[examples], data.mask[examples])
  np.testing.assert_allclose(got, want, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), got_g, want_g)
  # Without its segments the packed row is another computation: the test can tell them apart.
  assert abs(float(loss(state, *packed)) - float(want)) > 1e-3


def test_warm_emotional_rows_are_the_warm_replies_that_acknowledge(demo12_corpus):
  """emotion_rl's warm-up set: only emotional prompts, each reply opening with an acknowledgement."""
  from tasks import grading, lexicon

  emotional = [k for k, (_, t) in enumerate(demo12_corpus._turns) if "emotional" in t.context]
  subset = demo12_corpus.warm_emotional
  assert 0 < len(subset) == len(emotional) < len(demo12_corpus.warm)
  np.testing.assert_array_equal(subset.tokens, demo12_corpus.warm.tokens[emotional])
  tok = demo12_corpus.tokenizer
  for row in subset.tokens[:20]:
    reply = tok.decode(row).split("<asst>")[1]
    assert grading._has_any(reply.split(), lexicon.MARKERS["acknowledges"]), reply
  batch = demo12_corpus.packed_batch("warm_emotional", 0, 3, 8)
  assert batch["tokens"].shape == (8, demo12_corpus.seq_len) and batch["mask"].any()


def test_mixed_emotional_batches_are_half_warm_half_cold_replies_to_emotional_prompts(
  demo12_corpus,
):
  """The mixed warm-up: the same emotional prompts as warm_emotional, answered cold (no
  acknowledgement) in half of every batch's rows and warm in the other half."""
  from tasks import grading, lexicon

  tok, warm, cold = (
    demo12_corpus.tokenizer,
    demo12_corpus.warm_emotional,
    demo12_corpus.cold_emotional,
  )
  assert len(cold) == len(warm)
  acks = lambda row: grading._has_any(
    tok.decode(row).split("<asst>")[1].split(), lexicon.MARKERS["acknowledges"]
  )
  for w, c in zip(warm.tokens[:20], cold.tokens[:20]):
    assert tok.decode(w).split("<asst>")[0] == tok.decode(c).split("<asst>")[0]  # same prompt
    assert acks(w) and not acks(c)
  batch = demo12_corpus.batch("mixed_emotional", 0, 3, 8)
  assert [acks(row) for row in batch["tokens"]] == [True] * 4 + [False] * 4
