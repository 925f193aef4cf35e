"""Tests for models.interventions and their use inside the model and decoder."""

import functools

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models

jax.config.update("jax_numpy_rank_promotion", "raise")

VOCAB = 37
D = 32
L = 2


@pytest.fixture
def split(nano_model):
  """split(seed=0): (graphdef, state) of the shared nano model (max_len 32)."""
  return lambda seed=0: nnx.split(nano_model(VOCAB, 32, seed))


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef, state, tokens_BT, mask_BT=None, intervention=None):
  return nnx.merge(graphdef, state)(
    tokens_BT, mask_BT=mask_BT, intervention=intervention
  ).logits_BTV


def _direction(seed=5):
  return jax.random.normal(jax.random.key(seed), (L, D))


def _unit(v_D):
  return v_D / jnp.linalg.norm(v_D)


def _prompt(b=2):
  tokens = jax.random.randint(jax.random.key(1), (b, 6), 0, VOCAB)
  mask = jnp.ones((b, 6), jnp.int32).at[b - 1, :2].set(0)
  return tokens, mask


# apply_intervention on its own.


def test_cap_is_identity_inside_bounds():
  x = jax.random.normal(jax.random.key(0), (2, 4, D))
  v = _unit(_direction()[1])
  p = jnp.einsum("btd,d->bt", x, v)
  iv = models.cap(_direction(), [1], lo_B=jnp.min(p) - 1, hi_B=jnp.max(p) + 1)
  np.testing.assert_array_equal(models.apply_intervention(x, 1, iv), x)


def test_cap_clamps_outside_bounds_along_direction_only():
  x = 3 * jax.random.normal(jax.random.key(0), (2, 4, D))
  v = _unit(_direction()[0])
  lo_B, hi_B = jnp.array([-0.5, -1.0]), jnp.array([0.5, 2.0])
  y = models.apply_intervention(x, 0, models.cap(_direction(), [0], lo_B, hi_B))
  p_x, p_y = (jnp.einsum("btd,d->bt", a, v) for a in (x, y))
  np.testing.assert_allclose(p_y, jnp.clip(p_x, lo_B[:, None], hi_B[:, None]), atol=1e-5)
  assert ((p_x < lo_B[:, None]) | (p_x > hi_B[:, None])).any()
  orth = lambda a: a - jnp.einsum("btd,d->bt", a, v)[..., None] * v[None, None]
  np.testing.assert_allclose(orth(y), orth(x), atol=1e-5)


def test_one_sided_cap_leaves_other_side_alone():
  x = 3 * jax.random.normal(jax.random.key(0), (1, 8, D))
  v = _unit(_direction()[0])
  y = models.apply_intervention(x, 0, models.cap(_direction(), [0], hi_B=0.0))
  p_x, p_y = (jnp.einsum("btd,d->bt", a, v) for a in (x, y))
  np.testing.assert_allclose(p_y, jnp.minimum(p_x, 0.0), atol=1e-5)


def test_steer_adds_alpha_times_unit_direction():
  x = jax.random.normal(jax.random.key(0), (3, 4, D))
  alpha_B = jnp.array([0.0, 2.0, -5.0])
  y = models.apply_intervention(x, 1, models.steer(_direction(), [1], alpha_B))
  v = _unit(_direction()[1])
  np.testing.assert_allclose(y, x + alpha_B[:, None, None] * v[None, None], atol=1e-5)


def test_layer_and_token_masks_select_where_it_applies():
  x = jax.random.normal(jax.random.key(0), (2, 4, D))
  token_mask = jnp.array([[0, 1, 1, 0], [1, 0, 0, 0]])
  iv = models.steer(_direction(), [1], 3.0, token_mask_BT=token_mask)
  np.testing.assert_array_equal(models.apply_intervention(x, 0, iv), x)
  changed = np.any(models.apply_intervention(x, 1, iv) != x, axis=-1)
  np.testing.assert_array_equal(changed, token_mask.astype(bool))


def test_bad_layers_and_shapes_raise(split):
  with pytest.raises(ValueError, match=r"layers \[2\]"):
    models.steer(_direction(), [2], 1.0)
  graphdef, state = split()
  tokens, mask = _prompt()
  iv = models.steer(jnp.ones((3, D)), [2], 1.0)
  with pytest.raises(ValueError, match=r"needs \(2, 32\)"):
    _forward(graphdef, state, tokens, mask, iv)


# Interventions inside the model.


def test_no_intervention_adds_no_operations(split):
  graphdef, state = split()
  tokens, mask = _prompt()
  run = lambda **kw: nnx.merge(graphdef, state)(tokens, mask_BT=mask, **kw)
  plain, hooked = jax.make_jaxpr(run)(), jax.make_jaxpr(functools.partial(run, intervention=None))()
  assert str(plain) == str(hooked)
  steered = jax.make_jaxpr(
    functools.partial(run, intervention=models.steer(_direction(), [0], 1.0))
  )()
  assert len(steered.eqns) > len(plain.eqns)
  np.testing.assert_array_equal(
    _forward(graphdef, state, tokens, mask), _forward(graphdef, state, tokens, mask, None)
  )


def test_switched_off_intervention_is_bit_identical(split):
  graphdef, state = split()
  tokens, mask = _prompt()
  iv = models.steer(_direction(), [0, 1], 4.0, token_mask_BT=jnp.zeros_like(mask))
  np.testing.assert_array_equal(
    _forward(graphdef, state, tokens, mask, iv), _forward(graphdef, state, tokens, mask)
  )


def test_per_example_strengths_equal_separate_runs(split):
  graphdef, state = split()
  tokens, mask = _prompt(1)
  tokens3, mask3 = (jnp.tile(a, (3, 1)) for a in (tokens, mask))
  alphas = [0.0, 3.0, -3.0]
  batched = _forward(
    graphdef, state, tokens3, mask3, models.steer(_direction(), [0, 1], jnp.array(alphas))
  )
  for b, alpha in enumerate(alphas):
    alone = _forward(
      graphdef, state, tokens, mask, models.steer(_direction(), [0, 1], jnp.array([alpha]))
    )
    np.testing.assert_allclose(batched[b], alone[0], atol=1e-5)
  assert not np.allclose(batched[0], batched[1])


def test_residuals_show_the_intervention(split):
  graphdef, state = split()
  tokens, mask = _prompt()
  model = nnx.merge(graphdef, state)
  iv = models.cap(_direction(), [0], lo_B=-0.1, hi_B=0.1)
  res = model(tokens, mask_BT=mask, intervention=iv, return_residuals=True).residuals_LBTD
  p_BT = jnp.einsum("btd,d->bt", res[0], _unit(_direction()[0]))
  assert (jnp.abs(p_BT) <= 0.1 + 1e-5).all()


@pytest.mark.parametrize("on", ["response", "prompt", "both"])
def test_generate_with_intervention_matches_uncached_forward(split, on):
  graphdef, state = split()
  tokens, mask = _prompt()
  iv = models.steer(_direction(), [0, 1], jnp.array([6.0, -6.0]))
  iv = iv._replace(lo_B=jnp.array([-np.inf, -0.5]))  # steer and cap together
  n = 5
  got, got_lp = models.generate(
    graphdef,
    state,
    tokens,
    mask,
    max_new_tokens=n,
    eos_id=VOCAB,
    pad_id=0,
    intervention=iv,
    intervention_on=on,
  )
  # Uncached reference: one forward over prompt + all generated tokens but the
  # last, with the same token selection the decoder uses.
  full = jnp.concatenate([tokens, got[:, :-1]], axis=1)
  full_mask = jnp.concatenate([mask, jnp.ones((2, n - 1), jnp.int32)], axis=1)
  prompt_on = mask if on in ("prompt", "both") else jnp.zeros_like(mask)
  resp_on = jnp.full((2, n - 1), 1 if on in ("response", "both") else 0)
  token_mask = jnp.concatenate([prompt_on, resp_on], axis=1)
  logits = _forward(graphdef, state, full, full_mask, iv._replace(token_mask_BT=token_mask))[:, 5:]
  logp = jax.nn.log_softmax(logits, axis=-1)
  np.testing.assert_array_equal(got, jnp.argmax(logp, axis=-1))
  np.testing.assert_allclose(
    got_lp, jnp.take_along_axis(logp, got[..., None], axis=-1)[..., 0], atol=1e-4
  )
  plain, _ = models.generate(
    graphdef, state, tokens, mask, max_new_tokens=n, eos_id=VOCAB, pad_id=0
  )
  assert not np.array_equal(got, plain)
