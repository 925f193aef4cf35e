"""Batched generation with a KV cache, and log-likelihood scoring.

`generate_fn` and `score_fn` are pure functions of (graphdef, state, arrays), so
an ensemble of models stacked on a leading axis of `state` runs as one program:

  gen = functools.partial(generate_fn, graphdef, max_new_tokens=16, eos_id=2,
                          pad_id=0)
  tokens_EBN, logprobs_EBN = jax.jit(jax.vmap(gen, in_axes=(0, None, None)))(
      states_E, prompt_BT, prompt_mask_BT)

`generate` and `score_continuations` are the jitted single-model entry points.
The model is rebuilt with nnx.merge inside the trace, so jax.jit sees only
arrays (nnx.jit's per-call graph traversal dominates small models).

Generation is greedy at temperature 0, else samples softmax(logits/temperature)
from `rng`. logprobs are log p(token) under the model at temperature 1; after an
example emits eos_id it emits pad_id with logprob 0. An intervention's
token_mask_BT is replaced according to intervention_on: the real prompt tokens,
the generated tokens, or both. With 'response', the first new token is still
predicted from the unsteered prompt (its last position is a prompt token).

Scoring sums log p(token | prefix) over target_mask_BT; position 0 has no
prefix and is never scored. There an intervention uses its own token_mask_BT.

Shape letters: B batch, T prompt/sequence length, N new tokens, V vocabulary,
E ensemble members.
"""

import functools

from flax import nnx
import jax
import jax.numpy as jnp

from models import kv_cache
from models.interventions import Intervention

INTERVENTION_ON = ("response", "prompt", "both")


def _phase_interventions(intervention, intervention_on, prompt_mask_BT):
  """Splits one intervention into its prompt-phase and response-phase forms."""
  if intervention is None:
    return None, None
  if intervention_on not in INTERVENTION_ON:
    raise ValueError(f"intervention_on={intervention_on!r} must be one of {INTERVENTION_ON}.")
  on_prompt = intervention_on in ("prompt", "both")
  on_response = intervention_on in ("response", "both")
  # None (not a zero mask) for an off phase, so that phase adds no operations.
  prompt_iv = intervention._replace(token_mask_BT=prompt_mask_BT) if on_prompt else None
  response_iv = intervention._replace(token_mask_BT=None) if on_response else None
  return prompt_iv, response_iv


def generate_fn(
  graphdef,
  state,
  prompt_BT,
  prompt_mask_BT,
  rng=None,
  intervention: Intervention | None = None,
  *,
  max_new_tokens: int,
  eos_id: int,
  pad_id: int,
  temperature: float = 0.0,
  intervention_on: str = "response",
):
  """Pure, vmappable generation; returns (tokens_BN, logprobs_BN)."""
  if temperature > 0 and rng is None:
    raise ValueError("generate: rng must be given when temperature > 0.")
  if max_new_tokens < 1:
    raise ValueError(f"generate: max_new_tokens={max_new_tokens} must be at least 1.")
  model = nnx.merge(graphdef, state)
  b, t = prompt_BT.shape
  if t + max_new_tokens > model.cfg.max_len:
    raise ValueError(
      f"generate: prompt length {t} + max_new_tokens={max_new_tokens} "
      f"exceeds model.max_len={model.cfg.max_len}."
    )
  prompt_iv, response_iv = _phase_interventions(intervention, intervention_on, prompt_mask_BT)
  rng = jax.random.key(0) if rng is None else rng  # unused when greedy
  keys_N = jax.random.split(rng, max_new_tokens)

  def pick(logits_BV, key):
    logp_BV = jax.nn.log_softmax(logits_BV, axis=-1)
    if temperature > 0:
      token_B = jax.random.categorical(key, logits_BV / temperature, axis=-1)
    else:
      token_B = jnp.argmax(logits_BV, axis=-1)
    token_B = token_B.astype(jnp.int32)
    logp_B = jnp.take_along_axis(logp_BV, token_B[:, None], axis=-1)[:, 0]
    return token_B, logp_B

  def finish(token_B, logp_B, done_B):
    token_B = jnp.where(done_B, pad_id, token_B)
    logp_B = jnp.where(done_B, 0.0, logp_B)
    return token_B, logp_B, done_B | (token_B == eos_id)

  cache = kv_cache.init_cache(model.cfg, b, t + max_new_tokens)
  out = model(prompt_BT, mask_BT=prompt_mask_BT, cache=cache, intervention=prompt_iv)
  token_B, logp_B = pick(out.logits_BTV[:, -1], keys_N[0])
  token_B, logp_B, done_B = finish(token_B, logp_B, jnp.zeros((b,), bool))

  def step(carry):
    i, cache, token_B, done_B, tokens_BN, logprobs_BN = carry
    out = model(
      token_B[:, None], mask_BT=jnp.ones((b, 1), jnp.int32), cache=cache, intervention=response_iv
    )
    new_B, logp_B = pick(out.logits_BTV[:, 0], keys_N[i])
    new_B, logp_B, done_B = finish(new_B, logp_B, done_B)
    return (
      i + 1,
      out.cache,
      new_B,
      done_B,
      tokens_BN.at[:, i].set(new_B),
      logprobs_BN.at[:, i].set(logp_B),
    )

  # Stop as soon as every row has emitted eos: positions never reached keep pad and logprob 0,
  # exactly what `finish` would have written there.
  def running(carry):
    i, _, _, done_B, _, _ = carry
    return (i < max_new_tokens) & ~jnp.all(done_B)

  tokens_BN = jnp.full((b, max_new_tokens), pad_id, jnp.int32).at[:, 0].set(token_B)
  logprobs_BN = jnp.zeros((b, max_new_tokens), logp_B.dtype).at[:, 0].set(logp_B)
  *_, tokens_BN, logprobs_BN = jax.lax.while_loop(
    running, step, (1, out.cache, token_B, done_B, tokens_BN, logprobs_BN)
  )
  return tokens_BN, logprobs_BN


@functools.partial(
  jax.jit, static_argnames=("max_new_tokens", "eos_id", "pad_id", "temperature", "intervention_on")
)
def generate(
  graphdef,
  state,
  prompt_BT,
  prompt_mask_BT,
  *,
  max_new_tokens,
  eos_id,
  pad_id,
  temperature=0.0,
  rng=None,
  intervention=None,
  intervention_on="response",
):
  """Jitted generate_fn for one model; prompts must be left-padded."""
  return generate_fn(
    graphdef,
    state,
    prompt_BT,
    prompt_mask_BT,
    rng,
    intervention,
    max_new_tokens=max_new_tokens,
    eos_id=eos_id,
    pad_id=pad_id,
    temperature=temperature,
    intervention_on=intervention_on,
  )


def score_fn(
  graphdef, state, tokens_BT, mask_BT, target_mask_BT, intervention: Intervention | None = None
):
  """Pure, vmappable sum of log p(target token | prefix); returns (B,)."""
  model = nnx.merge(graphdef, state)
  logits_BTV = model(tokens_BT, mask_BT=mask_BT, intervention=intervention).logits_BTV
  logp_BTV = jax.nn.log_softmax(logits_BTV[:, :-1], axis=-1)
  logp_BT = jnp.take_along_axis(logp_BTV, tokens_BT[:, 1:, None], axis=-1)[..., 0]
  weight_BT = target_mask_BT[:, 1:].astype(jnp.float32)
  return jnp.sum(logp_BT * weight_BT, axis=1)


@jax.jit
def score_continuations(graphdef, state, tokens_BT, mask_BT, target_mask_BT, intervention=None):
  """Jitted score_fn for one model (multiple-choice log-likelihood)."""
  return score_fn(graphdef, state, tokens_BT, mask_BT, target_mask_BT, intervention)
