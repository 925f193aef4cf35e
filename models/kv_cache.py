"""Static-shape key/value cache for incremental decoding.

Slots are filled left to right, one call at a time, at the same slot index for
every example (prompts are left-padded so they end together). A slot holding a
padding token stays invalid in `key_mask_BS`, so attention never reads it.

Shape letters: L layers, B batch, S cache slots, H heads, K head dim.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from models.config import ModelConfig


class Cache(NamedTuple):
  """Keys/values of every layer for all tokens seen so far."""

  k_LBSHK: jax.Array  # keys after RoPE, so cached keys never need re-rotating
  v_LBSHK: jax.Array
  key_mask_BS: jax.Array  # bool: slot holds a real (non-padding) token
  index: jax.Array  # int32 scalar: first free slot
  next_position_B: jax.Array  # int32: position of each next real token


def init_cache(cfg: ModelConfig, batch: int, max_len: int, dtype=None) -> Cache:
  """Returns an empty cache with room for `max_len` tokens per example."""
  # Size it for prompt + new tokens: writes past the end are clamped by
  # dynamic_update_slice and would overwrite the last slots.
  dtype = jnp.dtype(cfg.compute_dtype if dtype is None else dtype)
  shape = (cfg.n_layers, batch, max_len, cfg.n_heads, cfg.head_dim)
  return Cache(
    k_LBSHK=jnp.zeros(shape, dtype),
    v_LBSHK=jnp.zeros(shape, dtype),
    key_mask_BS=jnp.zeros((batch, max_len), bool),
    index=jnp.zeros((), jnp.int32),
    next_position_B=jnp.zeros((batch,), jnp.int32),
  )


def write_layer(cache: Cache, layer: int, k_BTHK: jax.Array, v_BTHK: jax.Array) -> Cache:
  """Stores one layer's new keys/values at the cache index."""
  start = (layer, 0, cache.index, 0, 0)
  k = jax.lax.dynamic_update_slice(cache.k_LBSHK, k_BTHK[None].astype(cache.k_LBSHK.dtype), start)
  v = jax.lax.dynamic_update_slice(cache.v_LBSHK, v_BTHK[None].astype(cache.v_LBSHK.dtype), start)
  return cache._replace(k_LBSHK=k, v_LBSHK=v)


def mark_tokens(cache: Cache, mask_BT: jax.Array) -> Cache:
  """Marks the new tokens' slots valid (or not) before attention reads them."""
  key_mask = jax.lax.dynamic_update_slice(cache.key_mask_BS, mask_BT.astype(bool), (0, cache.index))
  return cache._replace(key_mask_BS=key_mask)


def advance(cache: Cache, mask_BT: jax.Array) -> Cache:
  """Moves the index past the new tokens; real ones advance the positions."""
  return cache._replace(
    index=cache.index + mask_BT.shape[1],
    next_position_B=cache.next_position_B + jnp.sum(mask_BT.astype(jnp.int32), axis=1),
  )
