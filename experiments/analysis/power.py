"""What a study could have measured: interval widths, detectable effects, larger designs.

A difference is only evidence of "no effect" when the design could have seen an effect that
matters: this module gives, per contrast, the 95% interval's half-width and the minimum detectable
effect (MDE) at 80% power, and, from the run's variance components, what larger designs would
give and whether another base seed or another fine-tuning seed per base seed narrows the interval
more per trained model. Pooled contrasts cover the tasks each preset's base model can answer
(competence.py).
"""

import numpy as np
import pandas as pd
from scipy import stats as sps

from experiments.analysis import competence, crossed, stats
from tasks.config import RELIABILITY_TASKS

ALPHA, POWER = 0.05, 0.80
MATTERS = 0.05  # effects below 5 points are ones a reader may call "no effect"
# The study's design targets for warm − cold at the largest λ: 95% half-widths pooled over the
# measurable reliability tasks per context, and per measurable task × context.
POOLED_TARGET, TASK_TARGET = 0.03, 0.08


def mde(se, df, alpha=ALPHA, power=POWER):
  """Smallest true difference a two-sided t test at `alpha` detects with probability `power`:
  (t_{1-α/2, df} + t_{power, df}) × se; infinite df (or NaN) uses the normal quantiles."""
  se, df = np.asarray(se, float), np.asarray(df, float)
  df = np.where(np.isfinite(df) & (df > 0), df, np.inf)
  return (sps.t.ppf(1 - alpha / 2, df) + sps.t.ppf(power, df)) * se


def with_power(deltas):
  """deltas (stats.paired_deltas rows) with `half_width` and `mde` columns."""
  return deltas.assign(
    half_width=(deltas.ci_high - deltas.ci_low) / 2, mde=mde(deltas.se, deltas.df)
  )


def null_reading(lo, hi, mde_value):
  """What a non-significant difference says: 'no effect' only if the interval lies within ±5
  points and the design could have detected 5 points (MDE ≤ 5); otherwise not measurable."""
  if pd.isna(lo):
    return "not estimable (no paired item moved)"
  if -MATTERS < lo and hi < MATTERS and mde_value <= MATTERS:
    return (
      f"no effect: the interval excludes changes of {100 * MATTERS:.0f} points or more "
      "and the design could detect them"
    )
  return "not measurable at this size: the interval or the detectable effect exceeds 5 points"


def _top_cells(items):
  """Items of warm and cold at each preset's largest λ (ρ = 0, no intervention) and the λ = 0
  reference: what the primary contrasts compare."""
  d = items[(items.intervention == "none") & (items.warm_agreement == 0)]
  top = d[d.warmth_weight > 0].groupby("preset").warmth_weight.max()
  lam = d.preset.map(top)
  return d[
    (d.warmth_weight == 0)
    | ((d.warmth_weight == lam) & d.persona.isin(["warm", "cold", "length_matched"]))
  ]


def pooled_by_context(items, n_boot, seed=0, by=("context",)):
  """Per preset and context: warm − cold at the largest λ, pooled over the preset's measurable
  reliability tasks, with its 95% interval, half-width and MDE; by=() pools the contexts too
  (context 'all contexts')."""
  rel = _top_cells(competence.measurable(items[items.task.isin(RELIABILITY_TASKS)]))
  d = stats.paired_deltas(rel, "error", tuple(by), n_boot, seed=seed, primary=())
  if "context" not in by:
    d = d.assign(context="all contexts")
  d = d[(d.persona == "warm") & (d.comparison == "vs_cold")]
  return with_power(d)


def hw_column(n_seeds, item_factor):
  """projected_half_widths' column for a design of `n_seeds` seeds and `item_factor` × the items."""
  return f"hw_S{n_seeds}_k{item_factor}"


def _half_width(var, df):
  return sps.t.ppf(1 - ALPHA / 2, df) * np.sqrt(var)


# Where the variance of a mean comes from (crossed.crossed_components' contributions), as
# projected_half_widths' share columns: base seeds, fine-tuning seeds within them, items (their
# clusters and themselves) and the residual (with the base seed × item part every replicate of a
# base model shares).
SOURCES = {
  "share_seed": ("seed",),
  "share_finetune": ("finetune",),
  "share_items": ("cluster", "item"),
  "share_residual": ("seed_item", "resid"),
}


def variance_shares(comp):
  """{SOURCES column: share of the variance of the mean} from crossed_components' result."""
  total = sum(comp["contributions"].values())
  return {
    col: (sum(comp["contributions"][k] for k in keys) / total if total > 0 else np.nan)
    for col, keys in SOURCES.items()
  }


def next_replicate(comp, persona_cells, base_cost=1.0, persona_cost=1.0):
  """Whether another base seed or another fine-tuning seed per base seed cuts the 95% half-width
  of the mean more per unit of training cost, at the measured components (crossed_components).

  Cost model: a balanced design of S base seeds with F fine-tuning seeds each trains S base
  models at `base_cost` each and S·F·P persona-phase models at `persona_cost` each, P being
  `persona_cells`, the persona cells one replicate trains (every persona, λ and regime; cells
  trained once per base seed without a persona phase, such as mixture cells, belong in
  base_cost). Another base seed, (S + 1, F), costs base_cost + F·P·persona_cost; another
  fine-tuning seed for every base seed, (S, F + 1), costs S·P·persona_cost. With both costs 1
  the figure is the cut in half-width per added trained model. Both designs are projected
  (crossed.projected_variance) from the balanced (S, F) of the measurement (F its largest
  number per base seed), so the cuts compare like with like. The half-width is t(df)·se: with
  few base seeds, once the residual is small their part's S − 1 df set the t quantile, and more
  fine-tuning seeds can even widen it, while a base seed adds a df. Measured with F = 1, the
  fine-tuning variance cannot be told from the base seeds' and counts as theirs: the projection
  then credits fine-tuning seeds only with shrinking the residual, a lower bound on what they
  would buy.
  Returns {'hw_next_seed', 'hw_next_finetune': projected half-widths, 'cost_next_seed',
  'cost_next_finetune', 'add': 'base seed' or 'fine-tuning seed'}.
  """
  s, f = comp["n_seeds"], comp["n_finetune"]
  hw = {
    name: _half_width(*crossed.projected_variance(comp, s + ds, 1.0, f + df))
    for name, ds, df in (("now", 0, 0), ("seed", 1, 0), ("finetune", 0, 1))
  }
  cost = {
    "seed": base_cost + f * persona_cells * persona_cost,
    "finetune": s * persona_cells * persona_cost,
  }
  cut = {k: (hw["now"] - hw[k]) / cost[k] for k in cost}
  return {
    "hw_next_seed": hw["seed"],
    "hw_next_finetune": hw["finetune"],
    "cost_next_seed": cost["seed"],
    "cost_next_finetune": cost["finetune"],
    "add": "base seed" if cut["seed"] >= cut["finetune"] else "fine-tuning seed",
  }


def persona_cells_per_replicate(items):
  """Per preset: persona-phase models one replicate (base seed, fine-tuning seed) trains, the
  mean over replicates: finetune cells other than the base model, without evaluation-time
  interventions."""
  d = stats.with_finetune_seed(items)
  d = d[(d.protocol == "finetune") & (d.persona != "none") & (d.intervention == "none")]
  trained = ["regime", "persona", "warmth_weight", "warm_agreement"]
  return (
    d.drop_duplicates(["preset"] + stats.REPLICATE + trained)
    .groupby(["preset"] + stats.REPLICATE)
    .size()
    .groupby("preset")
    .mean()
  )


def projected_half_widths(
  items, seeds=(5, 10, 20), item_factors=(1, 2), by_task=False, base_cost=1.0, persona_cost=1.0
):
  """Per preset and context (and task, with `by_task`), warm − cold at the largest λ pooled over
  measurable reliability tasks: the measured 95% half-width; from its variance components (base
  seed, fine-tuning seed within it, item cluster, item, residual; crossed.crossed_components),
  each source's share of the variance (SOURCES), the half-width a balanced design with S base
  seeds, the run's fine-tuning seeds per base seed, and k × the items would give (columns
  `hw_column(S, k)`), and which replicate to add next for the largest cut per unit of training
  cost (next_replicate, with its cost parameters). A planning figure, not a result: it assumes a
  larger study has the same components."""
  rel = competence.measurable(items[items.task.isin(RELIABILITY_TASKS)])
  pf = stats.paired_frame(_top_cells(rel))
  pf = pf[(pf.persona == "warm") & (pf.comparison == "vs_cold")]
  size = items.groupby("preset").n_params.first()
  cells = persona_cells_per_replicate(items)
  keys = ["preset", "regime", "task", "context"] if by_task else ["preset", "regime", "context"]
  rows = []
  for key, g in pf.groupby(keys):
    unit = g.task.astype(str) + "|" + g.item_id.astype(str)
    x = g.pivot_table(index=stats.REPLICATE, columns=unit, values="diff", aggfunc="mean")
    first = g.assign(unit=unit).drop_duplicates("unit").set_index("unit").reindex(x.columns)
    clusters = crossed.entity_codes(first)
    comp = crossed.crossed_components(x.to_numpy(), clusters, x.index.get_level_values("seed"))
    if comp is None:
      continue
    row = dict(
      zip(keys, key),
      n_params=size[key[0]],
      n_seeds=comp["n_seeds"],
      n_finetune_seeds=comp["n_finetune"],
      n_items=comp["n_items"],
    )
    row["half_width"] = _half_width(*crossed.satterthwaite(comp["parts"], comp["dfs"]))
    row.update(variance_shares(comp))
    for n_seeds in seeds:
      for k in item_factors:
        row[hw_column(n_seeds, k)] = _half_width(
          *crossed.projected_variance(comp, n_seeds, k, comp["n_finetune"])
        )
    # A preset without finetune persona cells (mixture cells only) has no fine-tuning seeds to
    # add; one cell per replicate keeps the comparison defined.
    row.update(next_replicate(comp, cells.get(key[0], 1.0), base_cost, persona_cost))
    rows.append(row)
  return pd.DataFrame(rows)


def smallest_design(pooled, per_task, seeds, item_factors):
  """The cheapest (seeds, item factor) of those projected (projected_half_widths) whose
  half-widths meet both targets in every row, as (S, k), or None."""
  designs = [
    (n_seeds * (1 + k), n_seeds, k)
    for n_seeds in seeds
    for k in item_factors
    if (pooled[hw_column(n_seeds, k)] <= POOLED_TARGET).all()
    and (per_task[hw_column(n_seeds, k)] <= TASK_TARGET).all()
  ]
  return min(designs)[1:] if designs else None  # seeds train, items evaluate: both cost
