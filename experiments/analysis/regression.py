"""Model-based estimates beside the bootstrap: a linear-probability regression of the warmth slope
and a logistic mixed model with crossed random intercepts for item and seed (statsmodels).
"""

import dataclasses
import warnings

import numpy as np
import pandas as pd
from scipy import sparse, special
import statsmodels.api as sm
import statsmodels.formula.api as smf
from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM
from statsmodels.tools.sm_exceptions import PerfectSeparationError

from tasks.config import RELIABILITY_TASKS, SCREENING_TASKS


@dataclasses.dataclass
class RegressionResult:
  """Key contrasts of the fitted models, or messages saying why a model was not fitted."""

  table: pd.DataFrame
  messages: list
  formulas: dict


def _fit(data, metric, label, min_seeds_two_way=10):
  """One linear-probability model; returns (rows, message, formula)."""
  if data[metric].nunique() < 2:
    return [], f"{label}: the outcome does not vary, so no model was fitted.", None
  pos = data[data.warmth_weight > 0]
  if data.warmth_weight.nunique() < 2 or pos.empty:
    return (
      [],
      (
        f"{label}: only λ={sorted(data.warmth_weight.unique())} present, "
        "so no warmth slope can be estimated."
      ),
      None,
    )
  has_warm = (pos.persona == "warm").any() and (pos.persona == "cold").any()
  slope = "warmth_weight + warmth_weight:warm" if has_warm else "warmth_weight"
  ctx = sorted(data.context.unique())
  ref = "neutral" if "neutral" in ctx else ctx[0]
  rhs = f"C(context, Treatment('{ref}')) * ({slope})" if len(ctx) > 1 else slope
  for fe in ("task", "preset", "protocol", "seed"):
    if data[fe].nunique() > 1:
      rhs += f" + C({fe})"
  formula = f"{metric} ~ {rhs}"
  model = smf.ols(formula, data)
  if np.linalg.matrix_rank(model.exog) < model.exog.shape[1]:
    return [], f"{label}: the design is singular ({formula}), so no model was fitted.", formula
  item = pd.factorize(data.task.astype(str) + "/" + data.item_id.astype(str))[0]
  seeds = pd.factorize(data.seed)[0]
  # Seed clusters only help with enough seeds; with few, the seed FE absorb seed means.
  two_way = seeds.max() + 1 >= min_seeds_two_way
  groups = np.column_stack([item, seeds]) if two_way else item
  res = model.fit(cov_type="cluster", cov_kwds={"groups": groups})
  names = res.model.exog_names
  term = "warmth_weight:warm" if has_warm else "warmth_weight"
  what = "warm − cold slope" if has_warm else "λ slope"
  contrasts = {f"{what}, {ref}": {term: 1.0}}
  extra = {c: [n for n in names if f"[T.{c}]:{term}" in n] for c in ctx if c != ref}
  contrasts[f"{what}, averaged over contexts"] = {
    term: 1.0,
    **{v[0]: 1.0 / len(ctx) for v in extra.values() if v},
  }
  for c, v in extra.items():
    if v:
      contrasts[f"extra {what} under {c} (vs {ref})"] = {v[0]: 1.0}
  if has_warm:
    contrasts[f"cold λ slope, {ref}"] = {"warmth_weight": 1.0}
  rows = []
  for name, weights in contrasts.items():
    vec = np.array([weights.get(n, 0.0) for n in names])
    t = res.t_test(vec[None])
    lo, hi = np.asarray(t.conf_int()).ravel()
    rows.append(
      dict(
        model=label,
        contrast=name,
        estimate=float(np.ravel(t.effect)[0]),
        se=float(np.ravel(t.sd)[0]),
        ci_low=lo,
        ci_high=hi,
        p_value=float(np.ravel(t.pvalue)[0]),
        n_obs=int(res.nobs),
        clusters="item × seed" if two_way else "item",
      )
    )
  return rows, None, formula


def regression(items_df, metric="error"):
  """Linear-probability models of the warmth slope: reliability tasks, then each screening check."""
  d = items_df[
    (items_df.intervention == "none") & items_df.persona.isin(["warm", "cold", "none"])
  ].dropna(subset=[metric])
  if ((d.warmth_weight == 0) & (d.persona != "none")).any():
    d = d[d.persona != "none"]  # the λ=0 persona-phase model is the matched control
  d = d.assign(warm=(d.persona == "warm").astype(float))
  parts = [("reliability", d[d.task.isin(RELIABILITY_TASKS)])]
  parts += [(f"screening: {t}", d[d.task == t]) for t in SCREENING_TASKS]
  rows, messages, formulas = [], [], {}
  for label, data in parts:
    if data.empty:
      messages.append(f"{label}: no rows, so no model was fitted.")
      continue
    try:
      r, msg, formula = _fit(data, metric, label)
    except (ValueError, np.linalg.LinAlgError) as e:
      r, msg, formula = [], f"{label}: the model could not be fitted ({e}).", None
    rows += r
    if msg:
      messages.append(msg)
    if formula:
      formulas[label] = formula
  table = pd.DataFrame(
    rows,
    columns=[
      "model",
      "contrast",
      "estimate",
      "se",
      "ci_low",
      "ci_high",
      "p_value",
      "n_obs",
      "clusters",
    ],
  )
  return RegressionResult(table, messages, formulas)


MIXED_COLUMNS = [
  "model",
  "preset",
  "protocol",
  "contrast",
  "estimate",
  "se",
  "ci_low",
  "ci_high",
  "n_obs",
]


def _one_hot(codes):
  """Sparse indicator matrix (rows × levels) of integer codes."""
  codes = np.asarray(codes)
  n = codes.max() + 1
  return sparse.csr_matrix(
    (np.ones(len(codes)), (np.arange(len(codes)), codes)), shape=(len(codes), n)
  )


def _conditional_cov(model, params):
  """Fixed-effects covariance of the Laplace approximation given the variance components.

  Inverse of Xᵀ W X + prior precision over (fixed effects, random effects) at `params`,
  with the variance components held at their values there (as glmer reports).
  """
  k, kv = model.k_fep, model.k_fep + model.k_vcp
  fep, vcp, vc = params[:k], params[k:kv], params[kv:]
  x = sparse.hstack([sparse.csr_matrix(model.exog), model.exog_vc]).tocsr()
  mu = special.expit(model.exog @ fep + model.exog_vc @ vc)
  prec = np.r_[np.full(model.k_fep, model.fe_p**-2.0), np.exp(-2.0 * vcp[model.ident])]
  h = (x.T @ x.multiply((mu * (1 - mu))[:, None])).toarray() + np.diag(prec)
  return np.linalg.inv(h)[: model.k_fep, : model.k_fep]


def _mixed_rows(d, metric, label):
  """Fits one crossed-intercepts logistic model; returns (rows, message or None)."""
  y = d[metric].to_numpy(float)
  if not np.isin(y, (0.0, 1.0)).all():
    return [], f"{label}: {metric} is not a 0/1 outcome, so no logistic model was fitted."
  if np.unique(y).size < 2:
    return [], f"{label}: the outcome does not vary, so no model was fitted."
  if d.seed.nunique() < 2:
    return [], (
      f"{label}: one seed, so seed and run variation cannot be told from the warmth "
      "effect; no model was fitted."
    )
  lams = sorted(d.warmth_weight.unique())
  if len(lams) < 2:
    return [], (f"{label}: only λ={lams} present, so no per-unit-λ effect can be estimated.")
  pos = d[d.warmth_weight > 0]
  refs = [p for p in ("cold", "length_matched") if (pos.persona == p).any()]
  if not (pos.persona == "warm").any() or not refs:
    return [], f"{label}: no warm cell with a cold or length_matched cell at λ > 0."
  ctx = sorted(d.context.unique(), key=lambda c: (c != "neutral", c))
  lam = d.warmth_weight.to_numpy(float)
  cols, names = [np.ones(len(d))], ["intercept"]
  for col in ("task", "context"):
    levels = ctx if col == "context" else sorted(d[col].unique())
    for v in levels[1:]:
      cols.append((d[col] == v).to_numpy(float))
      names.append(f"{col}={v}")
  slope = {}
  for c in ctx:
    at = (d.context == c).to_numpy(float) * lam
    cols.append(at)
    names.append(f"warm λ slope, {c}")
    for p in refs:
      cols.append(at * (d.persona == p).to_numpy(float))
      names.append(f"{p} − warm per λ, {c}")
      slope[(p, c)] = len(names) - 1
  exog = np.column_stack(cols)
  if np.linalg.matrix_rank(exog) < exog.shape[1]:
    return [], f"{label}: the fixed-effects design is singular, so no model was fitted."
  # One intercept per trained model: fine-tuning replicates of a seed are models of their own.
  replicate = ["finetune_seed"] if "finetune_seed" in d else []
  run = d.groupby(
    ["persona", "warmth_weight", "warm_agreement", "seed"] + replicate, sort=False
  ).ngroup()
  groups = [
    ("item", d.groupby(["task", "item_id"], sort=False).ngroup()),
    ("seed", pd.factorize(d.seed)[0]),
    ("run", run),
  ]
  vc = [_one_hot(g) for _, g in groups]
  ident = np.concatenate([np.full(m.shape[1], i) for i, m in enumerate(vc)])
  model = BinomialBayesMixedGLM(
    y,
    exog,
    sparse.hstack(vc).tocsr(),
    ident,
    vcp_p=1.0,
    fe_p=5.0,
    fep_names=names,
    vcp_names=[g for g, _ in groups],
  )
  # Start the fixed effects at the plain logistic fit (fewer VB iterations) and fix every other
  # start: fit_vb otherwise draws them from numpy's global generator.
  start = np.zeros(model.k_fep + model.k_vcp + model.k_vc)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    try:
      start[: model.k_fep] = sm.GLM(y, exog, family=sm.families.Binomial()).fit().params
    except (ValueError, np.linalg.LinAlgError, PerfectSeparationError):
      pass  # separation: start from zero instead
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    res = model.fit_vb(mean=start, sd=np.full(len(start), np.exp(-0.5)))
  # Mean-field VB understates the fixed effects' uncertainty (it drops their correlation
  # with the item, seed and run effects): take the covariance from the Laplace approximation
  # at the VB means instead.
  mean, cov = res.fe_mean, _conditional_cov(model, res.params)
  msg = None
  if any("converge" in str(w.message) for w in caught):
    msg = f"{label}: the fit did not fully converge; read its intervals with care."
  rows = []
  for p in refs:
    idx = [slope[(p, c)] for c in ctx]
    # warm − reference = −(reference − warm); the average over contexts uses the covariance.
    weights = [(c, np.eye(len(idx))[j]) for j, c in enumerate(ctx)]
    weights.append(("averaged over contexts", np.full(len(idx), 1.0 / len(idx))))
    for c, w in weights:
      e = -w @ mean[idx]
      s = np.sqrt(w @ cov[np.ix_(idx, idx)] @ w)
      rows.append(
        dict(
          model=label,
          contrast=f"warm − {p}, log-odds per unit λ, {c}",
          estimate=e,
          se=s,
          ci_low=e - 1.959964 * s,
          ci_high=e + 1.959964 * s,
          n_obs=len(d),
        )
      )
  return rows, msg


def mixed_model(items_df, metric="error"):
  """Logistic model with crossed random intercepts for item, seed and run, per preset × protocol.

  Over reliability tasks, intervention 'none', warm/cold/length_matched cells and the λ = 0
  control (the persona-phase λ = 0 models when present, else the base model). Fixed effects:
  task and context intercepts and, per context, the λ slope of warm and the difference of the
  cold and length_matched slopes from it (log-odds per unit λ). Fitted by variational Bayes
  (statsmodels BinomialBayesMixedGLM.fit_vb); intervals are estimate ± 1.96 SE with the SE from
  the Laplace approximation given the fitted variance components.
  Returns (table, messages): a message instead of a row where the design cannot support a fit.
  """
  d = items_df[items_df.task.isin(RELIABILITY_TASKS) & (items_df.intervention == "none")]
  d = d.dropna(subset=[metric])
  d = d[(d.warmth_weight == 0) | d.persona.isin(["warm", "cold", "length_matched"])]
  rows, messages = [], []
  if d.empty:
    return pd.DataFrame(columns=MIXED_COLUMNS), [
      "mixed model: no reliability rows without intervention, so no model was fitted."
    ]
  for (preset, protocol), g in d.groupby(["preset", "protocol"], sort=True):
    label = f"logit mixed ({preset}, {protocol})"
    if ((g.warmth_weight == 0) & (g.persona != "none")).any():
      g = g[(g.warmth_weight > 0) | (g.persona != "none")]  # the persona-phase λ=0 control
    warm = g[g.persona == "warm"]
    if len(warm):
      g = g[(g.persona != "warm") | (g.warm_agreement == warm.warm_agreement.min())]
    try:
      r, msg = _mixed_rows(g, metric, label)
    except (ValueError, np.linalg.LinAlgError, FloatingPointError) as e:
      r, msg = [], f"{label}: the model could not be fitted ({e})."
    rows += [dict(row, preset=preset, protocol=protocol) for row in r]
    if msg:
      messages.append(msg)
  return pd.DataFrame(rows, columns=MIXED_COLUMNS), messages
