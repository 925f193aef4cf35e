"""A planted oracle: items.csv-shaped sweeps with a known warm − cold effect, and CI coverage.

Each item i of a cell is wrong, for seed s, with probability

  F⁻¹_cell(Φ(z_si)),   z_si = a·e_entity(i) + b·u_i + c·g_s + r·ε_si,   a² + b² + c² + r² = 1,

where F_cell is a Beta distribution with mean p_cell (p_base, p_warm, p_cold, p_lm) and
concentration κ, and e, u, g, ε are independent standard normals: e and u are item difficulty
shared by every seed (the world, hence each eval item, is the same for every seed), g a seed
shift shared by every cell of a seed. The warm cells draw their item term from u mixed with a
warm-only normal (correlation `warm_item_correlation`), so whether warm training breaks an item
is a property of the item that persists across seeds, as it is for trained models. Φ(z) is
uniform for every cell, so the expected error of a cell over items and seeds is exactly p_cell
and the expected warm − cold difference exactly p_warm − p_cold.

  python -m experiments.analysis.planted     # prints the coverage table
"""

import time

import numpy as np
import pandas as pd
from scipy import special
from scipy import stats as distributions

from experiments.analysis import stats

# Error rates of 30–40% with a warm − cold effect of 8 points; κ = 1 spreads items from almost
# always right to almost always wrong, as trained models' items are; entity, item and seed
# weights make most of an item's difficulty persistent and a little of it seed-specific.
PLANTED = dict(p_base=0.30, p_cold=0.32, p_lm=0.34, p_warm=0.40, concentration=1.0,
               entity_weight=0.5, item_weight=0.6, seed_weight=0.2, warm_item_correlation=0.5)
# Items per entity, as in the world: a person's attributes, a disease's symptom orders, a drug's
# weights; single-item entities (cities, disinformation) too.
ENTITY_SIZES = (1, 2, 3, 4, 6, 8)
SIZES = ((2, 12), (5, 25), (10, 50))
PERSONAS = {'none': 'p_base', 'warm': 'p_warm', 'cold': 'p_cold', 'length_matched': 'p_lm'}


def _check(params):
  """Raises ValueError for a rate outside (0, 1) or latent weights that do not fit in one."""
  for key in PERSONAS.values():
    if not 0.0 < params[key] < 1.0:
      raise ValueError(f'{key}={params[key]} leaves (0, 1): a rate must lie strictly inside.')
  weights = sum(params[k] ** 2 for k in ('entity_weight', 'item_weight', 'seed_weight'))
  if weights > 1.0:
    raise ValueError(f'entity_weight² + item_weight² + seed_weight² = {weights:.3f} leaves '
                     '[0, 1]: the latent difficulty must have unit variance.')
  if not (params['concentration'] > 0 and -1 <= params['warm_item_correlation'] <= 1):
    raise ValueError('concentration must be > 0 and warm_item_correlation in [-1, 1].')


def _entities(n_items, rng):
  """Entity index of each item: entities of ENTITY_SIZES items until n_items are filled."""
  sizes = []
  while sum(sizes) < n_items:
    sizes.append(int(rng.choice(ENTITY_SIZES)))
  return np.repeat(np.arange(len(sizes)), sizes)[:n_items]


def make_items(n_seeds, n_items, replicates=1, preset='planted', task='factual_qa',
               context='neutral', rng=None, **params):
  """items.csv rows of `replicates` independent planted sweeps (preset `{preset}{r}` each).

  Cells: base (persona none, λ = 0) and warm, cold, length_matched at λ = 1; every cell has
  the same n_items items (ids `task/p<entity>/f<k>`) for each of n_seeds seeds.
  """
  p = dict(PLANTED, **params)
  _check(p)
  rng = np.random.default_rng(rng)
  cells = [('none', 0.0), ('warm', 1.0), ('cold', 1.0), ('length_matched', 1.0)]
  kappa, rho = p['concentration'], p['warm_item_correlation']
  resid = np.sqrt(1.0 - p['entity_weight'] ** 2 - p['item_weight'] ** 2 - p['seed_weight'] ** 2)
  error, ids, names = [], [], []
  for r in range(replicates):
    ent = _entities(n_items, rng)
    k = np.arange(n_items) - np.searchsorted(ent, ent)
    shared_SI = (p['entity_weight'] * rng.standard_normal(ent.max() + 1)[ent][None] +
                 p['seed_weight'] * rng.standard_normal(n_seeds)[:, None] +
                 resid * rng.standard_normal((n_seeds, n_items)))
    item_I, warm_only_I = rng.standard_normal(n_items), rng.standard_normal(n_items)
    rates = []
    for persona, _ in cells:
      item = rho * item_I + np.sqrt(1 - rho ** 2) * warm_only_I if persona == 'warm' else item_I
      mean = p[PERSONAS[persona]]
      u_SI = special.ndtr(shared_SI + p['item_weight'] * item[None])
      rates.append(distributions.beta.ppf(u_SI, mean * kappa, (1 - mean) * kappa))
    prob = np.stack(rates)  # (cell, seed, item)
    error.append(rng.random(prob.shape) < prob)
    ids.append(np.array([f'{task}/p{e}/f{j}' for e, j in zip(ent, k)], dtype=object))
    names.append(f'{preset}{r}' if replicates > 1 else preset)
  n_cell = len(cells) * n_seeds * n_items
  cell_idx = np.repeat(np.arange(len(cells)), n_seeds * n_items)
  return pd.DataFrame(dict(
      preset=np.repeat(np.array(names, dtype=object), n_cell), n_params=np.nan,
      protocol='finetune',
      persona=np.tile(np.array([c for c, _ in cells], dtype=object)[cell_idx], replicates),
      warmth_weight=np.tile(np.array([w for _, w in cells])[cell_idx], replicates),
      warm_agreement=0.0, intervention='none', regime='default',
      seed=np.tile(np.repeat(np.arange(n_seeds), n_items), len(cells) * replicates),
      task=task, context=context,
      item_id=np.concatenate([np.tile(i, len(cells) * n_seeds) for i in ids]),
      error=np.concatenate([e.ravel() for e in error]).astype(int)))


def coverage(n_seeds, n_items, replicates=1000, p_warm=PLANTED['p_warm'],
             p_cold=PLANTED['p_cold'], seed=0, n_boot=1000, alpha=0.05, **params):
  """Share of stats.paired_deltas warm − cold intervals (1 − alpha) that cover p_warm − p_cold.

  Runs the same paired_deltas as for trained cells, once over all replicates (one preset each,
  every draw n_boot). Returns a dict: coverage, mean CI width, mean bias of the estimate,
  number of rows not estimable and seconds taken.
  """
  t0 = time.perf_counter()
  items = make_items(n_seeds, n_items, replicates, rng=seed, p_warm=p_warm, p_cold=p_cold,
                     **params)
  d = stats.paired_deltas(items, n_boot=n_boot, n_boot_primary=n_boot, seed=seed, alpha=alpha)
  d = d[(d.persona == 'warm') & (d.comparison == 'vs_cold')]
  truth = p_warm - p_cold
  covered = (d.ci_low <= truth) & (truth <= d.ci_high)
  return dict(seeds=n_seeds, items=n_items, replicates=len(d), truth=truth,
              coverage=float(covered.mean()), mean_ci_width=float((d.ci_high - d.ci_low).mean()),
              bias=float(d.estimate.mean() - truth), not_estimable=int((~d.estimable).sum()),
              seconds=time.perf_counter() - t0)


def coverage_table(sizes=SIZES, replicates=1000, seed=0, **kwargs):
  """coverage() at each (seeds, items) size, as a DataFrame."""
  return pd.DataFrame([coverage(s, i, replicates, seed=seed + j, **kwargs)
                       for j, (s, i) in enumerate(sizes)])


if __name__ == '__main__':
  print(coverage_table().to_string(index=False, float_format=lambda v: f'{v:.3f}'))
