"""Directions in activation space from activation sets: pure numpy, no model.

Shape letters: L layers, N examples, D model width, R roles, K principal components,
V vectors, E ensemble members.
"""

import numpy as np

VECTORS = ("axis", "warmth", "sycophancy")  # the order of every V axis


def mean_difference(pos_LND, neg_LND):
  """Per-layer difference of means, trait-expressing minus contrasting: (L, D)."""
  return np.mean(pos_LND, axis=1) - np.mean(neg_LND, axis=1)


def unit(v_LD):
  """Each layer's vector scaled to unit length (an all-zero row stays zero)."""
  norm_L1 = np.linalg.norm(v_LD, axis=-1, keepdims=True)
  return v_LD / np.maximum(norm_L1, 1e-12)


def cosine(a_LD, b_LD):
  """Per-layer cosine similarity: (L,)."""
  return np.sum(unit(a_LD) * unit(b_LD), axis=-1)


def project(acts_LND, v_LD):
  """Projection of every activation onto its layer's unit vector: (L, N)."""
  return np.einsum("lnd,ld->ln", acts_LND, unit(v_LD))


def role_pca(role_means_RLD):
  """Per-layer PCA of the role vectors: (variance fraction (L, K), components (L, K, D))."""
  centred_LRD = np.transpose(role_means_RLD, (1, 0, 2))
  centred_LRD = centred_LRD - centred_LRD.mean(axis=1, keepdims=True)
  _, s_LK, vt_LKD = np.linalg.svd(centred_LRD, full_matrices=False)
  var_LK = s_LK**2
  total_L1 = np.maximum(var_LK.sum(axis=-1, keepdims=True), 1e-30)
  return var_LK / total_L1, vt_LKD


def assistant_axis(role_means_RLD, default_index=0):
  """mean(default assistant) − mean(every other role), per layer: (L, D)."""
  others = np.delete(role_means_RLD, default_index, axis=0)
  return role_means_RLD[default_index] - others.mean(axis=0)


def pearson(x, y):
  """Pearson correlation over the finite pairs; NaN when either side does not vary."""
  x, y = np.asarray(x, float), np.asarray(y, float)
  ok = np.isfinite(x) & np.isfinite(y)
  x, y = x[ok], y[ok]
  if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
    return np.nan
  return float(np.corrcoef(x, y)[0, 1])


def fisher_ci(r, n, z_crit=1.959964):
  """A 95% CI for a Pearson r from n pairs (Fisher z); NaNs when it is undefined."""
  if not np.isfinite(r) or n < 4:
    return np.nan, np.nan
  z = np.arctanh(np.clip(r, -0.999999, 0.999999))
  half = z_crit / np.sqrt(n - 3)
  return float(np.tanh(z - half)), float(np.tanh(z + half))
