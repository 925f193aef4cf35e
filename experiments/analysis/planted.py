"""A planted oracle: items.csv-shaped sweeps with a known warm − cold effect, and CI coverage.

Each item i of a persona cell is wrong, for fine-tuning seed k of base seed s, with probability

  F⁻¹_cell(Φ(z_ski)),   z_ski = a·e_entity(i) + b·u_i + c·g_s + d·f_sk + r·ε_si,
                        a² + b² + c² + d² + r² = 1,

where F_cell is a Beta distribution with mean p_cell (p_base, p_warm, p_cold, p_lm) and
concentration κ, and e, u, g, f, ε are independent standard normals: e and u are item difficulty
shared by every seed (the world, hence each eval item, is the same for every seed), g a seed
shift shared by every cell of a base seed, f a fine-tuning-seed shift nested in it, shared by
the persona cells of one replicate (their persona phases share its data order), and ε the base
model's own item-level noise, which every replicate fine-tuned from it carries. The base cell
(persona none) has no persona phase, hence no f: its latent is rescaled to unit variance. The
warm cells draw their item term from u mixed with a warm-only normal (correlation
`warm_item_correlation`), so whether warm training breaks an item is a property of the item that
persists across seeds, as it is for trained models. Φ(z) is uniform for every cell, so the
expected error of a cell over items and seeds is exactly p_cell and the expected warm − cold
difference exactly p_warm − p_cold.

  python -m experiments.analysis.planted     # prints the coverage table, nested designs too
"""

import time

import numpy as np
import pandas as pd
from scipy import special
from scipy import stats as distributions

from experiments.analysis import stats

# Error rates of 30–40% with a warm − cold effect of 8 points; κ = 1 spreads items from almost
# always right to almost always wrong, as trained models' items are; entity, item and seed
# weights make most of an item's difficulty persistent and a little of it seed-specific, a
# little less of it specific to the persona phase's fine-tuning seed.
PLANTED = dict(
  p_base=0.30,
  p_cold=0.32,
  p_lm=0.34,
  p_warm=0.40,
  concentration=1.0,
  entity_weight=0.5,
  item_weight=0.6,
  seed_weight=0.2,
  finetune_weight=0.15,
  warm_item_correlation=0.5,
)
LATENT_WEIGHTS = ("entity_weight", "item_weight", "seed_weight", "finetune_weight")
# Items per entity, as in the world: a person's attributes, a disease's symptom orders, a drug's
# weights; single-item entities (cities, disinformation) too.
ENTITY_SIZES = (1, 2, 3, 4, 6, 8)
SIZES = ((2, 12), (5, 25), (10, 50))
# Nested designs: (base seeds, fine-tuning seeds per base seed, items).
NESTED_SIZES = ((3, 2, 12), (4, 3, 25))
PERSONAS = {"none": "p_base", "warm": "p_warm", "cold": "p_cold", "length_matched": "p_lm"}


def _check(params):
  """Raises ValueError for a rate outside (0, 1) or latent weights that do not fit in one."""
  for key in PERSONAS.values():
    if not 0.0 < params[key] < 1.0:
      raise ValueError(f"{key}={params[key]} leaves (0, 1): a rate must lie strictly inside.")
  weights = sum(params[k] ** 2 for k in LATENT_WEIGHTS)
  if weights > 1.0:
    raise ValueError(
      f"{' + '.join(k + '²' for k in LATENT_WEIGHTS)} = {weights:.3f} leaves "
      "[0, 1]: the latent difficulty must have unit variance."
    )
  if not (params["concentration"] > 0 and -1 <= params["warm_item_correlation"] <= 1):
    raise ValueError("concentration must be > 0 and warm_item_correlation in [-1, 1].")


def _entities(n_items, rng):
  """Entity index of each item: entities of ENTITY_SIZES items until n_items are filled."""
  sizes = []
  while sum(sizes) < n_items:
    sizes.append(int(rng.choice(ENTITY_SIZES)))
  return np.repeat(np.arange(len(sizes)), sizes)[:n_items]


def make_items(
  n_seeds,
  n_items,
  replicates=1,
  n_finetune=1,
  preset="planted",
  task="factual_qa",
  context="neutral",
  rng=None,
  **params,
):
  """items.csv rows of `replicates` independent planted sweeps (preset `{preset}{r}` each).

  Cells: base (persona none, λ = 0) and warm, cold, length_matched at λ = 1; every cell has
  the same n_items items (ids `task/p<entity>/f<k>`) for each of n_seeds base seeds, the persona
  cells for each of n_finetune fine-tuning seeds of it (column finetune_seed), the base cell for
  fine-tuning seed 0 only.
  """
  p = dict(PLANTED, **params)
  _check(p)
  rng = np.random.default_rng(rng)
  cells = [("none", 0.0), ("warm", 1.0), ("cold", 1.0), ("length_matched", 1.0)]
  kappa, rho = p["concentration"], p["warm_item_correlation"]
  resid = np.sqrt(1.0 - sum(p[k] ** 2 for k in LATENT_WEIGHTS))
  columns = {c: [] for c in ("sweep", "cell", "seed", "finetune_seed", "item_id", "error")}
  for r in range(replicates):
    ent = _entities(n_items, rng)
    k = np.arange(n_items) - np.searchsorted(ent, ent)
    shared_SI = (
      p["entity_weight"] * rng.standard_normal(ent.max() + 1)[ent][None]
      + p["seed_weight"] * rng.standard_normal(n_seeds)[:, None]
      + resid * rng.standard_normal((n_seeds, n_items))
    )
    item_I, warm_only_I = rng.standard_normal(n_items), rng.standard_normal(n_items)
    finetune_SK = p["finetune_weight"] * rng.standard_normal((n_seeds, n_finetune))
    ids = np.array([f"{task}/p{e}/f{j}" for e, j in zip(ent, k)], dtype=object)
    for c, (persona, _) in enumerate(cells):
      item = rho * item_I + np.sqrt(1 - rho**2) * warm_only_I if persona == "warm" else item_I
      z_SI = shared_SI + p["item_weight"] * item[None]
      if persona == "none":
        z = (z_SI / np.sqrt(1.0 - p["finetune_weight"] ** 2))[:, None]  # (seed, 1, item)
      else:
        z = z_SI[:, None] + finetune_SK[:, :, None]  # (seed, fine-tuning seed, item)
      mean = p[PERSONAS[persona]]
      prob = distributions.beta.ppf(special.ndtr(z), mean * kappa, (1 - mean) * kappa)
      seed_idx, ft_idx, _ = np.indices(prob.shape)
      columns["error"].append((rng.random(prob.shape) < prob).ravel())
      columns["seed"].append(seed_idx.ravel())
      columns["finetune_seed"].append(ft_idx.ravel())
      columns["item_id"].append(np.tile(ids, prob.size // n_items))
      columns["sweep"].append(np.full(prob.size, r))
      columns["cell"].append(np.full(prob.size, c))
  out = {name: np.concatenate(v) for name, v in columns.items()}
  names = np.array(
    [f"{preset}{r}" if replicates > 1 else preset for r in range(replicates)], dtype=object
  )
  return pd.DataFrame(
    dict(
      preset=names[out["sweep"]],
      n_params=np.nan,
      protocol="finetune",
      persona=np.array([c for c, _ in cells], dtype=object)[out["cell"]],
      warmth_weight=np.array([w for _, w in cells])[out["cell"]],
      warm_agreement=0.0,
      intervention="none",
      regime="default",
      seed=out["seed"],
      finetune_seed=out["finetune_seed"],
      task=task,
      context=context,
      item_id=out["item_id"],
      error=out["error"].astype(int),
    )
  )


def coverage(
  n_seeds,
  n_items,
  replicates=1000,
  p_warm=PLANTED["p_warm"],
  p_cold=PLANTED["p_cold"],
  seed=0,
  n_boot=1000,
  alpha=0.05,
  n_finetune=1,
  **params,
):
  """Share of stats.paired_deltas warm − cold intervals (1 − alpha) that cover p_warm − p_cold.

  Runs the same paired_deltas as for trained cells, once over all replicates (one preset each,
  every draw n_boot), with n_finetune fine-tuning seeds per base seed. Returns a dict: coverage,
  mean CI width, mean bias of the estimate, number of rows not estimable and seconds taken.
  """
  t0 = time.perf_counter()
  items = make_items(
    n_seeds, n_items, replicates, n_finetune, rng=seed, p_warm=p_warm, p_cold=p_cold, **params
  )
  d = stats.paired_deltas(items, n_boot=n_boot, n_boot_primary=n_boot, seed=seed, alpha=alpha)
  d = d[(d.persona == "warm") & (d.comparison == "vs_cold")]
  truth = p_warm - p_cold
  covered = (d.ci_low <= truth) & (truth <= d.ci_high)
  return dict(
    seeds=n_seeds,
    items=n_items,
    replicates=len(d),
    truth=truth,
    coverage=float(covered.mean()),
    mean_ci_width=float((d.ci_high - d.ci_low).mean()),
    bias=float(d.estimate.mean() - truth),
    not_estimable=int((~d.estimable).sum()),
    finetune_seeds=n_finetune,
    seconds=time.perf_counter() - t0,
  )


def coverage_table(sizes=SIZES, replicates=1000, seed=0, **kwargs):
  """coverage() at each size, (seeds, items) or nested (seeds, fine-tuning seeds, items), as a
  DataFrame."""
  rows = []
  for j, size in enumerate(sizes):
    n_seeds, n_finetune, n_items = size if len(size) == 3 else (size[0], 1, size[1])
    rows.append(
      coverage(n_seeds, n_items, replicates, seed=seed + j, n_finetune=n_finetune, **kwargs)
    )
  return pd.DataFrame(rows)


if __name__ == "__main__":
  table = coverage_table(SIZES + NESTED_SIZES)
  first = ["seeds", "finetune_seeds", "items"]
  print(
    table[first + [c for c in table.columns if c not in first]].to_string(
      index=False, float_format=lambda v: f"{v:.3f}"
    )
  )
