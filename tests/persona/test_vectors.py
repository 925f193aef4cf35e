"""persona/vectors.py: mean differences, the Assistant axis, role PCA and correlations recover planted directions."""

import jax
import numpy as np

from experiments.persona import vectors

jax.config.update("jax_numpy_rank_promotion", "raise")

D = 32


def test_planted_difference_is_recovered_from_activation_sets(unit):
  rng = np.random.default_rng(0)
  u = unit(1)
  neg = rng.normal(size=(3, 2000, D))
  pos = rng.normal(size=(3, 2000, D)) + 3.0 * u
  v = vectors.mean_difference(pos, neg)
  assert (vectors.cosine(v, np.tile(u, (3, 1))) > 0.99).all()


def test_assistant_axis_and_role_pca_recover_planted_directions(unit):
  rng = np.random.default_rng(0)
  u, w = unit(1), unit(2)
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
