"""Direction interventions on the residual stream: steering and capping.

After block l (where layer_mask_L[l] is on) and at every token where
token_mask_BT is on:

  x += add_B * v_l                       (steering)
  p  = x . v_l
  x += (clip(p, lo_B, hi_B) - p) * v_l   (capping the projection onto v_l)

v_l is direction_LD[l] normalised to unit length. Strengths and bounds are per
example, so one batched pass can try several strengths or percentiles; each may
also carry a leading layer axis, (L, B), where the value differs by depth (a
percentile of a per-layer projection distribution).

Shape letters: L layers, B batch, T tokens, D model width.
"""

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np


class Intervention(NamedTuple):
  """A steer/cap intervention; a pytree, so it can be jitted and vmapped."""

  direction_LD: jax.Array
  layer_mask_L: jax.Array
  add_B: jax.Array
  lo_B: jax.Array
  hi_B: jax.Array
  # None means every token; generate() replaces it per phase (prompt/response).
  token_mask_BT: jax.Array | None = None


def _per_example(value, default: float) -> jax.Array:
  """A float32 (B,) array; a scalar becomes (1,), which broadcasts to any B."""
  value = jnp.asarray(default if value is None else value, jnp.float32)
  return value.reshape((1,)) if value.ndim == 0 else value


def _layer_mask(n_layers: int, layers: Sequence[int]) -> jax.Array:
  """An (L,) float mask from layer indices; rejects out-of-range indices."""
  layers = [int(l) for l in np.atleast_1d(np.asarray(layers))]
  bad = [l for l in layers if not -n_layers <= l < n_layers]
  if bad:
    raise ValueError(
      f"intervention layers {bad} must be in [0, {n_layers}) for a {n_layers}-layer model."
    )
  mask = np.zeros((n_layers,), np.float32)
  mask[layers] = 1.0
  return jnp.asarray(mask)


def steer(direction_LD, layers: Sequence[int], alpha_B, token_mask_BT=None) -> Intervention:
  """Adds alpha_B times the unit direction at the given layers."""
  direction_LD = jnp.asarray(direction_LD, jnp.float32)
  return Intervention(
    direction_LD=direction_LD,
    layer_mask_L=_layer_mask(direction_LD.shape[0], layers),
    add_B=_per_example(alpha_B, 0.0),
    lo_B=_per_example(None, -np.inf),
    hi_B=_per_example(None, np.inf),
    token_mask_BT=token_mask_BT,
  )


def cap(
  direction_LD, layers: Sequence[int], lo_B=None, hi_B=None, token_mask_BT=None
) -> Intervention:
  """Clamps the projection onto the unit direction to [lo_B, hi_B]."""
  direction_LD = jnp.asarray(direction_LD, jnp.float32)
  return Intervention(
    direction_LD=direction_LD,
    layer_mask_L=_layer_mask(direction_LD.shape[0], layers),
    add_B=_per_example(0.0, 0.0),
    lo_B=_per_example(lo_B, -np.inf),
    hi_B=_per_example(hi_B, np.inf),
    token_mask_BT=token_mask_BT,
  )


def apply_intervention(x_BTD: jax.Array, layer_index: int, iv: Intervention) -> jax.Array:
  """Returns the residual stream after block `layer_index` with `iv` applied."""
  v_D = iv.direction_LD[layer_index].astype(jnp.float32)
  # Normalise here too, so a hand-built Intervention means the same thing;
  # the floor keeps an all-zero (unused) direction from producing NaNs.
  v_D = v_D / jnp.maximum(jnp.linalg.norm(v_D), 1e-12)
  # Per-layer (L, B) values are read at this layer; (B,) ones apply at all.
  add_B, lo_B, hi_B = (a[layer_index] if a.ndim == 2 else a for a in (iv.add_B, iv.lo_B, iv.hi_B))
  x = x_BTD.astype(jnp.float32)
  y = x + add_B[:, None, None] * v_D[None, None, :]
  p_BT = jnp.einsum("btd,d->bt", y, v_D)
  # With lo=-inf and hi=+inf the correction is exactly zero, so steer is pure.
  shift_BT = jnp.clip(p_BT, lo_B[:, None], hi_B[:, None]) - p_BT
  y = y + shift_BT[:, :, None] * v_D[None, None, :]
  on = iv.layer_mask_L[layer_index] > 0
  if iv.token_mask_BT is not None:
    on = jnp.logical_and(on, iv.token_mask_BT > 0)
    on_BT1 = on[:, :, None]
  else:
    on_BT1 = jnp.reshape(on, (1, 1, 1))
  return jnp.where(on_BT1, y, x).astype(x_BTD.dtype)
