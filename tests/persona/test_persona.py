"""Tests for persona vectors, the Assistant axis and their extraction (experiments/persona)."""

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pandas as pd
import pytest

from experiments.persona import activations, effects, geometry, persona_extension, vectors
import models

jax.config.update("jax_numpy_rank_promotion", "raise")

D = 32


def _unit(seed, d=D):
  u = np.random.default_rng(seed).normal(size=d)
  return u / np.linalg.norm(u)


def test_planted_difference_is_recovered_from_activation_sets():
  rng = np.random.default_rng(0)
  u = _unit(1)
  neg = rng.normal(size=(3, 2000, D))
  pos = rng.normal(size=(3, 2000, D)) + 3.0 * u
  v = vectors.mean_difference(pos, neg)
  assert (vectors.cosine(v, np.tile(u, (3, 1))) > 0.99).all()


def _planted_model(vocab=40, seed=0):
  """A nano model whose blocks add nothing, so every residual equals the token embedding."""
  cfg = models.get_config("nano", vocab, 32)
  graphdef, state = nnx.split(models.Transformer(cfg, rngs=nnx.Rngs(seed)))
  pure = nnx.to_pure_dict(state)
  for block in pure["blocks"].values():
    block["attn"]["out"] = jnp.zeros_like(block["attn"]["out"])
    block["mlp"]["down"] = jnp.zeros_like(block["mlp"]["down"])
  warm_ids, cold_ids = np.arange(20, 30), np.arange(30, 40)
  embed = np.array(pure["embed"])
  embed[warm_ids] = embed[cold_ids] + 3.0 * _unit(7)
  pure["embed"] = jnp.asarray(embed)
  nnx.replace_by_pure_dict(state, pure)
  return graphdef, state, warm_ids, cold_ids


def test_planted_direction_is_recovered_through_the_model():
  """Replies differing only by tokens whose embeddings differ along u give the vector u."""
  graphdef, state, warm_ids, cold_ids = _planted_model()
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
  assert (vectors.cosine(v_LD, np.tile(_unit(7), (2, 1))) > 0.99).all()


def test_assistant_axis_and_role_pca_recover_planted_directions():
  rng = np.random.default_rng(0)
  u, w = _unit(1), _unit(2)
  n_roles, n_layers = 24, 3
  # Roles spread along w (the main axis of role space); the default assistant sits apart along u.
  roles = rng.normal(scale=0.05, size=(n_roles, n_layers, D))
  roles += rng.normal(scale=3.0, size=(n_roles, 1, 1)) * w
  roles[0] += 5.0 * u
  axis = vectors.assistant_axis(roles)
  expected = roles[0] - roles[1:].mean(axis=0)
  np.testing.assert_allclose(axis, expected)
  assert (vectors.cosine(axis, np.tile(u, (n_layers, 1))) > 0.9).all()
  var, pcs = vectors.role_pca(roles)
  assert (np.abs(vectors.cosine(pcs[:, 0], np.tile(w, (n_layers, 1)))) > 0.99).all()
  assert (var[:, 0] > 0.8).all()
  np.testing.assert_allclose(var.sum(axis=1), 1.0, rtol=1e-6)


def test_pearson_and_fisher_ci():
  x = np.arange(20.0)
  assert vectors.pearson(x, 2 * x + 1) > 0.999
  assert np.isnan(vectors.pearson(x, np.ones(20)))
  lo, hi = vectors.fisher_ci(0.5, 50)
  assert lo < 0.5 < hi
  assert np.isnan(vectors.fisher_ci(0.5, 3)[0])


@pytest.fixture(scope="module")
def tiny_geometry(eval_pack):
  corpus, evalset, graphdef, base_E = eval_pack  # a pack of two copies of one untrained model
  pcfg = ml_collections.ConfigDict(dict(intervention_on="both", extract_rows=16, top_examples=3))
  geoms, top = geometry.compute(graphdef, base_E, corpus, evalset, pcfg, ["warm", "cold"], 64)
  return corpus, evalset, geoms, top


def test_geometry_of_a_tiny_model_has_every_part(tiny_geometry):
  _, _, geoms, top = tiny_geometry
  g = geoms[0]
  n_layers = 2
  assert g.vectors_VLD.shape == (3, n_layers, D)
  assert np.isfinite(g.vectors_VLD).all()
  assert g.role_means_RLD.shape == (geometry.N_ROLES, n_layers, D)
  assert geometry.N_ROLES >= 24
  assert (np.diff(g.thresholds_VLQ, axis=-1) >= 0).all()  # percentiles are sorted
  assert set(g.deltas) == {"warm", "cold", "warm_agree"}
  assert not top.empty and set(top.vector) == {"warmth", "sycophancy"}
  np.testing.assert_allclose(geoms[0].vectors_VLD, geoms[1].vectors_VLD, rtol=1e-5, atol=1e-6)


def test_projection_difference_weights_lambda_and_rho(tiny_geometry):
  _, _, geoms, _ = tiny_geometry
  g = geoms[0]
  np.testing.assert_allclose(
    g.projection_difference("cold", 0.5, 0.0), 0.5 * g.deltas["cold"].mean(axis=-1)
  )
  np.testing.assert_array_equal(g.projection_difference("warm", 0.0, 1.0), 0.0)
  alt = g.has_alt_n
  assert alt.any()
  full = g.projection_difference("warm", 1.0, 1.0)
  want = np.where(alt, np.nan_to_num(g.deltas["warm_agree"]), g.deltas["warm"]).mean(axis=-1)
  np.testing.assert_allclose(full, want, rtol=1e-6)


def test_extraction_split_is_stable_and_balanced(tiny_geometry):
  _, evalset, _, _ = tiny_geometry
  ids = sorted({i.item_id for i in evalset.items})
  split = [geometry.is_extraction(i) for i in ids]
  assert split == [geometry.is_extraction(i) for i in ids]
  assert 0 < sum(split) < len(split)


def test_drift_rows_pair_contexts_by_item():
  items = pd.DataFrame(
    {
      "task": ["t"] * 6,
      "item_id": ["a", "b", "c"] * 2,
      "context": ["neutral"] * 3 + ["emotional"] * 3,
      **{f"proj_{v}_l0": [0.0, 1.0, 2.0, -1.0, 0.0, 1.0] for v in vectors.VECTORS},
    }
  )
  rows = persona_extension.drift_rows(items, 1, 200, np.random.default_rng(0))
  drift = [r for r in rows if r["metric"] == "drift_vs_neutral[axis]"]
  assert len(drift) == 1 and drift[0]["value"] == -1.0 and drift[0]["n"] == 3
  mean = [r for r in rows if r["metric"] == "projection_mean[axis]" and r["context"] == "neutral"]
  assert mean[0]["value"] == 1.0


def test_lambda_slope_recovers_a_planted_slope():
  rows = []
  for seed in (0, 1):
    for lam in (0.0, 0.5, 1.0):
      for item in range(10):
        for ctx in ("neutral", "emotional"):
          value = item + (2.0 * lam if ctx == "emotional" else 0.0)
          rows.append(
            dict(
              preset="nano",
              protocol="finetune",
              run=f"r{lam}{seed}",
              persona="warm",
              warmth_weight=lam,
              warm_agreement=0.0,
              seed=seed,
              intervention="none",
              task="t",
              item_id=str(item),
              context=ctx,
              **{f"proj_{v}_l0": value for v in vectors.VECTORS},
            )
          )
  got = pd.DataFrame(effects.lambda_slope_rows(pd.DataFrame(rows), 100, np.random.default_rng(0)))
  drift = got[(got.metric == "drift_slope_vs_lambda[axis]") & (got.context == "emotional")]
  np.testing.assert_allclose(drift.value, 2.0)
  flat = got[(got.metric == "projection_slope_vs_lambda[axis]") & (got.context == "neutral")]
  np.testing.assert_allclose(flat.value, 0.0, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("update", ["full", "lora"])
def test_an_experiment_writes_geometry_capped_items_and_steered_twins(tmp_path, update):
  from experiments import experiment, resolve  # pylint: disable=g-import-not-at-top
  from experiments.configs import demo  # pylint: disable=g-import-not-at-top

  c = demo.get_config("runlocal")
  c.data.n_people, c.data.n_cities, c.data.eval_items = 12, 6, 2
  c.data.tasks = ("factual_qa", "misconception", "capability", "safety_refusal")
  c.grid.personas, c.grid.warmth_weights, c.grid.seeds = ("warm", "cold"), (0.0, 1.0), (0,)
  c.train.batch_size, c.train.base_steps, c.train.persona_steps = 8, 6, 4
  c.eval.bootstrap = 20
  c.extensions, c.persona.cap_cells, c.persona.sweep = ("persona",), "all", True
  c.persona.sweep_percentiles, c.persona.steer_alphas = (50,), (4.0,)
  c.train.persona_update = update  # capping and steering on adapted models as on full ones
  cfg = resolve.resolve(c)
  metrics, items = experiment.run(cfg, str(tmp_path))
  (ext,) = cfg.extensions
  rows, text = ext.summarize(str(tmp_path), metrics, items)
  default = "cap@p25:L1"  # nano's tested default (experiments/persona/defaults.py)
  assert set(items.intervention) == {
    "none",
    default,
    "cap@p50:L0",
    "cap@p50:L1",
    "cap@p50:L0-1",
    "train-steer+4:L1",
  }
  capped = items[items.intervention == default]
  assert set(capped.run) == {r for r in items.run if "psteer" not in r}
  geo = metrics[metrics.task == "persona_geometry"]
  assert set(geo[geo.metric == "cos_axis_pc1"].layer) == {0, 1}
  assert set(geo[geo.metric == "drift_vs_neutral[axis]"].context) >= {"emotional"}
  assert {"proj_axis_l0", "proj_warmth_l1", "persona_split"} <= set(items.columns)
  assert set(rows.metric) >= {
    "error_rate_change_vs_uncapped",
    "trait_prediction_r[warmth]",
    "shift_prediction_r[warmth:warmth]",
    "error_rate_change_vs_plain_twin",
  }
  for path in (
    "persona/nano-finetune/geometry-s0.npz",
    "persona/nano-finetune/top_examples.csv",
    "persona/defaults.json",
    "persona/capping_tradeoff.csv",
  ):
    assert (tmp_path / path).exists(), path
  assert "capped − uncapped" in text and "persona geometry" in text


def test_fine_tuning_replicates_are_averaged_within_their_base_seed_not_dropped():
  # Two base seeds, two fine-tuning replicates each: per base seed the replicates' mean is 1 and 3,
  # so the estimate is 2; keeping only one replicate per seed (an overwrite) would give 3 or 1.
  values = {(0, 0): 0.0, (0, 1): 2.0, (1, 0): 2.0, (1, 1): 4.0}
  frame = pd.DataFrame(
    [
      dict(seed=s, finetune_seed=k, task="factual_qa", item_id=f"factual_qa/p{i}/x", diff=v)
      for (s, k), v in values.items()
      for i in range(5)
    ]
  )
  est, lo, hi = effects.boot_mean(frame, "diff", 200, np.random.default_rng(0))
  assert est == pytest.approx(2.0) and lo <= 2.0 <= hi
