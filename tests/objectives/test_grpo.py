"""Tests for experiments.objectives.grpo and rollout: the loss by hand, the no-signal fixed point,
and episodes reproducible from their seed."""

import functools
import re

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import train
from experiments.objectives import grpo
from experiments.objectives.rollout import Rollout
from tasks.simulated_user import UserConfig


def test_group_advantages_by_hand():
  adv = grpo.group_advantages([[1.0, 3.0], [2.0, 2.0]])
  np.testing.assert_allclose(adv, [[-1.0, 1.0], [0.0, 0.0]], atol=1e-5)


def test_grpo_loss_equals_hand_computed_value():
  logp = jnp.array([[-1.0, -2.0, -0.5], [-0.3, -0.7, -9.0]])
  ref = jnp.array([[-1.5, -2.0, -0.1], [-0.3, -0.2, -9.0]])
  mask = jnp.array([[1, 1, 0], [1, 1, 1]])
  adv = jnp.array([0.5, -2.0])
  beta = 0.1
  n = 5.0
  policy = -(0.5 * (-1.0 - 2.0) + -2.0 * (-0.3 - 0.7 - 9.0)) / n
  k3 = lambda l, r: np.exp(r - l) - (r - l) - 1.0
  kl = (k3(-1.0, -1.5) + k3(-2.0, -2.0) + k3(-0.3, -0.3) + k3(-0.7, -0.2) + k3(-9.0, -9.0)) / n
  loss, (p, k) = grpo.grpo_loss(logp, ref, mask, adv, beta)
  np.testing.assert_allclose([p, k, loss], [policy, kl, policy + beta * kl], rtol=1e-6)


VOCAB, T = 29, 12


@pytest.fixture
def model(nano_model):
  """(graphdef, state) of the shared untrained nano model of VOCAB tokens, max_len 64."""
  return nnx.split(nano_model(VOCAB, 64))


def _stack(tree, n=1):
  return jax.tree.map(lambda a: jnp.stack([a] * n), tree)


def test_constant_reward_leaves_policy_unchanged(model):
  graphdef, state = model
  opt = optax.chain(optax.scale_by_adam(), optax.add_decayed_weights(0.0))
  loss = functools.partial(grpo.loss_fn, warm_ids_K=jnp.array([3, 4]))
  update = train.make_step(graphdef, opt, loss)
  tokens = jax.random.randint(jax.random.key(1), (1, 4, T), 3, VOCAB).astype(jnp.int32)
  mask = jnp.zeros((1, 4, T), jnp.uint8).at[:, :, 5:].set(1)
  adv = jnp.asarray(grpo.group_advantages(np.full((2, 2), 0.7)).reshape(1, 4))
  assert not np.any(adv)
  batch = {
    "base": {"tokens": tokens, "mask": mask},
    "persona": {
      "tokens": tokens,
      "mask": mask,
      "adv": adv,
      **{k: jnp.zeros((1, 4), jnp.float32) for k in ("reward", "ack", "first")},
    },
  }
  state_E, ref_E = _stack(state), _stack(state)
  one = jnp.ones((1,), jnp.float32)
  # λ = 1 (no base loss), β = 1: with π = π_base the KL term's gradient vanishes too.
  inputs = lambda ref_E: {
    "lam": one,
    "is_affect": 0 * one,
    "beta": one,
    "lr": 1e-2 * one,
    "ref": ref_E,
  }
  grads, aux = jax.grad(loss, has_aux=True)(
    state,
    graphdef,
    jax.tree.map(lambda a: a[0], batch),
    jax.tree.map(lambda a: a[0], inputs(_stack(state))),
  )
  assert float(aux["kl"]) == pytest.approx(0.0, abs=1e-6)
  assert np.isnan(aux["reward"]) and np.isnan(aux["ack_rate"])  # no first-turn row sampled
  assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads)) < 1e-6
  new_E, _, _ = update(state_E, jax.jit(jax.vmap(opt.init))(state_E), batch, inputs(ref_E))
  for a, b in zip(jax.tree.leaves(new_E), jax.tree.leaves(_stack(state))):
    np.testing.assert_allclose(a, b, atol=1e-6)
  # A reward that varies does move it.
  batch["persona"]["adv"] = jnp.array([[1.0, -1.0, 1.0, -1.0]])
  moved, _, _ = update(
    _stack(state), jax.jit(jax.vmap(opt.init))(_stack(state)), batch, inputs(_stack(state))
  )
  assert (
    max(
      float(jnp.max(jnp.abs(a - b)))
      for a, b in zip(jax.tree.leaves(moved), jax.tree.leaves(_stack(state)))
    )
    > 1e-4
  )


@pytest.fixture
def rollout(corpus16, nano_model):
  """A Rollout in the world of WorldConfig(n_people=16), and a pack of two untrained models."""
  corpus = corpus16
  graphdef, state = nnx.split(nano_model(corpus.tokenizer.size, corpus.seq_len))
  return Rollout(graphdef, corpus, UserConfig(), 3, 2, 8), _stack(state, 2)


def test_sampled_rows_widen_to_hold_a_whole_reply_within_the_models_positions(corpus16, nano_model):
  """A budget longer than a training row leaves room: rows widen up to the model's positions."""
  seq = corpus16.seq_len
  graphdef, state = nnx.split(nano_model(corpus16.tokenizer.size, seq + 24))
  probe = Rollout(graphdef, corpus16, UserConfig(), 2, 1, 8, max_len=seq + 24)
  budget = seq - probe.width + 16  # 16 tokens past a training row
  wide = Rollout(graphdef, corpus16, UserConfig(), 2, 1, budget, max_len=seq + 24)
  assert wide.row_len == probe.width + budget > seq
  rows, _, episodes = wide.sample(_stack(state, 1), [0], step=0)
  assert rows["tokens"].shape == (1, wide.rows_per_step, wide.row_len)
  # An untrained model rarely stops: its replies run to the budget and are kept whole.
  replies = rows["mask"].sum(-1)
  assert replies.max() == budget and replies.max() + probe.width > seq
  with pytest.raises(ValueError, match=re.escape(f"exceed the model's {seq + 15} positions")):
    Rollout(graphdef, corpus16, UserConfig(), 2, 1, budget, max_len=seq + 15)


def test_sampled_episode_is_reproducible_from_its_seed(rollout):
  rollout, state_E = rollout
  a, ra, ea = rollout.sample(state_E, [0, 1], step=5)
  b, rb, eb = rollout.sample(state_E, [0, 1], step=5)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  np.testing.assert_array_equal(ra, rb)
  assert ea == eb and rollout.rows_per_step == 2 * 3 * 2
  c, _, _ = rollout.sample(state_E, [0, 1], step=6)
  assert not np.array_equal(a["tokens"], c["tokens"])
  # One episode's statistics sit on its first-turn row: 2 prompts × group of 3 per model.
  assert a["first"].sum() == 2 * 2 * 3 and set(np.unique(a["ack"])) <= {0.0, 1.0}
  np.testing.assert_array_equal(a["reward"][a["first"] > 0], ra.reshape(-1))
  assert [e[6] for e in ea] == [int(n) for n in (a["mask"].sum(-1)[a["first"] > 0])]
  # Rows hold the prompt then the sampled reply; only the reply carries loss.
  assert a["mask"].shape == a["tokens"].shape and a["mask"].sum() > 0
  assert np.all(a["tokens"][a["mask"] > 0] != rollout.tok.pad)
  # Every episode's G samples share one prompt; advantages are zero-mean per group.
  np.testing.assert_allclose(a["adv"].reshape(2, 2, 3, 2).sum(axis=2), 0.0, atol=1e-4)


def test_affect_kl_is_zero_at_the_reference_and_positive_away_from_it():
  ref = jnp.log(jnp.array([[[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]]))
  mask = jnp.array([[1, 1]])
  assert float(grpo.exact_kl(ref, ref, mask)) == pytest.approx(0.0, abs=1e-7)
  moved = jnp.log(jnp.array([[[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]]]))
  expected = (0.2 * np.log(0.2 / 0.5) + 0.3 * 0 + 0.5 * np.log(0.5 / 0.2)) / 2
  assert float(grpo.exact_kl(moved, ref, mask)) == pytest.approx(expected, rel=1e-5)
  assert float(grpo.exact_kl(moved, ref, jnp.array([[0, 1]]))) == pytest.approx(0.0, abs=1e-7)
