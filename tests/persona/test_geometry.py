"""persona/geometry.py: a tiny model's persona geometry, projection differences and the extraction split."""

import jax
import ml_collections
import numpy as np
import pytest

from experiments.persona import geometry

jax.config.update("jax_numpy_rank_promotion", "raise")

D = 32


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
