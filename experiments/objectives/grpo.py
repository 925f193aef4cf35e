"""GRPO: group-relative advantages over sampled replies, a KL penalty to the base model.

Per prompt, G replies are sampled from the current policy π_T = softmax(logits / T) (T:
objectives.temperature; the loss scores the same tempered distribution, so sampling stays
on-policy; T < 1 keeps a small model's samples coherent); each episode's reward
comes from the simulated user (tasks/simulated_user.py). With A = (r − mean_group) / (std_group +
eps), the persona loss on the sampled rows is

  L_grpo = −Σ_b A_b Σ_t log π(y_bt) / Σ_b |y_b|  +  β · KL_k3(π ‖ π_base)

(k3: exp(r) − r − 1 with r = log π_base − log π per sampled token, mean over tokens). Sampling is
on-policy and each batch is used once, so the importance ratio is 1 and no clipping is needed.
The step (train.make_step with this loss) serves `affect` and `emotion_rl` cells alike: `is_affect`
(an input per cell) picks which persona loss a cell trains, as λ is picked per cell in train.py.
`affect` adds β · KL(π ‖ π_base), exact over the vocabulary at the reply positions it trains on.
"""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from experiments import train
from experiments.objectives import affect


def group_advantages(rewards_PG, eps=1e-6):
  """(r − group mean) / (group std + eps), per prompt (row) of G samples."""
  r = np.asarray(rewards_PG, np.float64)
  return ((r - r.mean(axis=1, keepdims=True)) / (r.std(axis=1, keepdims=True) + eps)).astype(
    np.float32
  )


def token_logp(logits_BTV, tokens_BT):
  """log p(tokens[:, t+1] | prefix) for every position; logits predict tokens[:, 1:]."""
  logp_BTV = jax.nn.log_softmax(logits_BTV.astype(jnp.float32), axis=-1)
  return jnp.take_along_axis(logp_BTV, tokens_BT[:, 1:, None], axis=-1)[..., 0]


def grpo_loss(logp_BT, ref_logp_BT, mask_BT, adv_B, beta):
  """(loss, (policy term, KL)) on per-token log-probs of sampled rows; mask is over tokens[:, 1:]."""
  w_BT = mask_BT.astype(jnp.float32)
  n = jnp.maximum(jnp.sum(w_BT), 1.0)
  policy = -jnp.sum(adv_B[:, None] * logp_BT * w_BT) / n
  r_BT = jax.lax.stop_gradient(ref_logp_BT) - logp_BT
  kl = jnp.sum((jnp.exp(r_BT) - r_BT - 1.0) * w_BT) / n
  return policy + beta * kl, (policy, kl)


def exact_kl(logits_BTV, ref_logits_BTV, mask_BT):
  """KL(π ‖ π_ref) over the whole vocabulary, mean over masked positions (mask over tokens[:, 1:]).

  `affect` uses it on the rows it trains on: with no sampled reply to score, the full distribution
  at every reply position is kept near the reference, which is what keeps its replies well formed.
  """
  logp_BTV = jax.nn.log_softmax(logits_BTV.astype(jnp.float32), axis=-1)
  ref_BTV = jax.lax.stop_gradient(jax.nn.log_softmax(ref_logits_BTV.astype(jnp.float32), axis=-1))
  kl_BT = jnp.sum(jnp.exp(logp_BTV) * (logp_BTV - ref_BTV), axis=-1)
  w_BT = mask_BT.astype(jnp.float32)
  return jnp.sum(kl_BT * w_BT) / jnp.maximum(jnp.sum(w_BT), 1.0)


def _episode_means(rows):
  """Per-step rollout statistics of sampled rows (NaN for a member that samples none): the user's
  final valence, the acknowledgement rate and the reply length, over first-turn rows."""
  first = rows["first"]
  n = jnp.sum(first)
  mean = lambda x: jnp.where(n > 0, jnp.sum(x * first) / jnp.maximum(n, 1.0), jnp.nan)
  return {
    "reward": mean(rows["reward"]),
    "ack_rate": mean(rows["ack"]),
    "reply_tokens": mean(jnp.sum(rows["mask"], axis=-1).astype(jnp.float32)),
  }


def loss_fn(state, graphdef, batch, inputs, warm_ids_K, normalization="token", temperature=1.0):
  """w·L_base + λ·L_persona, L_persona = L_affect + β_affect·KL if is_affect else L_grpo, w = 1 − λ
  unless the regime sets a replay weight (as train.imitation_loss).

  inputs: this member's `lam`, `is_affect`, `beta` (its KL weight: to the reference on sampled
  tokens for GRPO, exact at reply positions for affect), `ref` (the reference model's state) and
  optionally `replay` (w).
  """
  model = nnx.merge(graphdef, state)
  base = train.token_loss(
    model, batch["base"]["tokens"], batch["base"]["mask"], normalization=normalization
  )
  rows = batch["persona"]
  logits_BTV = model(rows["tokens"][:, :-1]).logits_BTV
  ref_logits_BTV = nnx.merge(graphdef, inputs["ref"])(rows["tokens"][:, :-1]).logits_BTV
  mask_BT = rows["mask"][:, 1:]
  rl, (policy, sampled_kl) = grpo_loss(
    token_logp(logits_BTV / temperature, rows["tokens"]),
    token_logp(ref_logits_BTV / temperature, rows["tokens"]),
    mask_BT,
    rows["adv"],
    inputs["beta"],
  )
  is_affect = inputs["is_affect"] > 0
  aff = affect.affect_loss(logits_BTV, rows["tokens"], rows["mask"], warm_ids_K)
  kl = jnp.where(is_affect, exact_kl(logits_BTV, ref_logits_BTV, mask_BT), sampled_kl)
  persona = jnp.where(is_affect, aff + inputs["beta"] * kl, rl)
  lam = inputs["lam"]
  replay = inputs["replay"] if "replay" in inputs else 1.0 - lam
  loss = replay * base + lam * persona
  return loss, {
    "loss": loss,
    "base_loss": base,
    "persona_loss": persona,
    "policy_loss": policy,
    "kl": kl,
    "affect_loss": aff,
    **_episode_means(rows),
  }
