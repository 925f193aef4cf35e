"""Writes WORKDIR/report.html and report.md from metrics.csv and items.csv.

  python -m experiments.analysis.report --workdir=DIR

Reads files only. Every sentence of the summary is computed from the numbers.
"""

import datetime
import json
import os
import re
import shutil
import sys
import tempfile

from absl import app, flags, logging
from etils import epath
import numpy as np
import pandas as pd

from experiments import extensions
from experiments.analysis import competence, plots, regression, render, scaling, stats, study_report
from experiments.analysis.power import null_reading, with_power
from experiments.analysis.summary import answer_lines
from experiments.runtime import distributed, heartbeat
from experiments.runtime.workdir import (
  atomic_write,
  is_remote,
  put,
  read_csv,
  read_json,
  write_text,
)
from tasks.config import PROBE_TASKS, RELIABILITY_TASKS, SCREENING_TASKS, TASKS

REQUIRED = [
  "run",
  "preset",
  "n_params",
  "protocol",
  "persona",
  "warmth_weight",
  "warm_agreement",
  "seed",
  "intervention",
  "task",
  "context",
  "metric",
  "value",
  "n",
]
ITEM_REQUIRED = [c for c in REQUIRED if c not in ("metric", "value", "n")] + ["item_id", "error"]
CONTEXTS = ["neutral", "emotional", "false_belief", "emotional+false_belief", "all"]
LABELS = ["preset", "protocol", "persona", "intervention", "task", "context"]
BOTTOM_LINE_NOTE = (
  "The primary contrast: warm − cold error at the largest λ, pooled over the "
  "reliability tasks each preset's base model answers better than the floor "
  'and than a constant answer; "inconclusive" when its 95% interval spans 0. '
  "Terms: a cell is one trained model, a configuration and seed (its id is the run column); a "
  "pack is the cells trained together as one compiled program."
)
# The first screen's bullets: the summary sentences that start so, at most one each, in this order
# and at most FIRST_SCREEN_POINTS in all; the full summary follows below the fold.
KEY_POINTS = (
  r"The workdir holds ",
  r"The sweep is partial",
  r"Primary family: ",
  r"Across measurable reliability tasks \(pooled",
  r"By context, the warm − cold difference",
  r"Across \d+ presets the warmth effect scales|No power law is reported for the warmth effect",
  r"Power: across ",
  r"On tasks with answer options",
  r"A linear-probability model over all cells",
)
FIRST_SCREEN_POINTS = 8
# The first screen's figure, the first of these drawn: warm − cold by context against size, else
# warm − cold against size, by regime, or error against λ; else the first figure drawn.
HEADLINE_FIGURES = (
  "mechanism_scaling",
  "effect_vs_n_params",
  "regime_diagram",
  "error_rate_vs_lambda",
)
NUMERIC = ["n_params", "warmth_weight", "warm_agreement", "seed", "value", "n", "error"]


def _read_csv(path, required):
  """Reads and checks one input csv, raising a one-sentence ValueError."""
  try:
    # As experiments.runtime.workdir writes them: only empty fields are missing ('none' is a level).
    # One pass over the file (low_memory=False): a column that is empty in early rows and text in
    # later ones gets one type rather than a DtypeWarning.
    df = read_csv(path, keep_default_na=False, na_values=[""], low_memory=False)
  except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
    raise ValueError(f"{path} is not a readable csv ({type(e).__name__}).") from None
  missing = [c for c in required if c not in df.columns]
  if missing:
    raise ValueError(
      f"{path} lacks required column(s) {', '.join(missing)} (required: {', '.join(required)})."
    )
  if df.empty:
    raise ValueError(f"{path} has a header but no rows.")
  for c in NUMERIC:
    if c in required and df[c].dtype == object:  # a number column with text in it
      bad = pd.to_numeric(df[c], errors="coerce").isna() & df[c].notna()
      if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(
          f"{path} has {df[c].iloc[row]!r} in column {c} (data row {row + 1}), "
          "where a number is required."
        )
      df[c] = pd.to_numeric(df[c])
  for c in LABELS:
    df[c] = df[c].fillna("none").astype(str)
  return df


def load_workdir(workdir):
  """Returns (metrics, items or None, config or None, notes); ValueError on unusable input."""
  if not epath.Path(workdir).is_dir():
    raise ValueError(f"--workdir={workdir} does not exist or is not a directory.")
  path = os.path.join(workdir, "metrics.csv")
  if not epath.Path(path).is_file():
    raise ValueError(f"{path} not found: a workdir needs the metrics.csv that training writes.")
  metrics, notes = _read_csv(path, REQUIRED), []
  items, config = None, None
  if epath.Path(workdir, "items.csv").is_file():
    items = _read_csv(os.path.join(workdir, "items.csv"), ITEM_REQUIRED)
  else:
    notes.append("items.csv is absent, so paired per-item statistics are skipped.")
  try:
    config = read_json(os.path.join(workdir, "config.json"))
    # A run's config.json records the config beside the code and library versions.
    if isinstance(config.get("config"), dict):
      config = config["config"]
  except FileNotFoundError:
    notes.append("config.json is absent; the design is read from the csv files.")
  except (json.JSONDecodeError, UnicodeDecodeError):
    notes.append("config.json is not valid JSON and was ignored.")
  return metrics, items, config, notes


def _pts(x):
  return "n/a" if pd.isna(x) else f"{100 * x:+.1f}"


def _ci(lo, hi):
  return "n/a" if pd.isna(lo) else f"{_pts(lo)} to {_pts(hi)}"


def _p(p):
  return "n/a" if pd.isna(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _verdict(p, name="p"):
  if pd.isna(p):
    return "not estimable (no paired item moved)"
  value = f"{name} < 0.001" if p < 0.001 else f"{name} = {_p(p)}"
  return f"{'significant' if p < 0.05 else 'not significant'} ({value})"


def _order(df, first=(), last=()):
  """Sorts rows by `first`, then task and context in their natural order, then `last`."""
  rank = {
    "task": {t: i for i, t in enumerate(TASKS)},
    "context": {c: i for i, c in enumerate(CONTEXTS)},
  }
  keys = [*first, *(c for c in ("task", "context") if c in df), *last]
  return (
    df.sort_values(
      keys, kind="stable", key=lambda s: s.map(rank[s.name]).fillna(99) if s.name in rank else s
    )
    if keys
    else df
  )


def _with_ci(df, est="estimate", lo="ci_low", hi="ci_high"):
  """'+4.2 [-1.0 to +9.3]'; rows where no paired item moved read 'not estimable (n = …)'."""
  ok = df["estimable"] if "estimable" in df and est == "estimate" else pd.Series(True, df.index)
  n = df["n_obs"] if "n_obs" in df else pd.Series(np.nan, df.index)
  return pd.Series(
    [
      f"{_pts(e)} [{_ci(a, b)}]" if good else f"not estimable (n = {k:.0f})"
      for e, a, b, good, k in zip(df[est], df[lo], df[hi], ok, n)
    ],
    index=df.index,
    dtype=object,
  )


def _select(df, **match):
  sel = np.ones(len(df), dtype=bool)
  for k, v in match.items():
    sel &= (df[k] == v).to_numpy()
  return df[sel]


def _in_cell(df, head, **match):
  """Rows of the headline cell; cold rows may carry another ρ (the grid varies ρ for warm only)."""
  d = _select(df, **{k: v for k, v in head.items() if k != "warm_agreement"}, **match)
  return d[(d.persona != "warm") | (d.warm_agreement == head["warm_agreement"])]


def _headline_rows(items, metric, by, n_boot, head, **match):
  """paired_deltas rows of the headline cell (narrowed further by `match`); all secondary."""
  return _in_cell(stats.paired_deltas(items, metric, by, n_boot, primary=()), head, **match)


def _primary_section(deltas, doc, summary):
  """The primary family, tested with Benjamini–Hochberg over it alone, stated first."""
  prim = deltas[deltas.test_family == "primary"]
  if prim.empty:
    summary.append(
      "No primary comparison (warm against cold or length_matched at the largest "
      "λ) could be formed, so no primary result is stated."
    )
    return
  names = {"vs_cold": "warm − cold", "vs_length_matched": "warm − length_matched"}
  top = ", ".join(f"{p} λ = {w:g}" for p, w in prim.groupby("preset").warmth_weight.first().items())
  doc += [
    ("h2", "Primary family: warm against its controls on reliability tasks"),
    (
      "p",
      f"{len(prim)} tests: {' and '.join(names[c] for c in sorted(set(prim.comparison)))}"
      f" at the largest λ ({top}), each reliability task × context the preset's base "
      "model can answer (not at floor or chance), per preset. Δ in "
      "percentage points [95% CI], q: Benjamini–Hochberg over this family only. Every other "
      "comparison in this report is secondary (no q-value).",
    ),
    (
      "table",
      _order(prim.assign(comparison=prim.comparison.map(names)), ["preset"])[
        ["preset", "comparison", "task", "context"]
      ].assign(
        **{
          "Δ [95% CI]": _with_ci(prim),
          "p": prim.p_value.map(_p),
          "q": prim.q_value.map(_p),
          "items": prim.n_items,
          "seeds": prim.n_seeds,
        }
      ),
    ),
  ]
  hits = prim[prim.q_value < 0.05]
  if len(hits):
    summary.append(f"Primary family: {len(hits)} of {len(prim)} differences had q < 0.05.")
    summary.append(
      "The primary differences with q < 0.05: "
      + "; ".join(
        f"{names[r.comparison]} {r.task} × {r.context} ({r.preset}) "
        f"{_pts(r.estimate)} points ({_ci(r.ci_low, r.ci_high)}, q = "
        f"{_p(r.q_value)})"
        for r in hits.itertuples()
      )
      + "."
    )
  else:
    summary.append(f"Primary family: none of the {len(prim)} differences had q < 0.05.")
  rest = with_power(prim[~(prim.q_value < 0.05)])
  if len(rest):
    readings = rest.apply(
      lambda r: null_reading(r.ci_low, r.ci_high, r.mde).split(":")[0], axis=1
    ).value_counts()
    summary.append(
      "Of the others, "
      + ", ".join(f"{k} {v}" for v, k in readings.items())
      + ' ("no effect" means the 95% interval lies within ±5 points and the minimum '
      "detectable effect at 80% power is at most 5 points)."
    )


def _probe_section(deltas, doc):
  """Clinical probes, on their own: some define warmth itself as correct."""
  d = deltas[
    deltas.task.isin(PROBE_TASKS)
    & (deltas.persona == "warm")
    & (deltas.intervention == "none")
    & (deltas.comparison != "vs_base")
  ]
  d = d[d.warmth_weight == d.warmth_weight.max()]
  if d.empty:
    return
  doc += [
    ("h3", "Clinical probes (reported on their own, never pooled into reliability)"),
    (
      "table",
      _order(d, ["preset", "comparison"])[
        ["preset", "comparison", "task", "context", "n_items"]
      ].assign(**{"Δ error [95% CI]": _with_ci(d)}),
    ),
  ]


def _mixed_model_section(items, doc, summary):
  """The model-based estimate beside the bootstrap: crossed random intercepts, item and seed."""
  table, messages = regression.mixed_model(items)
  doc.append(("h3", "Logistic mixed model (crossed random intercepts for item and seed)"))
  doc += [("p", m) for m in messages]
  if table.empty:
    return
  odds = [
    f"{e:+.2f} [{a:+.2f} to {b:+.2f}]"
    for e, a, b in zip(table.estimate, table.ci_low, table.ci_high)
  ]
  doc.append(
    (
      "table",
      table[["preset", "protocol", "contrast", "n_obs"]].assign(
        **{"log-odds [95% interval]": odds, "se": table.se.map("{:.2f}".format)}
      ),
    )
  )
  avg = table[
    table.contrast.str.startswith("warm − cold")
    & table.contrast.str.endswith("averaged over contexts")
  ]
  for r in avg.itertuples():
    summary.append(
      f"A logistic mixed model with crossed random intercepts for item and seed "
      f"(secondary, preset {r.preset}) puts warm − cold at {r.estimate:+.2f} log-odds "
      f"per unit λ averaged over contexts (95% interval {r.ci_low:+.2f} to "
      f"{r.ci_high:+.2f})."
    )


def _stats_sections(items, deltas, n_boot, doc, summary):
  """Primary family, paired tables, amplification, screening, probes, behaviour, models."""
  study_report.competence_section(items, doc, summary)
  _primary_section(deltas, doc, summary)
  study_report.power_section(deltas, items, n_boot, doc, summary)
  cell = stats.headline_cell(deltas)
  doc.append(("h2", "Reliability: error-rate changes by task and context"))
  if cell is None:
    summary.append(
      "No warm cell with λ > 0 has a paired reference, so no warmth effects are reported."
    )
    doc.append(("p", summary[-1]))
    return
  head = dict(cell, intervention="none")
  sub = _select(items, preset=cell["preset"], protocol=cell["protocol"])
  # Only the headline λ and its λ=0 reference feed the tables below; other cells cost time.
  sub = sub[
    (sub.warmth_weight == 0)
    | ((sub.warmth_weight == cell["warmth_weight"]) & (sub.intervention == "none"))
  ]
  rel = competence.measurable(sub[sub.task.isin(RELIABILITY_TASKS)])
  wc = dict(persona="warm", comparison="vs_cold")
  key = ["task", "context"]
  main = _in_cell(deltas, head)
  diff = _select(main, **wc)
  # Item and seed counts of the warm − cold comparison where it exists (vs_cold sorts first).
  table = main.sort_values("comparison", ascending=False)[key + ["n_items", "n_seeds"]]
  table = table.drop_duplicates(key)
  for (p, comp), col in {
    ("warm", "vs_base"): "warm vs λ=0",
    ("cold", "vs_base"): "cold vs λ=0",
    ("warm", "vs_cold"): "warm − cold",
    ("warm", "vs_length_matched"): "warm − length_matched",
  }.items():
    d = _select(main, persona=p, comparison=comp)
    table = table.merge(d[key].assign(**{col: _with_ci(d)}), how="left")
  table = table.merge(diff[key].assign(**{"q (primary)": diff.q_value.map(_p)}), how="left")
  doc += [
    (
      "p",
      f"Cell: preset {cell['preset']}, {cell['protocol']}, λ = "
      f"{cell['warmth_weight']:g}, ρ = {cell['warm_agreement']:g}. Changes in percentage "
      f"points [95% CI], paired by seed and item; CIs from a crossed bootstrap (seeds, and "
      f"item clusters by entity shared by every seed; {n_boot} draws, more for the primary "
      "family); q: Benjamini–Hochberg over the primary family only.",
    ),
    ("table", _order(table)[key + list(table.columns[4:]) + ["n_items", "n_seeds"]].fillna("n/a")),
  ]
  pooled = _headline_rows(rel, "error", (), n_boot, head)
  pw = _select(pooled, **wc)
  lam = f"λ = {cell['warmth_weight']:g} (preset {cell['preset']})"
  for r in pw.itertuples():
    summary.append(
      f"Across measurable reliability tasks (pooled, secondary), warm fine-tuning at "
      f"{lam} changed the error rate by {_pts(r.estimate)} points (95% CI "
      f"{_ci(r.ci_low, r.ci_high)}) relative to cold: {_verdict(r.p_value)}."
    )
  if pw.empty:
    summary.append(
      f"No cold cell matches warm at {lam}, so warmth cannot be separated from "
      "fine-tuning as such; only changes relative to λ = 0 are reported."
    )
  for r in _select(pooled, comparison="vs_base").itertuples():
    summary.append(
      f"Relative to the λ = 0 model (secondary), {r.persona} at {lam} changed the "
      f"reliability error rate by {_pts(r.estimate)} points (95% CI {_ci(r.ci_low, r.ci_high)}): "
      f"{_verdict(r.p_value)}."
    )
  by_ctx = _order(_headline_rows(rel, "error", ("context",), n_boot, head, **wc))
  if len(by_ctx):
    summary.append(
      "By context, the warm − cold difference was "
      + ", ".join(f"{_pts(r.estimate)} ({r.context})" for r in by_ctx.itertuples())
      + " points"
      + (
        f"; the largest was under {by_ctx.context[by_ctx.estimate.idxmax()]}."
        if by_ctx.estimate.nunique() > 1
        else "."
      )
    )
  amp = _in_cell(
    stats.relative_amplification(rel, "error", "vs_cold", (), n_boot), head, persona="warm"
  )
  if len(amp):
    amp = _order(amp)
    doc += [
      ("h3", "Amplification by context (warm − cold vs neutral, reliability tasks)"),
      (
        "table",
        pd.DataFrame(
          {
            "context": amp.context,
            "neutral effect": amp.neutral_effect.map(_pts),
            "context effect": amp.context_effect.map(_pts),
            "ratio [95% CI]": [
              f"{r:.2f} [{a:.2f} to {b:.2f}]"
              for r, a, b in zip(amp.ratio, amp.ratio_ci_low, amp.ratio_ci_high)
            ],
            "excess [95% CI]": _with_ci(amp, "excess", "excess_ci_low", "excess_ci_high"),
            "p (excess)": amp.excess_p.map(_p),
          }
        ),
      ),
    ]
    for r in amp.itertuples():
      if r.neutral_p < 0.05 and r.neutral_effect > 0:
        summary.append(
          f"Under {r.context} the warm − cold effect was {r.ratio:.2f}× its neutral "
          f"size (95% CI {r.ratio_ci_low:.2f} to {r.ratio_ci_high:.2f})."
        )
      else:
        summary.append(
          f"Under {r.context} the warm − cold effect differed from neutral by "
          f"{_pts(r.excess)} points (95% CI {_ci(r.excess_ci_low, r.excess_ci_high)}; "
          f"{_verdict(r.excess_p)}); no ratio is given because the neutral effect "
          "is not distinguishable from zero."
        )
  screen = _headline_rows(
    sub[sub.task.isin(SCREENING_TASKS)], "error", ("task",), n_boot, head, **wc
  )
  side = pd.concat([pw.assign(task="reliability tasks (pooled)"), screen])
  if len(side):
    doc += [
      ("h3", "Screening checks next to reliability (warm − cold, pooled over contexts)"),
      (
        "table",
        side[["task", "n_items", "n_seeds"]].assign(
          **{"warm − cold [95% CI]": _with_ci(side), "p": side.p_value.map(_p)}
        ),
      ),
    ]
  for r in screen.itertuples():
    detected = (
      "not estimable (no paired item moved)"
      if pd.isna(r.p_value)
      else f"{'a' if r.p_value < 0.05 else 'no'} change was detected (p = {_p(r.p_value)})"
    )
    summary.append(
      f"On the {r.task} screening check, warm − cold changed the error rate by "
      f"{_pts(r.estimate)} points (95% CI {_ci(r.ci_low, r.ci_high)}): {detected}."
    )
  _probe_section(deltas, doc)
  _labels(sub, head, n_boot, doc, summary)
  _mixed_model_section(items, doc, summary)
  reg = regression.regression(items)
  doc.append(("h3", "Regression over all cells (linear probability, cluster-robust SEs)"))
  doc += [("p", f"{k}: {v}") for k, v in reg.formulas.items()] + [("p", m) for m in reg.messages]
  if len(reg.table):
    doc.append(
      (
        "table",
        reg.table[["model", "contrast", "n_obs", "clusters"]].assign(
          **{"pts per unit λ [95% CI]": _with_ci(reg.table), "p": reg.table.p_value.map(_p)}
        ),
      )
    )
  for r in reg.table[
    (reg.table.model == "reliability") & reg.table.contrast.str.endswith("averaged over contexts")
  ].itertuples():
    summary.append(
      f"A linear-probability model over all cells puts the {r.contrast} at "
      f"{_pts(r.estimate)} points per unit λ (95% CI {_ci(r.ci_low, r.ci_high)}; "
      f"{_verdict(r.p_value)})."
    )


def _labels(sub, head, n_boot, doc, summary):
  """Generated vs multiple-choice error per task, and each behaviour label by context."""
  wc = dict(persona="warm", comparison="vs_cold")
  if "mc_error" in sub and sub.mc_error.notna().any() and (sub.persona == "cold").any():
    both = [
      _headline_rows(sub, m, ("task",), n_boot, head, **wc).set_index("task")
      for m in ("error", "mc_error")
    ]
    table = (
      pd.concat(
        [_with_ci(b).rename(m) for b, m in zip(both, ("generated error", "multiple-choice error"))],
        axis=1,
      )
      .fillna("n/a")
      .reset_index()
    )
    doc += [("h3", "Says vs knows (warm − cold, pts [95% CI])"), ("table", _order(table))]
    gen, mc = (
      _headline_rows(sub[sub.mc_error.notna()], m, (), n_boot, head, **wc)
      for m in ("error", "mc_error")
    )
    for g, k in zip(gen.itertuples(), mc.itertuples()):
      summary.append(
        f"On tasks with answer options, warm − cold changed generated-reply error by "
        f"{_pts(g.estimate)} points ({_ci(g.ci_low, g.ci_high)}) and multiple-choice "
        f"error by {_pts(k.estimate)} points ({_ci(k.ci_low, k.ci_high)})."
      )
  rows = []
  for c in [c for c in stats.OUTCOMES[2:] if c in sub and sub[c].nunique() > 1]:
    d = _headline_rows(sub, c, ("context",), n_boot, head, **wc)
    rows += [
      dict(behaviour=c, context=r.context, cell=v) for r, v in zip(d.itertuples(), _with_ci(d))
    ]
  if rows:
    t = pd.DataFrame(rows).pivot(index="behaviour", columns="context", values="cell")
    doc += [
      ("h3", "Behaviour labels (warm − cold, pts [95% CI], pooled over tasks)"),
      ("table", t[[c for c in CONTEXTS if c in t]].reset_index().fillna("n/a")),
    ]


def _scaling_sections(metrics, n_boot, doc, summary, figs, staging, items=None):
  """Per-preset effects, power-law fits, the capping trade-off, geometry and the loss fit."""
  # The effect's scaling pools the tasks each preset's base model can answer, as the bottom line.
  fx = scaling.seed_effects(metrics if items is None else competence.measurable(items, metrics))
  doc.append(("h2", "Scaling"))
  if fx.empty:
    doc.append(
      ("p", "No preset has both warm and cold error_rate rows, so no warmth effect can be scaled.")
    )
  fits, notes = scaling.power_law_fits(fx, n_boot)
  for f in fits:
    if f.x == "n_params":
      pts, cols = f.points, [c for c in scaling.SCALE_COLUMNS if c in f.points]
      doc.append(
        (
          "table",
          pts[["preset", "warmth_weight", "n_seeds"]].assign(
            **{c: pts[c].map("{:.3g}".format) for c in cols},
            **{"warm − cold [95% CI]": _with_ci(pts, "effect")},
          ),
        )
      )
      summary.append(f.statement())
    doc.append(("p", f.statement()))
    figs.append(plots.effect_scaling(f, staging))
  doc += [("p", n) for n in notes]
  geo = metrics[metrics.task == "persona_geometry"]
  if len(geo):
    # One value per metric and context: the deepest layer, averaged over runs.
    if "layer" in geo and geo.layer.notna().any():
      geo = geo[geo.layer == geo.groupby("metric").layer.transform("max")]
    t = geo.groupby(["metric", "context"])["value"].mean().unstack("context")
    t = t[[c for c in CONTEXTS if c in t] + [c for c in t if c not in CONTEXTS]]
    doc += [
      ("h3", "Persona geometry (deepest layer, mean over runs)"),
      ("table", t.map("{:.3g}".format).reset_index().replace("nan", "")),
    ]
    metric = plots.drift_metric(metrics)
    drift = metrics[metrics.metric == metric].groupby("context")["value"].mean()
    if len(drift) > 1:
      summary.append(
        f"{metric}, averaged over layers and runs, was highest under "
        f"{drift.idxmax()} ({drift.max():.3g}) and lowest under {drift.idxmin()} "
        f"({drift.min():.3g})."
      )
  figs.append(plots.drift_by_context(metrics, staging))
  chin = scaling.fit_chinchilla(metrics)
  doc.append(("p", chin.statement()))
  summary.append(chin.statement())
  figs.append(plots.loss_scaling(chin, staging))


def _config_name(config):
  """'nano, micro × λ 0, 0.5, 1 × 2 seeds': what a run's config.json says it swept."""
  if not config:
    return "no config.json"
  grid, model = config.get("grid") or {}, config.get("model") or {}
  return (
    f"{', '.join(map(str, model.get('presets', [])))} × λ "
    f"{', '.join(f'{v:g}' for v in grid.get('warmth_weights', []))} × "
    f"{len(grid.get('seeds', []))} seeds"
  )


def bootstrap_draws(config, default=1000):
  """The run's eval.bootstrap (so the report's intervals are the run's), else `default`."""
  return int(((config or {}).get("eval") or {}).get("bootstrap") or default)


def paired_deltas(workdir, items, n_boot):
  """(deltas, computed): the run's paired_deltas.csv, the numbers behind metrics.csv's change
  rows; computed only for a workdir that lacks it, e.g. a merged sweep."""
  path = os.path.join(workdir, "paired_deltas.csv")
  if epath.Path(path).is_file():
    deltas = read_csv(
      path, keep_default_na=False, na_values=[""], float_precision="round_trip"
    )  # the very floats metrics.csv holds
    for c in LABELS:
      if c in deltas:
        deltas[c] = deltas[c].fillna("none").astype(str)
    return deltas, False
  return stats.paired_deltas(items, "error", ("task", "context"), n_boot), True


def _extension_reports(config):
  """Each extension's report hook: those config.json lists, or every known one without it."""
  names = (config or {}).get("extensions", list(extensions.REGISTRY))
  return [extensions.extension_class(n).report for n in names if n in extensions.REGISTRY]


def first_regime(metrics, items, config):
  """(metrics, items, notes) of one persona-phase regime: a workdir of several is reported section
  by section for the first of grid.regimes that it holds, beside the base models (regime
  `none`); the bottom line gives every regime's warm − cold, and every row stays in the files."""
  held = (
    []
    if items is None or "regime" not in items
    else [r for r in items.regime.unique() if r != "none"]
  )
  if len(held) <= 1:
    return metrics, items, []
  named = list(((config or {}).get("grid") or {}).get("regimes") or {})
  first = next((r for r in named if r in held), sorted(held)[0])
  keep = lambda d: d[d.regime.isin([first, "none"]) | d.regime.isna()]
  return (
    keep(metrics),
    keep(items),
    [
      f"This workdir holds {len(held)} persona-phase regimes ({', '.join(sorted(held))}); the "
      f"statistics and scaling sections read regime {first} beside the base models; the bottom "
      "line, the answer per regime, capping and the objectives give every regime, and "
      "metrics.csv, items.csv and paired_deltas.csv hold every cell."
    ],
  )


def key_points(summary):
  """The summary sentences of the first screen (KEY_POINTS), at most FIRST_SCREEN_POINTS."""
  points = []
  for pattern in KEY_POINTS:
    points += [s for s in summary if re.match(pattern, s)][:1]
  return points[:FIRST_SCREEN_POINTS]


def headline_figure(figs):
  """The figure that answers the question (HEADLINE_FIGURES); None without figures."""
  drawn = {f.name: f for f in figs if not f.skipped}
  named = [drawn[n] for n in HEADLINE_FIGURES if n in drawn]
  return (named or list(drawn.values()) or figs or [None])[0]


def write_report(workdir, n_boot=None):
  """Computes statistics and plots; writes report.html, report.md and plots/.

  n_boot: bootstrap draws of the intervals the report computes itself; None: the run's
  eval.bootstrap. Paired changes come from the run's paired_deltas.csv when it has one.
  """
  all_metrics, all_items, config, notes = load_workdir(workdir)
  metrics, items, regime_note = first_regime(all_metrics, all_items, config)
  notes = notes + regime_note
  n_boot = n_boot or bootstrap_draws(config)
  try:  # in the workdir, so finished plots are renamed into place; locally for a bucket
    staging = tempfile.mkdtemp(prefix=".report-", dir=None if is_remote(workdir) else workdir)
  except OSError as e:
    raise ValueError(f"cannot write into --workdir={workdir}: {e.strerror}.") from None
  try:
    with heartbeat.Heartbeat(lambda: "report: design running") as beat:
      figs, doc, summary = [], [], []
      design, sentences = stats.describe_design(all_metrics, config)
      summary += sentences + notes
      deltas, computed = None, False

      def stop(next_part):  # SIGTERM stops the report between its parts; each part is logged
        distributed.stop_if_asked("the report")
        logging.info("report: %s", next_part)
        beat.touch(f"report: {next_part} running")

      if items is not None:
        stop("paired changes")
        deltas, computed = paired_deltas(workdir, all_items, n_boot)
        stop("statistics")
        shown = deltas[deltas.regime.isin(set(items.regime))] if "regime" in deltas else deltas
        _stats_sections(items, shown, n_boot, doc, summary)
        stop("mechanisms")
        study_report.mechanism_section(items, metrics, n_boot, doc, summary, figs, staging)
        stop("regimes side by side")
        study_report.regimes_section(
          all_items, all_metrics, config, n_boot, doc, summary, figs, staging
        )
      stop("figures and scaling")
      figs += [plots.error_vs_lambda(metrics, staging), plots.frontier(metrics, staging)]
      _scaling_sections(metrics, n_boot, doc, summary, figs, staging, items)
      for add_section in _extension_reports(config):  # each a no-op without its rows
        stop("extension sections")
        # Every regime: the extensions' tables (capping, objectives) are per regime themselves.
        add_section(all_metrics, doc, summary, figs, staging, items=all_items, n_boot=n_boot)
      stop("bottom line")
      answer = (
        answer_lines(all_items, n_boot)
        if items is not None
        else ["items.csv is absent: no paired answer."]
      )
      title = (
        f"warmth-sim report: {os.path.basename(os.path.abspath(workdir))} "
        f"({_config_name(config)}, {datetime.date.today().isoformat()})"
      )
      # The first screen: the answer, the one figure that shows it, the key points; then the
      # details, each h2 section folded in the html.
      shown = headline_figure(figs)
      head = [("h1", title), ("h2", "Bottom line"), ("lines", answer), ("note", BOTTOM_LINE_NOTE)]
      head += [("fig", shown)] if shown else []
      head += [("h3", "Key points"), ("ul", key_points(summary))]
      # The design's list of metrics is long and rarely read: folded in the html.
      design = design.assign(
        levels=[
          render.Fold(v) if f == "metric" else v for f, v in zip(design.factor, design.levels)
        ]
      )
      body = [("h2", "Summary"), ("ul", summary), ("h2", "Design"), ("table", design)] + doc
      body += [("h2", "Figures")] + [("fig", f) for f in figs if f is not shown]
      if shown and not shown.skipped:
        body.append(("p", f"The figure {shown.name} is at the top, under the bottom line."))
      doc = head + [("toc", [v for k, v in body if k == "h2"]), ("fold", None)] + body
      page, md = render.render(doc)
      paths = {
        "html": os.path.join(workdir, "report.html"),
        "md": os.path.join(workdir, "report.md"),
        "plots": [],
      }
      plot_dir = os.path.join(workdir, "plots")
      epath.Path(plot_dir).mkdir(parents=True, exist_ok=True)
      for f in figs:
        for src in filter(None, (f.png, f.svg)):
          paths["plots"].append(os.path.join(plot_dir, os.path.basename(src)))
          put(src, paths["plots"][-1])
      if deltas is not None:
        paths["deltas"] = os.path.join(workdir, "paired_deltas.csv")
        if computed:  # written with the report, so a failed report leaves nothing behind
          atomic_write(paths["deltas"], lambda t: deltas.to_csv(t, index=False))
      write_text(paths["md"], md)
      write_text(paths["html"], page)
      return paths
  finally:
    shutil.rmtree(staging, ignore_errors=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    paths = write_report(flags.FLAGS.workdir, flags.FLAGS.n_boot)
  except ValueError as e:
    sys.exit(str(e))
  print(f"wrote {paths['html']} and {paths['md']}")


if __name__ == "__main__":
  # Defined here, not at import: experiments.main imports this module and owns --workdir.
  flags.DEFINE_string("workdir", None, "Workdir (or merged sweep dir) holding metrics.csv.")
  flags.DEFINE_integer(
    "n_boot",
    None,
    "Bootstrap draws of the intervals the report computes "
    "(default: the run's eval.bootstrap, else 1000); paired changes are read "
    "from paired_deltas.csv when the workdir has it.",
  )
  flags.mark_flag_as_required("workdir")
  app.run(main)
