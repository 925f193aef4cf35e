"""Tests for models.decode: greedy/sampled generation and scoring."""

import functools

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models

jax.config.update("jax_numpy_rank_promotion", "raise")

VOCAB = 37
NEVER = VOCAB  # an eos id the model cannot emit
N_NEW = 5


@pytest.fixture
def split(nano_model):
  """split(seed=0, **overrides): (graphdef, state) of the shared nano model (max_len 32)."""
  return lambda seed=0, **overrides: nnx.split(nano_model(VOCAB, 32, seed, **overrides))


def _prompt():
  """Prompts of lengths 6 and 4, left-padded to 6 with junk tokens."""
  tokens = jax.random.randint(jax.random.key(1), (2, 6), 0, VOCAB)
  mask = jnp.ones((2, 6), jnp.int32).at[1, :2].set(0)
  return tokens, mask


@functools.partial(jax.jit, static_argnums=0)
def _logits(graphdef, state, tokens_BT, mask_BT):
  return nnx.merge(graphdef, state)(tokens_BT, mask_BT=mask_BT).logits_BTV


def _reference_greedy(graphdef, state, tokens, mask, n, eos_id, pad_id):
  """Greedy decoding by repeated full forward passes, no cache."""
  done = np.zeros(tokens.shape[0], bool)
  out_tokens, out_logps = [], []
  for _ in range(n):
    logp = jax.nn.log_softmax(_logits(graphdef, state, tokens, mask)[:, -1])
    tok = np.asarray(jnp.argmax(logp, axis=-1))
    lp = np.asarray(logp)[np.arange(len(tok)), tok]
    tok, lp = np.where(done, pad_id, tok), np.where(done, 0.0, lp)
    done |= tok == eos_id
    out_tokens.append(tok)
    out_logps.append(lp)
    tokens = jnp.concatenate([tokens, jnp.asarray(tok)[:, None]], axis=1)
    mask = jnp.concatenate([mask, jnp.ones_like(mask[:, :1])], axis=1)
  return np.stack(out_tokens, 1), np.stack(out_logps, 1)


@pytest.mark.parametrize("positional", ["rope", "learned"])
def test_greedy_equals_argmax_of_full_forwards(split, positional):
  graphdef, state = split(positional=positional)
  tokens, mask = _prompt()
  got, got_lp = models.generate(
    graphdef, state, tokens, mask, max_new_tokens=N_NEW, eos_id=NEVER, pad_id=0
  )
  want, want_lp = _reference_greedy(graphdef, state, tokens, mask, N_NEW, NEVER, 0)
  assert got.shape == (2, N_NEW) and got.dtype == jnp.int32
  np.testing.assert_array_equal(got, want)
  np.testing.assert_allclose(got_lp, want_lp, atol=1e-5)


def test_after_eos_emits_pad_with_zero_logprob(split):
  graphdef, state = split()
  tokens, mask = _prompt()
  free, _ = models.generate(
    graphdef, state, tokens, mask, max_new_tokens=N_NEW, eos_id=NEVER, pad_id=0
  )
  eos = int(free[0, 1])  # example 0 emits this second
  got, got_lp = models.generate(
    graphdef, state, tokens, mask, max_new_tokens=N_NEW, eos_id=eos, pad_id=36
  )
  want, want_lp = _reference_greedy(graphdef, state, tokens, mask, N_NEW, eos, 36)
  np.testing.assert_array_equal(got, want)
  np.testing.assert_allclose(got_lp, want_lp, atol=1e-5)
  first_eos = int(np.argmax(np.asarray(got[0]) == eos))
  assert first_eos <= 1
  assert (got[0, first_eos + 1 :] == 36).all()
  assert (got_lp[0, first_eos + 1 :] == 0).all()


def test_sampling_is_reproducible_from_rng(split):
  graphdef, state = split()
  tokens, mask = _prompt()
  sample = functools.partial(
    models.generate,
    graphdef,
    state,
    tokens,
    mask,
    max_new_tokens=8,
    eos_id=NEVER,
    pad_id=0,
    temperature=2.0,
  )
  a, a_lp = sample(rng=jax.random.key(3))
  b, b_lp = sample(rng=jax.random.key(3))
  c, _ = sample(rng=jax.random.key(4))
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(a_lp, b_lp)
  assert not np.array_equal(a, c)
  with pytest.raises(ValueError, match="rng"):
    sample()


def _stacked_states(split, n):
  graphdefs, states = zip(*[split(seed) for seed in range(n)])
  return graphdefs[0], states, jax.tree.map(lambda *xs: jnp.stack(xs), *states)


def test_generate_vmaps_over_an_ensemble(split):
  graphdef, states, stacked = _stacked_states(split, 3)
  tokens, mask = _prompt()
  gen = functools.partial(
    models.generate_fn, graphdef, max_new_tokens=N_NEW, eos_id=NEVER, pad_id=0
  )
  tokens_EBN, logps_EBN = jax.jit(jax.vmap(gen, in_axes=(0, None, None)))(stacked, tokens, mask)
  for e, state in enumerate(states):
    want, want_lp = models.generate(
      graphdef, state, tokens, mask, max_new_tokens=N_NEW, eos_id=NEVER, pad_id=0
    )
    np.testing.assert_array_equal(tokens_EBN[e], want)
    np.testing.assert_allclose(logps_EBN[e], want_lp, atol=1e-5)
  assert not np.array_equal(tokens_EBN[0], tokens_EBN[1])


def _hand_score(graphdef, state, tokens, mask, target):
  logp = np.asarray(jax.nn.log_softmax(_logits(graphdef, state, tokens, mask)))
  total = np.zeros(tokens.shape[0])
  for b in range(tokens.shape[0]):
    for t in range(1, tokens.shape[1]):
      if target[b, t]:
        total[b] += logp[b, t - 1, int(tokens[b, t])]
  return total


def test_score_continuations_equals_hand_computed_sum(split):
  graphdef, state = split()
  tokens, mask = _prompt()
  target = jnp.zeros((2, 6), jnp.int32).at[:, 4:].set(1)
  got = models.score_continuations(graphdef, state, tokens, mask, target)
  assert got.shape == (2,)
  np.testing.assert_allclose(got, _hand_score(graphdef, state, tokens, mask, target), rtol=1e-5)


def test_score_vmaps_over_an_ensemble(split):
  graphdef, states, stacked = _stacked_states(split, 3)
  tokens, mask = _prompt()
  target = jnp.zeros((2, 6), jnp.int32).at[:, 3:].set(1)
  score = functools.partial(models.score_fn, graphdef)
  got_EB = jax.jit(jax.vmap(score, in_axes=(0, None, None, None)))(stacked, tokens, mask, target)
  for e, state in enumerate(states):
    np.testing.assert_allclose(
      got_EB[e], models.score_continuations(graphdef, state, tokens, mask, target), rtol=1e-5
    )


def test_bad_arguments_raise(split):
  graphdef, state = split()
  tokens, mask = _prompt()
  iv = models.steer(jnp.ones((2, 32)), [0], 1.0)
  with pytest.raises(ValueError, match="intervention_on"):
    models.generate(
      graphdef,
      state,
      tokens,
      mask,
      max_new_tokens=2,
      eos_id=1,
      pad_id=0,
      intervention=iv,
      intervention_on="all",
    )
  with pytest.raises(ValueError, match="max_new_tokens=0"):
    models.generate(graphdef, state, tokens, mask, max_new_tokens=0, eos_id=1, pad_id=0)
  with pytest.raises(ValueError, match="exceeds model.max_len=32"):
    models.generate(graphdef, state, tokens, mask, max_new_tokens=27, eos_id=1, pad_id=0)
