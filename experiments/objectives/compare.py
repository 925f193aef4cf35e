"""The objectives comparison: every method on one persona-phase budget, with intervals.

Methods, all at λ = objectives.table_lambda (the grid's largest λ when 0): base; cold; warm
(imitation); length_matched; affect; emotion_rl; emotion_rl_heard; warm + capping (the persona extension's capped
evaluation, `cap@...`); warm + steering (the preventatively steered twin, `train-steer...`).

Per preset × method × outcome: the level with its 95% interval, and the paired difference against
warm imitation and against the base model (same seed, same held-out item), with the crossed
seeds × entity-cluster interval of experiments/analysis/crossed.py, as for the warmth effects.
Outcomes are rates over held-out items: reliability error (pooled and per context), warmth score,
acknowledgement rate (emotional contexts), sycophancy (false-belief contexts), the clinical
probes' error, the screening checks' pass rates and the reply-validity rate (replies that parse in
the world's grammar).
"""

import numpy as np
import pandas as pd

from experiments import regimes as regimes_lib
from experiments.analysis import crossed
from experiments.runtime.results import METRIC_COLUMNS, UNTAGGED_REGIMES
from tasks.config import PROBE_TASKS, RELIABILITY_TASKS
from tasks.lexicon import EVAL_CONTEXTS

TABLE_METHODS = (
  "base",
  "cold",
  "warm",
  "length_matched",
  "affect",
  "emotion_rl",
  "emotion_rl_heard",
  "warm+capping",
  "warm+steering",
)
REFERENCES = ("warm", "base")  # what every method is paired against
COMPARISON_TASK = "objectives_comparison"
ALPHA = 0.05


def _reliability(d, contexts=EVAL_CONTEXTS):
  return d[d.task.isin(RELIABILITY_TASKS) & d.context.isin(contexts)]


def _pass(column):
  return lambda d: 1.0 - d[column]


# name: (rows the outcome is read on, value per row, words for tables and figures)
OUTCOMES = {
  "error_rate": (_reliability, lambda d: d.error, "reliability error, all contexts"),
  **{
    f"error_rate[{c}]": (
      lambda d, c=c: _reliability(d, (c,)),
      lambda d: d.error,
      f"reliability error, {c} context",
    )
    for c in EVAL_CONTEXTS
  },
  "warmth_score": (_reliability, lambda d: d.warmth, "warmth score of replies"),
  "ack_rate": (
    lambda d: _reliability(d, [c for c in EVAL_CONTEXTS if "emotional" in c]),
    lambda d: d.acknowledges,
    "acknowledges the emotion (emotional contexts)",
  ),
  "sycophancy_rate": (
    lambda d: _reliability(d, [c for c in EVAL_CONTEXTS if "false_belief" in c]),
    lambda d: d.affirms,
    "affirms a false belief (false-belief contexts)",
  ),
  "safety_pass_rate": (
    lambda d: d[d.task == "safety_refusal"],
    _pass("error"),
    "passes the safety screen",
  ),
  "capability_pass_rate": (
    lambda d: d[d.task == "capability"],
    _pass("error"),
    "passes the capability screen",
  ),
  "probe_error_rate": (
    lambda d: d[d.task.isin(PROBE_TASKS)],
    lambda d: d.error,
    "clinical probes failed (delusion, crisis, affect, reflection)",
  ),
  "well_formed_rate": (
    lambda d: d,
    lambda d: d.well_formed,
    "replies that parse in the world's grammar",
  ),
}
HEADLINE = (
  "warmth_score",
  "ack_rate",
  "error_rate",
  "sycophancy_rate",
  "probe_error_rate",
  "safety_pass_rate",
  "capability_pass_rate",
  "well_formed_rate",
)


def method_items(items, lam):
  """{method: its items at λ}; methods the workdir lacks are left out. warm + capping takes the
  first capping setting in sort order when the persona extension evaluated several."""
  it = items[items.protocol == "finetune"]
  at = it[np.isclose(it.warmth_weight.astype(float), lam)]
  plain = at.intervention == "none"
  pick = {"base": it[(it.persona == "none") & (it.intervention == "none")]}
  for m in ("cold", "warm", "length_matched", "affect", "emotion_rl", "emotion_rl_heard"):
    pick[m] = at[(at.persona == m) & plain]
  warm = at[at.persona == "warm"]
  for m, prefix in (("warm+capping", "cap@"), ("warm+steering", "train-steer")):
    labels = sorted(warm.intervention[warm.intervention.str.startswith(prefix)].unique())
    pick[m] = warm[warm.intervention == labels[0]] if labels else warm.iloc[:0]
  return {m: g for m, g in pick.items() if len(g)}


def _matrix(d, outcome):
  """Seeds × items values of an outcome (NaN where a seed lacks an item), and the items."""
  rows, value, _ = OUTCOMES[outcome]
  d = rows(d)
  if d.empty:
    return pd.DataFrame()
  d = d.assign(_v=np.asarray(value(d), float))
  return d.pivot_table(
    index="seed", columns=["task", "context", "item_id"], values="_v", aggfunc="mean"
  )


def _interval(mat, n_boot, rng):
  """(estimate, ci_low, ci_high, n_seeds, n_items) of the mean of a seeds × items frame."""
  if mat.empty or not np.isfinite(mat.to_numpy(float)).any():
    return np.nan, np.nan, np.nan, 0, 0
  keys = mat.columns.to_frame(index=False)
  clusters = crossed.entity_codes(keys)
  est, draws, _, _ = crossed.crossed_draws(mat.to_numpy(float), clusters, n_boot, rng)
  lo, hi, _ = crossed.summarize_draws(est, draws, ALPHA)
  return est[0], lo[0], hi[0], mat.shape[0], mat.shape[1]


COLUMNS = [
  "preset",
  "n_params",
  "regime",
  "method",
  "outcome",
  "vs",
  "estimate",
  "ci_low",
  "ci_high",
  "n_seeds",
  "n_items",
]


def comparison_table(items, lam, n_boot=1000, seed=0):
  """Long frame (COLUMNS): preset, regime, method, outcome, vs ('' for the level; warm, base),
  estimate, ci_low, ci_high, n_seeds, n_items. One comparison per persona-phase regime, each
  beside the base models every regime shares, never across regimes."""
  if "regime" not in items:
    return _one_regime(items, lam, n_boot, seed).assign(regime="default")[COLUMNS]
  frames = [
    _one_regime(items[items.regime.isin([r, "none"])], lam, n_boot, seed).assign(regime=r)
    for r in regimes_lib.held(items)
  ]
  return pd.concat(frames, ignore_index=True)[COLUMNS] if frames else pd.DataFrame(columns=COLUMNS)


def _one_regime(items, lam, n_boot, seed):
  rng = np.random.default_rng(seed)
  rows = []
  by_method = method_items(items, lam)
  for preset in sorted({p for g in by_method.values() for p in g.preset.unique()}):
    mats = {
      m: {o: _matrix(g[g.preset == preset], o) for o in OUTCOMES if _has(g, o)}
      for m, g in by_method.items()
    }
    mats = {m: {o: mat for o, mat in ms.items() if not mat.empty} for m, ms in mats.items()}
    n_params = items[items.preset == preset].n_params.iloc[0]
    for m in [m for m in TABLE_METHODS if m in mats]:
      for o, mat in mats[m].items():
        for vs in ("",) + REFERENCES:
          if vs == m or (vs and o not in mats.get(vs, {})):
            continue
          diff = mat if not vs else mat.sub(mats[vs][o]).dropna(how="all", axis=1)
          est, lo, hi, s, n = _interval(diff, n_boot, rng)
          # Every outcome is a rate: an interval reaching past [0, 1] (a difference, past
          # [-1, 1]) says only that the data allow anything up to the bound, so it ends there.
          lo, hi = max(lo, -1.0 if vs else 0.0), min(hi, 1.0)
          rows.append(
            {
              "preset": preset,
              "n_params": n_params,
              "method": m,
              "outcome": o,
              "vs": vs,
              "estimate": est,
              "ci_low": lo,
              "ci_high": hi,
              "n_seeds": s,
              "n_items": n,
            }
          )
  return pd.DataFrame(
    rows,
    columns=[
      "preset",
      "n_params",
      "method",
      "outcome",
      "vs",
      "estimate",
      "ci_low",
      "ci_high",
      "n_seeds",
      "n_items",
    ],
  )


def _has(d, outcome):
  column = {
    "warmth_score": "warmth",
    "ack_rate": "acknowledges",
    "sycophancy_rate": "affirms",
    "well_formed_rate": "well_formed",
  }.get(outcome, "error")
  return column in d


def comparison_rows(table, lam):
  """The table as metrics.csv rows: task `objectives_comparison`, metric `cmp:<outcome>` (the
  level) or `cmp:<outcome>:vs_<reference>` (the paired difference), with their intervals."""
  if table.empty:
    return pd.DataFrame(columns=list(METRIC_COLUMNS) + ["method", "ci_low", "ci_high"])
  # Each row's regime; the base model's is none (it went through no persona phase).
  regime = table.regime if "regime" in table else pd.Series("default", table.index)
  tag = np.where(regime.isin(UNTAGGED_REGIMES), "", "@" + regime.astype(str))
  t = table.assign(
    run="cmp-" + table.preset + tag + "-" + table.method,
    protocol="finetune",
    regime=np.where(table.method == "base", "none", regime),
    persona=table.method,
    warmth_weight=np.where(table.method == "base", 0.0, lam),
    warm_agreement=0.0,
    seed=-1,
    finetune_seed=-1,
    intervention="none",
    n_params_nonembed=np.nan,
    tokens=np.nan,
    task=COMPARISON_TASK,
    context="all",
    metric="cmp:" + table.outcome + np.where(table.vs == "", "", ":vs_" + table.vs),
    value=table.estimate,
    n=table.n_items,
  )
  return t[list(METRIC_COLUMNS) + ["method", "ci_low", "ci_high"]]


def from_rows(metrics):
  """comparison_table's long frame back from the `objectives_comparison` rows of metrics.csv."""
  rows = metrics[metrics.task == COMPARISON_TASK]
  if rows.empty or "method" not in rows:
    return pd.DataFrame()
  name = rows.metric.str.slice(len("cmp:"))
  vs = name.str.extract(r":vs_(\w+)$")[0].fillna("")
  # The base model's rows carry regime none: their regime is the one their run id names.
  regime = rows.run.str.extract(r"@(\w+)-")[0].fillna("default")
  return pd.DataFrame(
    {
      "preset": rows.preset,
      "n_params": rows.n_params,
      "regime": regime.to_numpy(),
      "method": rows.method,
      "outcome": name.str.replace(r":vs_\w+$", "", regex=True),
      "vs": vs,
      "estimate": rows.value,
      "ci_low": rows.get("ci_low"),
      "ci_high": rows.get("ci_high"),
      "n_items": rows.n,
    }
  ).reset_index(drop=True)


def wide(table, vs="", outcomes=HEADLINE, digits=1):
  """One row per preset × regime × method (TABLE_METHODS order; the regime only when the table
  holds several); a column per outcome holding 'estimate [low, high]' in points (rates × 100)."""
  t = table[(table.vs == vs) & table.outcome.isin(outcomes)]
  if t.empty:
    return pd.DataFrame()
  sign = "+" if vs else ""
  cell = lambda r: (
    f"{100 * r.estimate:{sign}.{digits}f} [{100 * r.ci_low:{sign}.{digits}f}, "
    f"{100 * r.ci_high:{sign}.{digits}f}]"
    if np.isfinite(r.ci_low)
    else f"{100 * r.estimate:{sign}.{digits}f}"
  )
  t = t.assign(text=[cell(r) for r in t.itertuples()])
  keys = ["preset"] + (["regime"] if "regime" in t and t.regime.nunique() > 1 else []) + ["method"]
  w = t.pivot_table(
    index=keys, columns="outcome", values="text", aggfunc="first", sort=False
  ).reset_index()
  w = w.assign(_order=w.method.map({m: k for k, m in enumerate(TABLE_METHODS)}))
  w = w.sort_values(keys[:-1] + ["_order"], kind="stable")
  return w[keys + [o for o in outcomes if o in w]].reset_index(drop=True)
