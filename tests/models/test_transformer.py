"""Tests for models.config, .presets, .transformer and .kv_cache."""

import dataclasses
import functools
import json
import re

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
from models import transformer

jax.config.update("jax_numpy_rank_promotion", "raise")

VOCAB = 37
MAX_LEN = 32
AXIS_NAMES = {"vocab", "embed", "heads", "kv", "mlp", "layers", None}


@pytest.fixture
def nano(nano_model):
  """nano(seed=0, **overrides): the shared nano Transformer (never mutated here)."""
  return lambda seed=0, **overrides: nano_model(VOCAB, MAX_LEN, seed, **overrides)


@functools.partial(jax.jit, static_argnums=0, static_argnames=("return_residuals",))
def _jit_forward(graphdef, state, tokens_BT, **kwargs):
  return nnx.merge(graphdef, state)(tokens_BT, **kwargs)


def _forward(model, tokens_BT, **kwargs):
  """Jitted model call: eager op-by-op dispatch would dominate test time."""
  return _jit_forward(*nnx.split(model), tokens_BT, **kwargs)


def _tokens(b, t, seed=1):
  return jax.random.randint(jax.random.key(seed), (b, t), 0, VOCAB)


def _n_real_params(cfg):
  abstract = nnx.eval_shape(lambda: models.Transformer(cfg, rngs=nnx.Rngs(0)))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


# Config and presets.


@pytest.mark.parametrize(
  "field,value,fragment",
  [
    ("vocab_size", 0, "model.vocab_size=0"),
    ("d_model", -8, "model.d_model=-8"),
    ("n_layers", True, "model.n_layers=True"),
    ("n_heads", 3, "model.n_heads=3 must divide model.d_model=32"),
    ("d_ff", 1.5, "model.d_ff=1.5"),
    ("max_len", 0, "model.max_len=0"),
    ("positional", "alibi", "model.positional='alibi'"),
    ("tied_embeddings", "yes", "model.tied_embeddings='yes'"),
    ("compute_dtype", "float16", "model.compute_dtype='float16'"),
    ("param_dtype", "int8", "model.param_dtype='int8'"),
    ("attention_impl", "flash", "model.attention_impl='flash'"),
    (
      "attention_impl",
      "cudnn",
      "model.attention_impl='cudnn' needs model.compute_dtype='bfloat16'",
    ),
    ("lora_rank", -1, "model.lora_rank=-1"),
    ("lora_rank", 4, "model.lora_rank=4 needs at least one projection"),
    ("lora_alpha", 0.0, "model.lora_alpha=0.0"),
    ("lora_targets", ("gate",), "model.lora_targets=['gate']"),
  ],
)
def test_bad_config_raises_naming_field(field, value, fragment):
  with pytest.raises(ValueError, match="^" + re.escape(fragment)):
    kwargs = dict(models.PRESETS["nano"], vocab_size=VOCAB, max_len=MAX_LEN)
    models.ModelConfig(**{**kwargs, field: value})


def test_rope_needs_even_head_dim():
  with pytest.raises(ValueError, match="must be even"):
    models.ModelConfig(VOCAB, 30, 1, 2, 64, MAX_LEN)
  models.ModelConfig(VOCAB, 30, 1, 2, 64, MAX_LEN, positional="learned")


def test_get_config_errors_list_allowed_values():
  with pytest.raises(ValueError, match="'gpt2s'.*'nano'"):
    models.get_config("huge", VOCAB, MAX_LEN)
  with pytest.raises(ValueError, match="d_modle"):
    models.get_config("nano", VOCAB, MAX_LEN, d_modle=3)


def test_config_is_frozen_and_hashable():
  cfg = models.get_config("nano", VOCAB, MAX_LEN)
  with pytest.raises(dataclasses.FrozenInstanceError):
    cfg.d_model = 64
  assert hash(cfg) == hash(models.get_config("nano", VOCAB, MAX_LEN))


@pytest.mark.parametrize("name", sorted(models.PRESETS))
def test_n_params_matches_real_count(name):
  for positional, tied in [("rope", True), ("learned", False)]:
    cfg = models.get_config(name, 1000, 256, positional=positional, tied_embeddings=tied)
    assert cfg.n_params(non_embedding=False) == _n_real_params(cfg)
    embedding = 1000 * cfg.d_model * (1 if tied else 2)
    embedding += 256 * cfg.d_model if positional == "learned" else 0
    assert cfg.n_params(non_embedding=True) == (cfg.n_params(non_embedding=False) - embedding)


def test_presets_span_three_orders_of_magnitude():
  sizes = {
    name: models.get_config(name, 1000, 256).n_params(non_embedding=True) for name in models.PRESETS
  }
  assert max(sizes.values()) / min(sizes.values()) >= 1000
  assert 80e6 < sizes["gpt2s"] < 90e6


def test_flops_per_token():
  cfg = models.get_config("gpt2s", 1000, 1024)
  n = cfg.n_params(non_embedding=True) + 768 * 1000
  assert cfg.flops_per_token(1024) == 6 * n + 12 * 12 * 768 * 1024


# Model.


def test_parameters_carry_logical_axis_names(nano):
  model = nano(positional="learned", tied_embeddings=False)
  for path, param in nnx.to_flat_state(nnx.state(model, nnx.Param)):
    names = param.get_metadata()["out_sharding"]
    assert len(names) == param[...].ndim, path
    assert set(names) <= AXIS_NAMES, path
  specs = nnx.get_partition_spec(nnx.state(model, nnx.Param))
  assert specs["embed"].get_value() == jax.sharding.PartitionSpec("vocab", "embed")


def test_a_lora_config_survives_json_and_stays_hashable():
  cfg = models.get_config("nano", VOCAB, MAX_LEN, lora_rank=2, lora_targets=("query", "up"))
  back = models.ModelConfig(**json.loads(json.dumps(dataclasses.asdict(cfg))))
  assert back == cfg and hash(back) == hash(cfg) and back.lora_scale == 8.0
  assert back.adapted("up") and not back.adapted("down")


def test_adapters_start_as_the_base_model_and_carry_logical_names():
  base_cfg = models.get_config("nano", VOCAB, MAX_LEN)
  cfg = dataclasses.replace(base_cfg, lora_rank=2, lora_targets=("query", "out", "down"))
  base, adapted = (
    models.Transformer(base_cfg, rngs=nnx.Rngs(0)),
    models.Transformer(cfg, rngs=nnx.Rngs(1)),
  )
  adapters = nnx.state(adapted, nnx.LoRAParam)
  names = {path[-3:-1] for path, _ in nnx.to_flat_state(adapters)}
  assert names == {("attn", "query_lora"), ("attn", "out_lora"), ("mlp", "down_lora")}
  for path, param in nnx.to_flat_state(adapters):
    labels = param.get_metadata()["out_sharding"]
    assert len(labels) == 2 and "lora" in labels and set(labels) <= AXIS_NAMES | {"lora"}, path
  # Base weights in the adapted graph: B = 0, so the same logits, bit for bit.
  nnx.update(adapted, nnx.state(base, nnx.Not(nnx.LoRAParam)))
  tokens = _tokens(2, 7)
  np.testing.assert_array_equal(
    _forward(adapted, tokens).logits_BTV, _forward(base, tokens).logits_BTV
  )


def test_an_adapter_adds_alpha_over_rank_times_its_low_rank_product():
  cfg = models.get_config("nano", VOCAB, MAX_LEN, lora_rank=2, lora_alpha=6.0, lora_targets=("up",))
  mlp = transformer.MLP(cfg, rngs=nnx.Rngs(0))
  mlp.up_lora.lora_b[...] = jax.random.normal(jax.random.key(1), mlp.up_lora.lora_b.shape)
  x = jax.random.normal(jax.random.key(2), (1, 3, cfg.d_model))
  a, b = mlp.up_lora.lora_a[...], mlp.up_lora.lora_b[...]
  h = jax.nn.gelu(x @ mlp.up[...] + 3.0 * (x @ a @ b))
  np.testing.assert_allclose(mlp(x), h @ mlp.down[...], rtol=1e-5, atol=1e-5)


def test_forward_shapes_and_dtypes(nano):
  model = nano()
  out = _forward(model, _tokens(2, 7), return_residuals=True)
  assert out.logits_BTV.shape == (2, 7, VOCAB)
  assert out.logits_BTV.dtype == jnp.float32
  assert out.residuals_LBTD.shape == (2, 2, 7, 32)
  assert out.residuals_LBTD.dtype == jnp.float32
  assert out.cache is None
  assert _forward(model, _tokens(2, 7)).residuals_LBTD is None
  assert np.isfinite(out.logits_BTV).all()


def test_bfloat16_compute_is_close_to_float32(nano):
  tokens = _tokens(2, 7)
  f32 = _forward(nano(), tokens).logits_BTV
  model = nano(compute_dtype="bfloat16")
  out = _forward(model, tokens, mask_BT=jnp.ones((2, 7), jnp.int32))
  assert out.logits_BTV.dtype == jnp.float32
  np.testing.assert_allclose(out.logits_BTV, f32, atol=5e-2)


@pytest.mark.parametrize("positional", ["rope", "learned"])
def test_changing_future_token_leaves_past_logits_unchanged(nano, positional):
  model = nano(positional=positional)
  tokens = _tokens(2, 8)
  changed = tokens.at[:, 5].set((tokens[:, 5] + 1) % VOCAB)
  a, b = _forward(model, tokens).logits_BTV, _forward(model, changed).logits_BTV
  np.testing.assert_allclose(a[:, :5], b[:, :5], rtol=0, atol=1e-6)
  assert not np.allclose(a[:, 5:], b[:, 5:])


@pytest.mark.parametrize("with_mask", [False, True])
def test_gradient_to_future_embeddings_is_zero(nano, with_mask):
  # Untied, so the embedding table feeds only the input, and distinct tokens,
  # so each embedding row belongs to exactly one position.
  model = nano(tied_embeddings=False)
  tokens = jnp.arange(8, dtype=jnp.int32)[None] + 3
  mask = jnp.ones((1, 8), jnp.int32) if with_mask else None
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def early_logits(params):
    m = nnx.merge(graphdef, params, rest)
    return jnp.sum(m(tokens, mask_BT=mask).logits_BTV[:, :4])

  grad_VD = jax.jit(jax.grad(early_logits))(params)["embed"][...]
  assert np.all(grad_VD[tokens[0, 4:]] == 0)
  assert np.all(np.abs(grad_VD[tokens[0, :4]]).sum(axis=-1) > 0)


def test_all_ones_mask_equals_no_mask(nano):
  model = nano()
  tokens = _tokens(3, 6)
  np.testing.assert_allclose(
    _forward(model, tokens).logits_BTV,
    _forward(model, tokens, mask_BT=jnp.ones((3, 6), jnp.int32)).logits_BTV,
    rtol=0,
    atol=1e-6,
  )


@pytest.mark.parametrize("positional", ["rope", "learned"])
def test_left_padding_does_not_change_real_logits(nano, positional):
  model = nano(positional=positional)
  tokens = _tokens(2, 6)
  pad = _tokens(2, 3, seed=7)  # arbitrary junk: it must be ignored, not zero
  padded = jnp.concatenate([pad, tokens], axis=1)
  mask = jnp.concatenate([jnp.zeros((2, 3), jnp.int32), jnp.ones((2, 6), jnp.int32)], axis=1)
  out = _forward(model, padded, mask_BT=mask).logits_BTV
  np.testing.assert_allclose(out[:, 3:], _forward(model, tokens).logits_BTV, atol=1e-5)
  assert np.isfinite(out).all()


def _left_padded_batch():
  """Two prompts of lengths 5 and 3, left-padded to 5, then 4 more tokens."""
  tokens = _tokens(2, 9)
  mask = jnp.ones((2, 9), jnp.int32).at[1, :2].set(0)
  return tokens, mask


@pytest.mark.parametrize("positional", ["rope", "learned"])
def test_kv_cache_matches_full_forward(nano, positional):
  model = nano(positional=positional)
  tokens, mask = _left_padded_batch()
  full = _forward(model, tokens, mask_BT=mask).logits_BTV
  cache = models.init_cache(model.cfg, 2, 12)
  out = _forward(model, tokens[:, :5], mask_BT=mask[:, :5], cache=cache)
  logits = [out.logits_BTV]
  for i in range(5, 9):
    out = _forward(model, tokens[:, i : i + 1], cache=out.cache)
    logits.append(out.logits_BTV)
  cached = jnp.concatenate(logits, axis=1)
  real = np.asarray(mask, bool)
  np.testing.assert_allclose(cached[real], full[real], atol=1e-5)
  assert int(out.cache.index) == 9
  np.testing.assert_array_equal(out.cache.next_position_B, [9, 7])


def test_kv_cache_step_jits_without_recompiling(nano):
  model = nano()
  graphdef, state = nnx.split(model)
  traces = []

  @jax.jit
  def step(state, token_B1, cache):
    traces.append(1)
    return nnx.merge(graphdef, state)(token_B1, cache=cache)

  cache = models.init_cache(model.cfg, 2, 8)
  for i in range(3):
    out = step(state, _tokens(2, 1, seed=i), cache)
    cache = out.cache
  assert len(traces) == 1


def test_jit_split_merge_matches_eager(nano):
  model = nano()
  graphdef, state = nnx.split(model)
  tokens = _tokens(2, 5)
  fwd = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x).logits_BTV)
  np.testing.assert_allclose(fwd(state, tokens), model(tokens).logits_BTV, atol=1e-6)


def test_rope_preserves_norm_and_is_relative():
  x = jax.random.normal(jax.random.key(0), (1, 2, 1, 8))
  pos = jnp.array([[3, 10]])
  rotated = transformer.rope(x, pos)
  np.testing.assert_allclose(
    jnp.linalg.norm(rotated, axis=-1), jnp.linalg.norm(x, axis=-1), rtol=1e-5
  )
  q, k = x[:, :1], x[:, 1:]
  dot = lambda pq, pk: jnp.sum(
    transformer.rope(q, jnp.array([[pq]])) * transformer.rope(k, jnp.array([[pk]]))
  )
  np.testing.assert_allclose(dot(5, 2), dot(13, 10), rtol=1e-4)
