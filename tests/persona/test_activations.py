"""persona/activations.py: masked activation means read a planted direction through the model."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from experiments.persona import activations, vectors
import models

jax.config.update("jax_numpy_rank_promotion", "raise")


def _planted_model(direction, vocab=40, seed=0):
  """A nano model whose blocks add nothing, so every residual equals the token embedding."""
  cfg = models.get_config("nano", vocab, 32)
  graphdef, state = nnx.split(models.Transformer(cfg, rngs=nnx.Rngs(seed)))
  pure = nnx.to_pure_dict(state)
  for block in pure["blocks"].values():
    block["attn"]["out"] = jnp.zeros_like(block["attn"]["out"])
    block["mlp"]["down"] = jnp.zeros_like(block["mlp"]["down"])
  warm_ids, cold_ids = np.arange(20, 30), np.arange(30, 40)
  embed = np.array(pure["embed"])
  embed[warm_ids] = embed[cold_ids] + 3.0 * direction
  pure["embed"] = jnp.asarray(embed)
  nnx.replace_by_pure_dict(state, pure)
  return graphdef, state, warm_ids, cold_ids


def test_planted_direction_is_recovered_through_the_model(unit):
  """Replies differing only by tokens whose embeddings differ along u give the vector u."""
  graphdef, state, warm_ids, cold_ids = _planted_model(unit(7))
  state_E = jax.tree.map(lambda a: jnp.stack([a]), state)
  rng = np.random.default_rng(0)
  n, prompt_len, reply_len = 24, 5, 6
  prompts = rng.integers(3, 20, size=(n, prompt_len))
  pick = rng.integers(0, 10, size=(n, reply_len))
  means = {}
  for name, ids in (("warm", warm_ids), ("cold", cold_ids)):
    tokens = np.concatenate([prompts, ids[pick], np.zeros((n, 3), int)], axis=1).astype(np.int32)
    real = tokens != 0
    reply = np.zeros_like(real)
    reply[:, prompt_len : prompt_len + reply_len] = True
    means[name] = activations.masked_means(graphdef, state_E, tokens, real, reply, 16)[0]
  v_LD = vectors.mean_difference(means["warm"], means["cold"])
  assert (vectors.cosine(v_LD, np.tile(unit(7), (2, 1))) > 0.99).all()
