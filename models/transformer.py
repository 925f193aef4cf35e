"""Decoder-only transformer (Flax NNX) with a tappable, steerable residual.

Shape letters, used as suffixes on array names:
  B batch           T tokens in this call      S key/value slots (T, or cache)
  D d_model         H attention heads          K head dim (d_model // H)
  F d_ff            V vocabulary               L layers

mask_BT is 1 for real tokens and 0 for padding (prompts are left-padded); no
real token attends to the future or to a padding key. With a cache, the new tokens'
keys/values are written at the cache index and attention spans every valid
slot. An intervention acts on the stream after each block (interventions.py).

The residual stream is kept in float32; each sublayer casts its input to
cfg.compute_dtype for the matmuls, and attention softmax and logits are float32.
With cfg.lora_rank > 0, a low-rank adapter (nnx.LoRA, its parameters
nnx.LoRAParam) sits beside each projection named in cfg.lora_targets: the
projection reads W + (alpha / rank) * A @ B, on its flattened (in, out) shape.
B starts at zero, so an adapted model starts as its base model.

Parameters carry logical axis names (vocab, embed, heads, kv, mlp, lora) as metadata
only (eager_sharding=False): nothing is placed on a mesh until the trainer maps
them to mesh axes (nnx.get_partition_spec + logical axis rules). Activations are
pinned by logical names too (batch, length, act_*), which only acts inside the
trainer's models.partitioning.axis_rules context.
"""

from typing import NamedTuple

from flax import nnx
import jax
import jax.numpy as jnp

from models import kv_cache
from models.config import ModelConfig
from models.interventions import Intervention, apply_intervention
from models.partitioning import constrain

ROPE_BASE = 10_000.0
NORM_EPS = 1e-6
EMBED_STD = 0.02


class Output(NamedTuple):
  """What a forward pass returns."""

  logits_BTV: jax.Array  # float32
  residuals_LBTD: jax.Array | None  # stream after every block, float32
  cache: kv_cache.Cache | None


def _param(init, names, rngs: nnx.Rngs, shape, dtype) -> nnx.Param:
  """A parameter annotated with logical axis names, harmless without a mesh."""
  init = nnx.with_partitioning(init, names, eager_sharding=False)
  return nnx.Param(init(rngs.params(), shape, dtype))


def _fan_in(scale: float, in_axis, out_axis):
  return nnx.initializers.variance_scaling(
    scale, "fan_in", "truncated_normal", in_axis=in_axis, out_axis=out_axis
  )


def _adapter(cfg: ModelConfig, projection: str, in_names, out_names, rngs: nnx.Rngs):
  """nnx.LoRA beside `projection` if cfg adapts it, else None; names as the projection's.

  Flattened dimensions (heads x kv) keep the name of their outer one, so tensor parallelism
  splits the adapter's output as it splits the projection's; the rank is not sharded.
  """
  if not cfg.adapted(projection):
    return None
  size = {"embed": cfg.d_model, "mlp": cfg.d_ff, "heads": cfg.d_model}
  named = lambda init, names: nnx.with_partitioning(init, names, eager_sharding=False)
  return nnx.LoRA(
    size[in_names[0]],
    cfg.lora_rank,
    size[out_names[0]],
    dtype=cfg.compute_dtype,
    param_dtype=cfg.param_dtype,
    a_initializer=named(nnx.initializers.he_uniform(), (in_names[0], "lora")),
    b_initializer=named(nnx.initializers.zeros, ("lora", out_names[0])),
    rngs=rngs,
  )


def _adapt(out, x, adapter, scale):
  """out + scale * adapter(x), with x's and out's trailing dimensions flattened for the adapter."""
  if adapter is None:
    return out
  lead = x.shape[:2]
  delta = adapter(x.reshape(*lead, -1)) * jnp.asarray(scale, out.dtype)
  return out + delta.reshape(out.shape).astype(out.dtype)


def rope(x_BTHK: jax.Array, positions_BT: jax.Array) -> jax.Array:
  """Rotates query/key halves by position-dependent angles (RoPE)."""
  half = x_BTHK.shape[-1] // 2
  freq_k = ROPE_BASE ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angle_BTk = positions_BT.astype(jnp.float32)[:, :, None] * freq_k[None, None]
  sin_BT1k = jnp.sin(angle_BTk)[:, :, None, :]
  cos_BT1k = jnp.cos(angle_BTk)[:, :, None, :]
  x = x_BTHK.astype(jnp.float32)  # angles lose precision in bfloat16
  x1, x2 = x[..., :half], x[..., half:]
  out = jnp.concatenate([x1 * cos_BT1k - x2 * sin_BT1k, x2 * cos_BT1k + x1 * sin_BT1k], axis=-1)
  return out.astype(x_BTHK.dtype)


class RMSNorm(nnx.Module):
  """Root-mean-square norm with a learned scale, computed in float32."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.scale = _param(nnx.initializers.ones, ("embed",), rngs, (cfg.d_model,), cfg.param_dtype)

  def __call__(self, x_BTD: jax.Array) -> jax.Array:
    x = x_BTD.astype(jnp.float32)
    ms_BT1 = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
    scale_11D = self.scale[...].astype(jnp.float32)[None, None, :]
    return x * jax.lax.rsqrt(ms_BT1 + NORM_EPS) * scale_11D


class Attention(nnx.Module):
  """Multi-head causal self-attention, optionally reading/writing a KV cache."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    d, h, k = cfg.d_model, cfg.n_heads, cfg.head_dim
    qkv_init = _fan_in(1.0, 0, (1, 2))
    names = ("embed", "heads", "kv")
    self.query = _param(qkv_init, names, rngs, (d, h, k), cfg.param_dtype)
    self.key = _param(qkv_init, names, rngs, (d, h, k), cfg.param_dtype)
    self.value = _param(qkv_init, names, rngs, (d, h, k), cfg.param_dtype)
    # GPT-2 residual scaling: keeps the stream's variance flat in depth.
    self.out = _param(
      _fan_in(1.0 / (2 * cfg.n_layers), (0, 1), 2),
      ("heads", "kv", "embed"),
      rngs,
      (h, k, d),
      cfg.param_dtype,
    )
    self.query_lora = _adapter(cfg, "query", ("embed",), ("heads",), rngs)
    self.key_lora = _adapter(cfg, "key", ("embed",), ("heads",), rngs)
    self.value_lora = _adapter(cfg, "value", ("embed",), ("heads",), rngs)
    self.out_lora = _adapter(cfg, "out", ("heads",), ("embed",), rngs)

  def __call__(self, x_BTD, positions_BT, attn_mask, cache, layer):
    cdt = self.cfg.compute_dtype
    scale = self.cfg.lora_scale
    q_BTHK = _adapt(
      jnp.einsum("btd,dhk->bthk", x_BTD, self.query[...].astype(cdt)), x_BTD, self.query_lora, scale
    )
    k_BTHK = _adapt(
      jnp.einsum("btd,dhk->bthk", x_BTD, self.key[...].astype(cdt)), x_BTD, self.key_lora, scale
    )
    v_BTHK = _adapt(
      jnp.einsum("btd,dhk->bthk", x_BTD, self.value[...].astype(cdt)), x_BTD, self.value_lora, scale
    )
    names = ("batch", "length", "act_heads", "kv")
    q_BTHK, k_BTHK, v_BTHK = (constrain(a, names) for a in (q_BTHK, k_BTHK, v_BTHK))
    if self.cfg.positional == "rope":
      q_BTHK = rope(q_BTHK, positions_BT)
      k_BTHK = rope(k_BTHK, positions_BT)
    if cache is not None:
      cache = kv_cache.write_layer(cache, layer, k_BTHK, v_BTHK)
      k_BSHK, v_BSHK = cache.k_LBSHK[layer], cache.v_LBSHK[layer]
    else:
      k_BSHK, v_BSHK = k_BTHK, v_BTHK
    # attn_mask is None only for an unpadded, unpacked, uncached call: pure
    # causal, where cuDNN skips the upper triangle. Dense masks (left padding,
    # packed segments, cache slots, 1-token queries) go to XLA: the public
    # cuDNN entry point takes no segment ids and its mask-as-bias path has
    # shape restrictions (jax-ml/jax#28974).
    impl = self.cfg.attention_impl
    if attn_mask is not None and impl == "cudnn":
      impl = "xla"
    o_BTHK = jax.nn.dot_product_attention(
      q_BTHK, k_BSHK, v_BSHK, mask=attn_mask, is_causal=attn_mask is None, implementation=impl
    )
    out_BTD = _adapt(
      jnp.einsum("bthk,hkd->btd", o_BTHK, self.out[...].astype(cdt)), o_BTHK, self.out_lora, scale
    )
    return out_BTD, cache


class MLP(nnx.Module):
  """Two-layer GELU feed-forward."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.up = _param(
      _fan_in(1.0, 0, 1), ("embed", "mlp"), rngs, (cfg.d_model, cfg.d_ff), cfg.param_dtype
    )
    self.down = _param(
      _fan_in(1.0 / (2 * cfg.n_layers), 0, 1),
      ("mlp", "embed"),
      rngs,
      (cfg.d_ff, cfg.d_model),
      cfg.param_dtype,
    )
    self.up_lora = _adapter(cfg, "up", ("embed",), ("mlp",), rngs)
    self.down_lora = _adapter(cfg, "down", ("mlp",), ("embed",), rngs)

  def __call__(self, x_BTD: jax.Array) -> jax.Array:
    cdt, scale = self.cfg.compute_dtype, self.cfg.lora_scale
    h_BTF = _adapt(
      jnp.einsum("btd,df->btf", x_BTD, self.up[...].astype(cdt)), x_BTD, self.up_lora, scale
    )
    h_BTF = jax.nn.gelu(constrain(h_BTF, ("batch", "length", "act_mlp")))
    return _adapt(
      jnp.einsum("btf,fd->btd", h_BTF, self.down[...].astype(cdt)), h_BTF, self.down_lora, scale
    )


class Block(nnx.Module):
  """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.attn_norm = RMSNorm(cfg, rngs=rngs)
    self.attn = Attention(cfg, rngs=rngs)
    self.mlp_norm = RMSNorm(cfg, rngs=rngs)
    self.mlp = MLP(cfg, rngs=rngs)

  def __call__(self, x_BTD, positions_BT, attn_mask, cache, layer):
    cdt = self.cfg.compute_dtype
    h_BTD, cache = self.attn(
      self.attn_norm(x_BTD).astype(cdt), positions_BT, attn_mask, cache, layer
    )
    x_BTD = x_BTD + h_BTD.astype(jnp.float32)
    h_BTD = self.mlp(self.mlp_norm(x_BTD).astype(cdt))
    return x_BTD + h_BTD.astype(jnp.float32), cache


def _attention_mask(mask_BT, cache, segment_ids_BT=None):
  """Boolean (B, 1, T, S) mask: causal, no padding keys; None if just causal.

  With segment ids (packed training rows, no cache) a query sees only earlier keys of its own
  segment; the unused tail (segment 0) sees only itself and other tail slots, and carries no loss.
  """
  if segment_ids_BT is not None:
    t = segment_ids_BT.shape[1]
    causal_TS = jnp.arange(t)[None, :] <= jnp.arange(t)[:, None]
    same_BTS = segment_ids_BT[:, :, None] == segment_ids_BT[:, None, :]
    return (causal_TS[None] & same_BTS)[:, None, :, :]
  if mask_BT is None and cache is None:
    return None
  t = mask_BT.shape[1]
  if cache is None:
    q_T, s_S, valid_BS = jnp.arange(t), jnp.arange(t), mask_BT > 0
  else:
    q_T = cache.index + jnp.arange(t)
    s_S = jnp.arange(cache.key_mask_BS.shape[1])
    valid_BS = cache.key_mask_BS
  causal_TS = s_S[None, :] <= q_T[:, None]
  # A padding query may see itself so no softmax row is empty (cuDNN NaNs);
  # no real query ever sees a padding key.
  self_TS = s_S[None, :] == q_T[:, None]
  allowed_BTS = (causal_TS[None] & valid_BS[:, None, :]) | self_TS[None]
  return allowed_BTS[:, None, :, :]


class Transformer(nnx.Module):
  """Token embedding, positions, pre-norm blocks, final norm, output head."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    cfg.validate()
    self.cfg = cfg
    embed_init = nnx.initializers.normal(EMBED_STD)
    self.embed = _param(
      embed_init, ("vocab", "embed"), rngs, (cfg.vocab_size, cfg.d_model), cfg.param_dtype
    )
    # Assigned once: NNX fixes an attribute as data or static on first write.
    self.pos_embed = (
      _param(embed_init, (None, "embed"), rngs, (cfg.max_len, cfg.d_model), cfg.param_dtype)
      if cfg.positional == "learned"
      else None
    )
    self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.n_layers)])
    self.final_norm = RMSNorm(cfg, rngs=rngs)
    self.head = (
      None
      if cfg.tied_embeddings
      else _param(
        embed_init, ("embed", "vocab"), rngs, (cfg.d_model, cfg.vocab_size), cfg.param_dtype
      )
    )

  def __call__(
    self,
    tokens_BT,
    *,
    mask_BT=None,
    positions_BT=None,
    segment_ids_BT=None,
    cache=None,
    intervention: Intervention | None = None,
    return_residuals: bool = False,
  ) -> Output:
    """Logits for every token, plus residuals and the updated cache if asked.

    segment_ids_BT (packed rows, tasks/sequence_packing.py; pass their positions_BT too) confines attention
    to each segment; it takes no mask_BT or cache.
    """
    cfg = self.cfg
    if segment_ids_BT is not None and (mask_BT is not None or cache is not None):
      raise ValueError("segment_ids_BT (packed rows) takes no mask_BT or cache.")
    if self.pos_embed is not None and tokens_BT.shape[1] > cfg.max_len:
      raise ValueError(
        f"{tokens_BT.shape[1]} tokens exceed model.max_len={cfg.max_len} "
        "of a model with model.positional='learned'."
      )
    if intervention is not None and (
      intervention.direction_LD.shape[-2:] != (cfg.n_layers, cfg.d_model)
    ):
      raise ValueError(
        f"intervention.direction_LD has shape "
        f"{intervention.direction_LD.shape}; this model needs "
        f"({cfg.n_layers}, {cfg.d_model})."
      )
    if cache is not None and mask_BT is None:
      mask_BT = jnp.ones(tokens_BT.shape, jnp.int32)
    # Default positions count the real tokens before each one (left padding
    # leaves real tokens at 0, 1, ...), continuing from the cache if given.
    if positions_BT is None:
      if mask_BT is None:
        positions_BT = jnp.broadcast_to(
          jnp.arange(tokens_BT.shape[1], dtype=jnp.int32), tokens_BT.shape
        )
      else:
        positions_BT = jnp.maximum(jnp.cumsum(mask_BT.astype(jnp.int32), axis=1) - 1, 0)
      if cache is not None:
        positions_BT = positions_BT + cache.next_position_B[:, None]

    x_BTD = self.embed[...][tokens_BT].astype(jnp.float32)
    if self.pos_embed is not None:
      x_BTD = x_BTD + self.pos_embed[...][positions_BT].astype(jnp.float32)
    x_BTD = constrain(x_BTD, ("batch", "length", "act_embed"))

    if cache is not None:
      cache = kv_cache.mark_tokens(cache, mask_BT)
    attn_mask = _attention_mask(mask_BT, cache, segment_ids_BT)

    residuals = []
    for layer, block in enumerate(self.blocks):
      x_BTD, cache = block(x_BTD, positions_BT, attn_mask, cache, layer)
      x_BTD = constrain(x_BTD, ("batch", "length", "act_embed"))
      if intervention is not None:
        x_BTD = apply_intervention(x_BTD, layer, intervention)
      if return_residuals:  # after the intervention: what the next block reads
        residuals.append(x_BTD)

    if cache is not None:
      cache = kv_cache.advance(cache, mask_BT)

    cdt = cfg.compute_dtype
    h_BTD = self.final_norm(x_BTD).astype(cdt)
    if self.head is None:
      logits_BTV = jnp.einsum(
        "btd,vd->btv", h_BTD, self.embed[...].astype(cdt), preferred_element_type=jnp.float32
      )
    else:
      logits_BTV = jnp.einsum(
        "btd,dv->btv", h_BTD, self.head[...].astype(cdt), preferred_element_type=jnp.float32
      )
    logits_BTV = constrain(logits_BTV, ("batch", "length", "act_vocab"))
    residuals_LBTD = jnp.stack(residuals) if return_residuals else None
    return Output(logits_BTV, residuals_LBTD, cache)
