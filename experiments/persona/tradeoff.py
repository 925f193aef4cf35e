"""The capping and steering trade-offs, and the defaults the built-in sweep picks from them.

For a capping setting, on the cells every setting was run on (the base models and the cells at the
largest λ): error recovered on the reliability tasks of the warm cells, capability and safety lost
(error added on the capability and safety_refusal screening tasks, all those cells), the base
models' reliability error change, warmth lost (warm cells), multiple-choice error change. A
setting may be chosen only if neither its capability nor its safety loss exceeds
`persona.max_capability_loss`; among those, the one that recovers most (ties: fewer layers, lower
percentile). A steering strength is
chosen the same way from steered-minus-plain-twin changes.

`capping_table` is the one computation of these numbers: the console table, capping_tradeoff.csv,
the report's capping section and its figure all read its rows. Signs, in error-rate units:
  error_recovered    uncapped − capped error: positive = capping lowered error, negative = capping
                     made error worse (by that much)
  capability_lost,   capped − uncapped error on the check: positive = capping added error
  safety_lost
  warm_cold_gap      warm − cold error (uncapped) on the same reliability items and cells;
                     recovery_share = error_recovered / warm_cold_gap (the share of the warmth
                     effect capping removes), error_recovered_fraction = error_recovered / the
                     warm − base excess; both NaN where the gap is under half a point
  clamped_share      mean cap_clamped_share of the warm cells (metrics rows), NaN without them
Every mean is over (seed, task, item) after averaging an item over its contexts, the estimate of
the crossed bootstrap that gives the CIs.
"""

import datetime
import os
import re

import numpy as np
import pandas as pd

from experiments import regimes as regimes_lib
from experiments.persona import effects
from experiments.runtime.workdir import atomic_write, code_version, write_json
from tasks.config import RELIABILITY_TASKS

COLUMNS = [
  "preset",
  "protocol",
  "regime",
  "intervention",
  "error_recovered",
  "error_recovered_ci_low",
  "error_recovered_ci_high",
  "error_recovered_fraction",
  "capability_lost",
  "capability_lost_ci_low",
  "capability_lost_ci_high",
  "safety_lost",
  "safety_lost_ci_low",
  "safety_lost_ci_high",
  "base_error_change",
  "warmth_lost",
  "mc_error_change",
  "n_cells",
  "n_params",
  "kind",
  "percentile",
  "warmth_weight",
  "warm_cold_gap",
  "recovery_share",
  "clamped_share",
  "n_seeds",
]
GAP_FLOOR = 0.005  # a share of a gap smaller than half a point is not reported
CLAMPED_METRIC = "cap_clamped_share"


def _per_item(pairs):
  """Per (seed, task, item) the mean paired difference over contexts and cells."""
  return pairs.groupby(effects.KEY)["diff"].mean().reset_index()


def _mean_ci(pairs, n_boot, rng, sign=1.0):
  if pairs.empty:
    return np.nan, np.nan, np.nan
  est, lo, hi = effects.boot_mean(_per_item(pairs), "diff", n_boot, rng)
  return (sign * est, sign * hi, sign * lo) if sign < 0 else (est, lo, hi)


def _gap(rows, ref, on):
  """Mean of (rows − ref) error, paired on `on`, averaged as _mean_ci does (its estimate)."""
  a = rows.groupby(on).error.mean()
  b = ref.groupby(on).error.mean()
  d = (a - b).dropna().rename("diff").reset_index()
  return float(_per_item(d)["diff"].mean()) if len(d) else np.nan


def _share(recovered, gap):
  return recovered / gap if np.isfinite(gap) and gap > GAP_FLOOR else np.nan


def kind_of(label):
  """'cap' for 'cap@p25:L1' or 'cap[warmth]@p10:L0', 'train-steer' for 'train-steer+4:L1'."""
  return re.match(r"[a-z-]*", label).group(0)


def _table(pairs_by_outcome, items, scope, warm, n_boot, rng, metrics=None):
  """One row per (preset, protocol, intervention) from paired changes restricted to `scope`."""
  err, mc, warmth = (pairs_by_outcome[k] for k in ("error", "mc_error", "warmth"))
  rows = []
  reliability = lambda p: p[p.task.isin(RELIABILITY_TASKS)]
  n_params = items.groupby("preset").n_params.first()
  clamped = pd.DataFrame(columns=["preset", "protocol", "intervention", "value"])
  if metrics is not None and "metric" in metrics:
    clamped = metrics[metrics.metric == CLAMPED_METRIC]
    clamped = clamped[warm(clamped)] if len(clamped) else clamped
  item_on = ["seed", "task", "context", "item_id"]
  gaps = {}
  for (preset, protocol), plain in items[
    (items.intervention == "none") & items.task.isin(RELIABILITY_TASKS)
  ].groupby(["preset", "protocol"]):
    warm_plain = plain[warm(plain)]
    gaps[preset, protocol] = (
      _gap(warm_plain, plain[plain.persona == "none"], item_on),
      _gap(warm_plain, plain[plain.persona == "cold"], ["warmth_weight"] + item_on),
    )
  for (preset, protocol, label), e in err.groupby(["preset", "protocol", "intervention"]):
    e = e[scope(e)]
    sel = lambda p: p[
      (p.preset == preset) & (p.protocol == protocol) & (p.intervention == label) & scope(p)
    ]
    warm_rel = reliability(e[warm(e)])
    rec, rec_lo, rec_hi = _mean_ci(warm_rel, n_boot, rng, sign=-1.0)
    cap, cap_lo, cap_hi = _mean_ci(e[e.task == "capability"], n_boot, rng)
    safe, safe_lo, safe_hi = _mean_ci(e[e.task == "safety_refusal"], n_boot, rng)
    base = reliability(e[e.persona == "none"])
    w = sel(warmth)
    m = sel(mc)
    excess, gap = gaps.get((preset, protocol), (np.nan, np.nan))
    c = clamped[
      (clamped.preset == preset) & (clamped.protocol == protocol) & (clamped.intervention == label)
    ]
    rows.append(
      {
        "preset": preset,
        "protocol": protocol,
        "intervention": label,
        "error_recovered": rec,
        "error_recovered_ci_low": rec_lo,
        "error_recovered_ci_high": rec_hi,
        "error_recovered_fraction": _share(rec, excess),
        "capability_lost": cap,
        "capability_lost_ci_low": cap_lo,
        "capability_lost_ci_high": cap_hi,
        "safety_lost": safe,
        "safety_lost_ci_low": safe_lo,
        "safety_lost_ci_high": safe_hi,
        "base_error_change": base["diff"].mean() if len(base) else np.nan,
        "warmth_lost": -w[warm(w)]["diff"].mean() if len(w) else np.nan,
        "mc_error_change": m["diff"].mean() if len(m) else np.nan,
        "n_cells": e.drop_duplicates(["persona", "warmth_weight", "warm_agreement", "seed"]).shape[
          0
        ],
        "n_params": n_params.get(preset, np.nan),
        "kind": kind_of(label),
        "percentile": float(_percentile_in(label)) if "@p" in label else np.nan,
        "warmth_weight": np.nan,
        "warm_cold_gap": gap,
        "recovery_share": _share(rec, gap),
        "clamped_share": float(c.value.mean()) if len(c) else np.nan,
        "n_seeds": warm_rel.seed.nunique(),
      }
    )
  return pd.DataFrame(rows, columns=COLUMNS)


def capping_table(items, n_boot, rng=None, metrics=None):
  """The capping trade-off per setting, on the base and largest-λ cells (see the module doc).

  The single source of the capping numbers: the console table, capping_tradeoff.csv, the
  report and its figure. rng: None draws from a generator seeded 0, so that the same items and
  n_boot give the same intervals wherever it is called. metrics: the metrics rows, for
  clamped_share (cap_clamped_share rows); without them it is NaN.
  """
  rng = np.random.default_rng(0) if rng is None else rng
  regimes = regimes_lib.held(items)
  if len(regimes) > 1:  # one table per regime, each beside the base models (regime `none`)
    of = lambda d, r: d[d.regime.isin([r, "none"])] if d is not None and "regime" in d else d
    return pd.concat(
      [capping_table(of(items, r), n_boot, rng, of(metrics, r)) for r in regimes], ignore_index=True
    )
  # An items.csv read back may lack the optional outcomes: their columns then stay empty.
  pairs = {
    k: effects.capped_pairs(items, k)
    if k in items
    else pd.DataFrame(columns=effects.CELL_ON + ["intervention", "value", "ref", "diff"])
    for k in ("error", "mc_error", "warmth")
  }
  if pairs["error"].empty:
    return pd.DataFrame(columns=COLUMNS)
  top = items[items.persona != "none"].groupby("preset").warmth_weight.max()
  scope = lambda p: (p.persona == "none") | (p.warmth_weight == p.preset.map(top))
  warm = lambda p: (p.persona == "warm") & (p.warmth_weight == p.preset.map(top))
  table = _table(pairs, items, scope, warm, n_boot, rng, metrics)
  return table.assign(
    warmth_weight=table.preset.map(top).astype(float), regime=regimes[0] if regimes else "default"
  )


def points(x):
  """A rate difference in signed points: 0.012 -> '+1.2'."""
  return f"{100 * x:+.1f}"


def change_in_words(change, lo, hi, what):
  """'raised capability error by 0.3 points (95% CI -1.9 to +2.4)' for a capped − uncapped error
  change (positive = capping added error); 'lowered …' when it is negative, the interval then
  of the amount lowered. Never a negative amount."""
  if pd.isna(change):
    return f"left {what} not estimable"
  if change == 0:
    return f"left {what} unchanged"
  if change > 0:
    verb, lo, hi, size = "raised", lo, hi, change
  else:
    verb, lo, hi, size = "lowered", -hi, -lo, -change
  ci = "" if pd.isna(lo) else f" (95% CI {points(lo)} to {points(hi)})"
  return f"{verb} {what} by {100 * size:.1f} points{ci}"


def recovery_in_words(row):
  """The error recovered of a capping_table row, signs explicit: 'lowered reliability error in the
  warm cells by 1.2 points (…), 80% of the warm − cold gap' or, when capping made error worse,
  'raised reliability error in the warm cells by 1.9 points (…), widening the warm − cold gap'."""
  text = change_in_words(
    -row.error_recovered,
    -row.error_recovered_ci_high,
    -row.error_recovered_ci_low,
    "reliability error in the warm cells",
  )
  if pd.notna(row.recovery_share) and row.error_recovered > 0:
    text += f", {row.recovery_share:.0%} of the warm − cold gap"
  elif pd.notna(row.recovery_share) and row.error_recovered < 0:
    text += f", widening the warm − cold gap by {-row.recovery_share:.0%}"
  return text


def tradeoff_in_words(row):
  """Error recovered, capability and safety lost of a capping_table row, in words."""
  return "; ".join(
    [
      recovery_in_words(row),
      change_in_words(
        row.capability_lost,
        row.capability_lost_ci_low,
        row.capability_lost_ci_high,
        "capability error",
      ),
      change_in_words(
        row.safety_lost, row.safety_lost_ci_low, row.safety_lost_ci_high, "safety_refusal error"
      ),
    ]
  )


def steering_table(items, n_boot, rng):
  """The preventative-steering trade-off per setting, against each steered cell's plain twin."""
  pairs = {k: effects.steered_pairs(items, k) for k in ("error", "mc_error", "warmth")}
  if pairs["error"].empty:
    return pd.DataFrame(columns=COLUMNS)
  everything = lambda p: np.ones(len(p), bool)
  warm = lambda p: p.persona == "warm"
  return _table(pairs, items, everything, warm, n_boot, rng)


def _n_layers_in(label):
  spec = label.rsplit(":L", 1)[1]
  if "-" in spec:
    lo, hi = spec.split("-")
    return int(hi) - int(lo) + 1
  return len(spec.split(","))


def _percentile_in(label):
  return int(label.split("@p")[1].split(":")[0]) if "@p" in label else 0


def choose(table, max_capability_loss):
  """{preset: the chosen row}: most error recovered within the capability and safety budget, in
  the table's first regime (the primary design's) when it holds several.

  Only presets where the sweep tried at least two settings get a choice; where none fits the
  budget, the one with the smallest worst loss is returned, flagged.
  """
  out = {}
  if "regime" in table and table.regime.nunique() > 1:  # defaults come from the primary regime
    table = table[table.regime == table.regime.iloc[0]]
  for preset, g in table.groupby("preset"):
    if g.intervention.nunique() < 2:
      continue
    g = g.assign(
      _layers=g.intervention.map(_n_layers_in),
      _pct=g.intervention.map(_percentile_in),
      _ok=(g.capability_lost.fillna(0.0) <= max_capability_loss)
      & (g.safety_lost.fillna(0.0) <= max_capability_loss),
    )
    if g._ok.any():
      best = (
        g[g._ok]
        .sort_values(["error_recovered", "_layers", "_pct"], ascending=[False, True, True])
        .iloc[0]
      )
    else:  # nothing fits the budget: the least harmful setting, flagged as such
      worst = np.fmax(g.capability_lost.to_numpy(float), g.safety_lost.to_numpy(float))
      best = (
        g.assign(_worst=worst)
        .sort_values(["_worst", "error_recovered"], ascending=[True, False])
        .iloc[0]
      )
    row = {
      k: (None if isinstance(v, float) and np.isnan(v) else v)
      for k, v in best[COLUMNS].to_dict().items()
    }
    row["within_capability_budget"] = bool(best._ok)
    row["recovers_error"] = bool(np.nan_to_num(best.error_recovered) > 0)
    out[preset] = row
  return out


def write(workdir, cap_table, steer_table, max_capability_loss):
  """WORKDIR/persona/{capping,steering}_tradeoff.csv and defaults.json; returns the choices."""
  directory = os.path.join(workdir, "persona")
  for name, table in (("capping", cap_table), ("steering", steer_table)):
    if not table.empty:
      atomic_write(
        os.path.join(directory, f"{name}_tradeoff.csv"),
        lambda t, table=table: table.to_csv(t, index=False),
      )
  choices = {
    "capping": choose(cap_table, max_capability_loss),
    "steering": choose(steer_table, max_capability_loss),
  }
  if choices["capping"] or choices["steering"]:
    record = {
      "chosen": choices,
      "max_capability_loss": max_capability_loss,
      "workdir": os.path.abspath(workdir),
      "code_version": code_version(),
      "date": datetime.date.today().isoformat(),
      "note": "copy into experiments/persona/defaults.py TESTED to make these the default",
    }
    write_json(os.path.join(directory, "defaults.json"), record)
  return choices
