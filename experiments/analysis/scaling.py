"""Warmth effect across model scale: per-preset effects, power-law and Chinchilla fits."""

import dataclasses
import functools
import itertools

import numpy as np
import pandas as pd
from scipy import optimize, special

from experiments.analysis import stats
from tasks.config import RELIABILITY_TASKS

NON_EVAL_TASKS = stats.NON_EVAL_TASKS
SCALE_COLUMNS = stats.SCALE_COLUMNS


def pick_protocol(df, protocol=None):
  """The protocol to analyse: the one given, else finetune when present, else the first."""
  if protocol is not None:
    return protocol
  levels = list(df.protocol.dropna().unique())
  return "finetune" if "finetune" in levels else (levels[0] if levels else None)


def preset_scales(metrics_df):
  """One row per preset: the median of each scale column present (n_params, tokens, flops)."""
  cols = [c for c in SCALE_COLUMNS if c in metrics_df]
  return metrics_df.groupby("preset")[cols].median()


def seed_effects(metrics_df, metric="error_rate", protocol=None, tasks=None):
  """Warm − cold change of `metric` per preset and seed at the largest shared λ, over tasks."""
  protocol = pick_protocol(metrics_df, protocol)
  m = metrics_df[
    (metrics_df.metric == metric)
    & (metrics_df.intervention == "none")
    & (metrics_df.protocol == protocol)
    & ~metrics_df.task.isin(NON_EVAL_TASKS)
  ]
  m = m[m.task.isin(tasks) if tasks is not None else m.task.isin(RELIABILITY_TASKS)]
  key = ["preset", "seed", "warm_agreement", "warmth_weight", "task", "context"]
  m = m.assign(var=m.value * (1 - m.value) / m.n if "n" in m else np.nan)
  warm, cold = (m[m.persona == p].groupby(key)[["value", "var"]].mean() for p in ("warm", "cold"))
  pair = warm.join(cold, how="inner", lsuffix="_warm", rsuffix="_cold").reset_index()
  cols = [
    "preset",
    "seed",
    "warmth_weight",
    "warm_agreement",
    "effect",
    "effect_var",
    *preset_scales(metrics_df).columns,
  ]
  if pair.empty:
    return pd.DataFrame(columns=cols)
  # The content-preserving ρ (smallest) and the largest λ with both personas, per preset.
  pair = pair[pair.warm_agreement == pair.groupby("preset").warm_agreement.transform("min")]
  pair = pair[pair.warmth_weight == pair.groupby("preset").warmth_weight.transform("max")]
  # Binomial variance of each rate, ignoring the (positive) pairing correlation: conservative.
  pair = pair.assign(
    effect=pair.value_warm - pair.value_cold, effect_var=pair.var_warm + pair.var_cold
  )
  out = pair.groupby(["preset", "seed", "warmth_weight", "warm_agreement"]).agg(
    effect=("effect", "mean"), effect_var=("effect_var", "sum"), k=("effect", "size")
  )
  # The binomial formula only holds for rates.
  out["effect_var"] = out.effect_var / out.k**2 if m.value.between(0, 1).all() else np.nan
  return out.reset_index().join(preset_scales(metrics_df), on="preset")[cols]


def _seed_boot(seed_fx, presets, n_boot, rng):
  """(P, B) two-stage bootstrap means: seeds resampled, then the seed's own sampling noise.

  As in the Davison–Hinkley two-stage bootstrap, seed effects are shrunk towards their mean
  so that between-seed spread is not counted twice; the second stage draws the item noise of
  the seed's rates (normal, binomial variance). Without a known within-seed variance,
  seed deviations are expanded by sqrt(S/(S-1)) so the draws' variance is unbiased.
  """
  out = np.empty((len(presets), n_boot))
  for i, p in enumerate(presets):
    d = seed_fx[seed_fx.preset == p]
    v = d.effect.to_numpy(float)
    w = d.effect_var.to_numpy(float) if "effect_var" in d else np.full(len(v), np.nan)
    n, mean = len(v), v.mean()
    known = np.isfinite(w).all()
    if n < 2:
      scale = 0.0
    elif known:
      var_m = v.var(ddof=1)
      scale = np.sqrt(max(var_m - w.mean(), 0.0) / (var_m * (n - 1) / n)) if var_m > 0 else 0.0
    else:
      scale = np.sqrt(n / (n - 1))
    idx = rng.integers(0, n, (n_boot, n))
    draw = mean + scale * (v[idx] - mean)
    if known:
      draw = draw + rng.normal(size=draw.shape) * np.sqrt(w[idx])
    out[i] = draw.mean(-1)
  return out


def preset_effects(seed_fx, n_boot=1000, seed=0, alpha=0.05):
  """Per preset: mean effect over seeds with a seed-bootstrap percentile CI."""
  g = seed_fx.groupby("preset")
  out = g.agg(
    effect=("effect", "mean"), n_seeds=("seed", "nunique"), warmth_weight=("warmth_weight", "first")
  )
  out = out.join(g[[c for c in SCALE_COLUMNS if c in seed_fx]].first())
  draws = _seed_boot(seed_fx, list(out.index), n_boot, np.random.default_rng(seed))
  lo, hi = np.percentile(draws, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=1)
  single = (out.n_seeds < 2).to_numpy()
  out["ci_low"], out["ci_high"] = np.where(single, np.nan, lo), np.where(single, np.nan, hi)
  return out.sort_values("n_params" if "n_params" in out else "effect").reset_index()


@dataclasses.dataclass
class PowerLawFit:
  """effect = a·x^b fitted in log space. `supported`: the fit can be drawn (three or more presets,
  each with a positive effect over several seeds); `trend`: its exponent's CI excludes zero."""

  x: str
  supported: bool
  reason: str
  points: pd.DataFrame
  a: float = np.nan
  b: float = np.nan
  a_ci: tuple = (np.nan, np.nan)
  b_ci: tuple = (np.nan, np.nan)
  draws: np.ndarray = None  # (B, 2) bootstrap (log a, b), for bands in plots.
  trend: bool = False

  def statement(self):
    """One sentence: the fit with its CI, or why there is none."""
    if not self.supported:
      return f"No power law is reported for the warmth effect against {self.x}: {self.reason}"
    ci = f"95% CI {self.b_ci[0]:+.2f} to {self.b_ci[1]:+.2f}"
    if not self.trend:
      ci += f", which spans zero: no detectable trend with {self.x}"
    return (
      f"Across {len(self.points)} presets the warmth effect scales as a·{self.x}^b with "
      f"b = {self.b:+.2f} ({ci}); {self.descriptive()}."
    )

  def descriptive(self):
    """How much the fit can say: two parameters through k points leave k − 2 degrees of
    freedom, so a fit over few presets describes them rather than tests a law."""
    k = len(self.points)
    return (
      f"a descriptive fit: two parameters through {k} presets leave {k - 2} degree"
      f"{'s' if k - 2 != 1 else ''} of freedom"
    )


def _loglog(x, y):
  """Least-squares (log a, b) for each row of y (..., P) against x (P,)."""
  lx, ly = np.log(x), np.log(y)
  b = ((lx - lx.mean()) * (ly - ly.mean(-1, keepdims=True))).sum(-1) / ((lx - lx.mean()) ** 2).sum()
  return ly.mean(-1) - b * lx.mean(), b


def fit_power_law(seed_fx, x="n_params", n_boot=1000, seed=0, alpha=0.05):
  """Fits effect = a·x^b over presets with a seed-bootstrap CI, or says why it is unsupported."""
  pts = preset_effects(seed_fx, n_boot, seed, alpha)
  if x not in pts or pts[x].isna().any():
    return PowerLawFit(x, False, f"the scale column {x!r} is missing for some presets.", pts)
  pts = pts.sort_values(x).reset_index(drop=True)
  if pts[x].nunique() < 3:
    return PowerLawFit(
      x,
      False,
      f"only {pts[x].nunique()} distinct {x} value(s); a power law needs at least 3 presets.",
      pts,
    )
  if (pts.effect <= 0).any():
    bad = ", ".join(
      f"{p} {100 * e:+.1f} pts"
      for p, e in zip(pts.preset[pts.effect <= 0], pts.effect[pts.effect <= 0])
    )
    return PowerLawFit(
      x, False, f"the effect is not positive at every preset ({bad}), so it has no logarithm.", pts
    )
  log_a, b = _loglog(pts[x].to_numpy(float), pts.effect.to_numpy(float))
  fit = PowerLawFit(x, True, "", pts, float(np.exp(log_a)), float(b))
  if (pts.n_seeds < 2).any():
    fit.supported, fit.reason = (
      False,
      (
        "some presets have a single seed, so there is no "
        "bootstrap CI and the fit is descriptive only."
      ),
    )
    return fit
  boot = _seed_boot(seed_fx, list(pts.preset), n_boot, np.random.default_rng(seed)).T
  ok = (boot > 0).all(1)
  if ok.mean() < 1 - alpha / 2:
    fit.supported, fit.reason = (
      False,
      (
        f"in {100 * (1 - ok.mean()):.0f}% of seed-bootstrap draws some preset's effect is "
        "≤ 0, i.e. the effect CIs span both signs."
      ),
    )
    return fit
  la, bb = _loglog(pts[x].to_numpy(float), boot[ok])
  fit.draws = np.column_stack([la, bb])
  q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
  fit.a_ci = tuple(np.exp(np.percentile(la, q)))
  fit.b_ci = tuple(np.percentile(bb, q))
  fit.trend = not fit.b_ci[0] <= 0 <= fit.b_ci[1]
  return fit


def power_law_fits(seed_fx, n_boot=1000, seed=0):
  """Fits against n_params, then tokens and flops where they vary apart from n_params; and notes."""
  fits, notes = [], []
  for x in [x for x in ("n_params", "tokens", "flops") if x in seed_fx and len(seed_fx)]:
    scale = seed_fx.groupby("preset")[["n_params", x]].first().dropna()
    if x != "n_params" and len(scale) < 3:
      continue
    if x != "n_params" and np.corrcoef(np.log(scale.to_numpy(float).T))[0, 1] > 0.999:
      # In lockstep with n_params, a fit against x only re-expresses the n_params fit.
      notes.append(f"{x} does not vary independently of n_params, so it gets no separate fit.")
      continue
    fits.append(fit_power_law(seed_fx, x, n_boot, seed))
  return fits, notes


@dataclasses.dataclass
class ChinchillaFit:
  """L(N, D) = E + A/N^α + B/D^β; `supported` says whether the sweep identifies it."""

  supported: bool
  reason: str
  data: pd.DataFrame
  params: dict = dataclasses.field(default_factory=dict)
  rmse_log: float = np.nan
  held_out: bool = False  # the points are held-out losses, not the training loss along a schedule

  def statement(self):
    """One sentence: the fitted law, or why there is none."""
    if not self.supported:
      return f"No Chinchilla loss fit: {self.reason}"
    return (
      "Loss fits L(N, D) = E + A/N^α + B/D^β with "
      + ", ".join(f"{k} = {v:.3g}" for k, v in self.params.items())
      + f" (RMSE of log loss {self.rmse_log:.3g}, {len(self.data)} points)."
    )

  def predict(self, n, d):
    p = self.params
    return p["E"] + p["A"] / np.power(n, p["alpha"]) + p["B"] / np.power(d, p["beta"])


def loss_points(metrics_df, n_col="n_params"):
  """Held-out (else training) loss as (N, D, loss); λ=0 models if any (persona data shift loss)."""
  m = metrics_df[metrics_df.metric == "loss"]
  m = m[m.task == ("heldout" if (m.task == "heldout").any() else "train")]
  if "intervention" in m:
    m = m[m.intervention == "none"]
  if (m.warmth_weight == 0).any():
    m = m[m.warmth_weight == 0]
  cols = {n_col: "N", "tokens": "D", "value": "loss"}
  if "tokens" not in m:
    return m.assign(tokens=np.nan)[list(cols)].rename(columns=cols)
  return m[list(cols)].rename(columns=cols).dropna(subset=["N", "loss"]).reset_index(drop=True)


def fit_chinchilla(metrics_df, n_col="n_params", huber_delta=1e-3):
  """Huber fit of log L to log(E + A/N^α + B/D^β) from a grid of starts (Hoffmann et al. 2022)."""
  pts = loss_points(metrics_df, n_col)
  fit = functools.partial(
    ChinchillaFit,
    held_out=bool(((metrics_df.metric == "loss") & (metrics_df.task == "heldout")).any()),
  )
  if pts.empty:
    return fit(False, "there are no loss rows (metric loss, task heldout or train).", pts)
  pts = pts.dropna(subset=["D"])
  n_uniq, d_uniq = pts.N.nunique(), pts.D.nunique()
  if n_uniq < 2 or d_uniq < 2:
    return fit(
      False,
      f"not enough variation: the sweep has {n_uniq} model size(s) "
      f"and {d_uniq} token budget(s); the fit needs both to vary.",
      pts,
    )
  design = np.column_stack([np.ones(len(pts)), np.log(pts.N), np.log(pts.D)])
  n_cells = len(pts[["N", "D"]].drop_duplicates())
  if np.linalg.matrix_rank(design) < 3 or n_cells < 6:
    return fit(
      False,
      f"not enough variation: {n_cells} (N, D) combination(s), with N "
      "and D varying together, cannot separate the two exponents.",
      pts,
    )
  log_n, log_d, log_l = (np.log(pts[c].to_numpy(float)) for c in ("N", "D", "loss"))

  def terms(theta):
    a, b, e, alpha, beta = theta
    return np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])

  def resid(theta):
    return special.logsumexp(terms(theta), axis=0) - log_l

  def jac(theta):
    w = special.softmax(terms(theta), axis=0)  # d logsumexp / d term
    return np.column_stack([w[0], w[1], w[2], -log_n * w[0], -log_d * w[1]])

  e0 = np.log(pts.loss.min())
  best = None
  for a, b, e, alpha, beta in itertools.product(
    (2.0, 8.0), (2.0, 8.0), (e0 - 1.0, e0 - 0.1), (0.25, 0.6), (0.25, 0.6)
  ):
    r = optimize.least_squares(
      resid,
      [a, b, e, alpha, beta],
      jac=jac,
      loss="huber",
      f_scale=huber_delta,
      bounds=([-20, -20, -10, 0, 0], [40, 40, 10, 3, 3]),
    )
    if best is None or r.cost < best.cost:
      best = r
  a, b, e, alpha, beta = best.x
  params = dict(E=np.exp(e), A=np.exp(a), alpha=alpha, B=np.exp(b), beta=beta)
  return fit(True, "", pts, params, float(np.sqrt(np.mean(best.fun**2))))
