"""Tests for experiments.persona.capping and per-layer bounds in models.interventions."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments import evaluate
from experiments.persona import capping
from experiments.persona.geometry import SeedGeometry
import models

jax.config.update("jax_numpy_rank_promotion", "raise")

L, D = 2, 32


def _unit(v):
  return v / jnp.linalg.norm(v)


def test_per_layer_bounds_clamp_each_layer_to_its_own_bound():
  x = 3 * jax.random.normal(jax.random.key(0), (2, 5, D))
  direction = jax.random.normal(jax.random.key(1), (L, D))
  lo_LB = jnp.array([[-0.5, -1.0], [0.5, 0.25]])
  iv = models.cap(direction, [0, 1], lo_B=lo_LB)
  for layer in range(L):
    v = _unit(direction[layer])
    y = models.apply_intervention(x, layer, iv)
    p_x, p_y = (jnp.einsum("btd,d->bt", a, v) for a in (x, y))
    np.testing.assert_allclose(p_y, jnp.maximum(p_x, lo_LB[layer][:, None]), atol=1e-5)
    orth = lambda a: a - jnp.einsum("btd,d->bt", a, v)[..., None] * v[None, None]
    np.testing.assert_allclose(orth(y), orth(x), atol=1e-5)


def test_infinite_bounds_are_an_exact_identity():
  x = 3 * jax.random.normal(jax.random.key(0), (2, 5, D))
  iv = models.cap(
    jax.random.normal(jax.random.key(1), (L, D)),
    [0, 1],
    lo_B=jnp.full((L, 2), -jnp.inf),
    hi_B=jnp.full((L, 2), jnp.inf),
  )
  np.testing.assert_array_equal(models.apply_intervention(x, 1, iv), x)


def test_per_layer_steering_adds_each_layers_amount():
  x = jax.random.normal(jax.random.key(0), (1, 3, D))
  direction = jax.random.normal(jax.random.key(1), (L, D))
  iv = models.steer(direction, [0, 1], jnp.array([[2.0], [-3.0]]))
  for layer, alpha in enumerate((2.0, -3.0)):
    np.testing.assert_allclose(
      models.apply_intervention(x, layer, iv),
      x + alpha * _unit(direction[layer])[None, None],
      atol=1e-5,
    )


@pytest.mark.parametrize(
  "spec,want",
  [("all", (0, 1, 2, 3)), ("back", (2, 3)), ("2", (2,)), ("1-2", (1, 2)), ("0,3", (0, 3))],
)
def test_parse_layers(spec, want):
  assert capping.parse_layers(spec, 4) == want


@pytest.mark.parametrize("spec", ["4", "x", "2-5", ""])
def test_parse_layers_rejects_bad_specs(spec):
  with pytest.raises(ValueError, match="persona.cap_layers"):
    capping.parse_layers(spec, 4)


def test_labels():
  assert capping.CapSetting("axis", 25, (1, 2)).label == "cap@p25:L1-2"
  assert capping.CapSetting("warmth", 10, (0,)).label == "cap[warmth]@p10:L0"
  assert capping.CapSetting("axis", 5, (0, 2)).label == "cap@p5:L0,2"
  with pytest.raises(ValueError, match="0..100"):
    capping.CapSetting("axis", 101, (0,))


def _geometry(seed=0, n_layers=L, width=D):
  rng = np.random.default_rng(seed)
  thresholds = np.sort(rng.normal(size=(3, n_layers, 101)), axis=-1)
  return SeedGeometry(
    rng.normal(size=(3, n_layers, width)), None, None, None, thresholds, {}, np.zeros(0, bool)
  )


def test_bounds_floor_the_axis_and_ceil_other_vectors():
  g = _geometry()
  lo, hi = capping.bounds_L(g, capping.CapSetting("axis", 25, (1,)))
  np.testing.assert_array_equal(lo, [-np.inf, g.thresholds_VLQ[0, 1, 25]])
  np.testing.assert_array_equal(hi, [np.inf, np.inf])
  lo, hi = capping.bounds_L(g, capping.CapSetting("warmth", 25, (0, 1)))
  np.testing.assert_array_equal(lo, [-np.inf, -np.inf])
  np.testing.assert_array_equal(hi, g.thresholds_VLQ[1, :, 75])


def test_clamped_share_counts_prompts_beyond_the_bound_at_the_capped_layers():
  from experiments.persona import persona_extension

  g = _geometry()
  unit = g.unit_VLD
  # 10 prompts whose last-token projection on the axis at layer 1 runs from far below to far above
  # the floor; layer 0 is far below everywhere but not capped by the setting.
  proj = np.linspace(-3, 3, 10)
  acts_LND = np.stack([-10 * np.ones((10, 1)) * unit[0, 0], proj[:, None] * unit[0, 1]])
  floor = g.thresholds_VLQ[0, 1, 25]
  (row,) = persona_extension.clamped_rows(acts_LND, g, [capping.CapSetting("axis", 25, (1,))])
  assert row["metric"] == "cap_clamped_share" and row["intervention"] == "cap@p25:L1"
  assert row["value"] == pytest.approx(np.mean(proj < floor)) and row["n"] == 10
  (both,) = persona_extension.clamped_rows(acts_LND, g, [capping.CapSetting("axis", 25, (0, 1))])
  assert both["value"] == pytest.approx((10 + np.sum(proj < floor)) / 20)


def test_sweep_settings_default_ranges():
  got = capping.sweep_settings("axis", [5, 25], [], 3)
  assert [s.label for s in got[:2]] == ["cap@p5:L0", "cap@p25:L0"]
  assert {s.layers for s in got} == {(0,), (1,), (2,), (1, 2), (0, 1, 2)}


@pytest.mark.slow  # three compilations of the decoder
def test_batched_settings_equal_separate_passes(eval_pack):
  """Several percentiles and layer ranges in one pass give what each gives alone."""
  corpus, evalset, graphdef, state_E = eval_pack
  width = models.PRESETS["nano"]["d_model"]
  geoms = [_geometry(0, width=width), _geometry(1, width=width)]
  # Thresholds near the middle of the real projections would be needed to bite; scale them so
  # that some settings clamp and some do not.
  for g in geoms:
    g.thresholds_VLQ *= 3.0
  eval_cfg = ml_collections.ConfigDict(dict(max_new_tokens=3, batch_size=7))
  settings = [capping.CapSetting("axis", 25, (0,)), capping.CapSetting("axis", 90, (0, 1))]
  together = capping.evaluate_settings(
    graphdef, state_E, geoms, evalset, corpus.tokenizer, eval_cfg, settings, "both"
  )
  for s, setting in enumerate(settings):
    alone = capping.evaluate_settings(
      graphdef, state_E, geoms, evalset, corpus.tokenizer, eval_cfg, [setting], "both"
    )
    for e in range(2):
      a, b = together[e][s], alone[e][0]
      assert (a.intervention == setting.label).all()
      assert list(a.reply) == list(b.reply)
      np.testing.assert_array_equal(a.mc_error.to_numpy(), b.mc_error.to_numpy())


def test_capping_at_infinite_bounds_reproduces_plain_evaluation(eval_pack):
  corpus, evalset, graphdef, state_E = eval_pack
  width = models.PRESETS["nano"]["d_model"]
  g = _geometry(width=width)
  g.thresholds_VLQ[:] = -np.inf  # a floor at -inf never binds
  eval_cfg = ml_collections.ConfigDict(dict(max_new_tokens=4, batch_size=64))
  capped = capping.evaluate_settings(
    graphdef,
    state_E,
    [g, g],
    evalset,
    corpus.tokenizer,
    eval_cfg,
    [capping.CapSetting("axis", 25, (0, 1))],
    "both",
  )
  plain = evaluate.generate_replies(graphdef, state_E, evalset, corpus.tokenizer, 4, 64)
  mc = evaluate.mc_errors(graphdef, state_E, evalset, corpus.tokenizer, 64)
  for e in range(2):
    assert list(capped[e][0].reply) == plain[e]
    np.testing.assert_array_equal(capped[e][0].mc_error.to_numpy(), mc[e])
