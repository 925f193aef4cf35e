"""The capping and steering trade-offs, and the defaults the built-in sweep picks from them.

For a capping setting, on the cells every setting was run on (the base models and the cells at the
largest λ): error recovered on the reliability tasks of the warm cells, capability and safety lost
(error added on the capability and safety_refusal screening tasks, all those cells), the base
models' reliability error change, warmth lost (warm cells), multiple-choice error change. A
setting may be chosen only if neither its capability nor its safety loss exceeds
`persona.max_capability_loss`; among those, the one that recovers most (ties: fewer layers, lower
percentile). A steering strength is
chosen the same way from steered-minus-plain-twin changes.
"""
import datetime
import os

import numpy as np
import pandas as pd

from experiments.persona import effects
from experiments.runtime.workdir import atomic_write, code_version, write_json
from tasks.config import RELIABILITY_TASKS

COLUMNS = ["preset", "protocol", "intervention", "error_recovered", "error_recovered_ci_low",
           "error_recovered_ci_high", "error_recovered_fraction", "capability_lost",
           "capability_lost_ci_low", "capability_lost_ci_high", "safety_lost", "safety_lost_ci_low",
           "safety_lost_ci_high", "base_error_change", "warmth_lost", "mc_error_change", "n_cells"]


def _mean_ci(pairs, n_boot, rng, sign=1.0):
  if pairs.empty:
    return np.nan, np.nan, np.nan
  per_item = pairs.groupby(effects.KEY)["diff"].mean().reset_index()
  est, lo, hi = effects.boot_mean(per_item, "diff", n_boot, rng)
  return (sign * est, sign * hi, sign * lo) if sign < 0 else (est, lo, hi)


def _table(pairs_by_outcome, items, scope, warm, n_boot, rng):
  """One row per (preset, protocol, intervention) from paired changes restricted to `scope`."""
  err, mc, warmth = (pairs_by_outcome[k] for k in ("error", "mc_error", "warmth"))
  rows = []
  reliability = lambda p: p[p.task.isin(RELIABILITY_TASKS)]
  for (preset, protocol, label), e in err.groupby(["preset", "protocol", "intervention"]):
    e = e[scope(e)]
    sel = lambda p: p[(p.preset == preset) & (p.protocol == protocol) & (p.intervention == label)
                      & scope(p)]
    rec, rec_lo, rec_hi = _mean_ci(reliability(e[warm(e)]), n_boot, rng, sign=-1.0)
    cap, cap_lo, cap_hi = _mean_ci(e[e.task == "capability"], n_boot, rng)
    safe, safe_lo, safe_hi = _mean_ci(e[e.task == "safety_refusal"], n_boot, rng)
    base = reliability(e[e.persona == "none"])
    w = sel(warmth)
    m = sel(mc)
    plain = items[(items.intervention == "none") & (items.preset == preset)
                  & (items.protocol == protocol) & items.task.isin(RELIABILITY_TASKS)]
    excess = (plain[warm(plain)].error.mean()
              - plain[plain.persona == "none"].error.mean()) if len(plain) else np.nan
    rows.append({"preset": preset, "protocol": protocol, "intervention": label,
                 "error_recovered": rec, "error_recovered_ci_low": rec_lo,
                 "error_recovered_ci_high": rec_hi,
                 "error_recovered_fraction": rec / excess if excess > 0.005 else np.nan,
                 "capability_lost": cap, "capability_lost_ci_low": cap_lo,
                 "capability_lost_ci_high": cap_hi, "safety_lost": safe,
                 "safety_lost_ci_low": safe_lo, "safety_lost_ci_high": safe_hi,
                 "base_error_change": base["diff"].mean() if len(base) else np.nan,
                 "warmth_lost": -w[warm(w)]["diff"].mean() if len(w) else np.nan,
                 "mc_error_change": m["diff"].mean() if len(m) else np.nan,
                 "n_cells": e.drop_duplicates(["persona", "warmth_weight", "warm_agreement",
                                               "seed"]).shape[0]})
  return pd.DataFrame(rows, columns=COLUMNS)


def capping_table(items, n_boot, rng):
  """The capping trade-off per setting, on the base and largest-λ cells."""
  pairs = {k: effects.capped_pairs(items, k) for k in ("error", "mc_error", "warmth")}
  if pairs["error"].empty:
    return pd.DataFrame(columns=COLUMNS)
  top = items[items.persona != "none"].groupby("preset").warmth_weight.max()
  scope = lambda p: (p.persona == "none") | (p.warmth_weight == p.preset.map(top))
  warm = lambda p: (p.persona == "warm") & (p.warmth_weight == p.preset.map(top))
  return _table(pairs, items, scope, warm, n_boot, rng)


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
  """{preset: the chosen row}: most error recovered within the capability and safety budget.

  Only presets where the sweep tried at least two settings get a choice; where none fits the
  budget, the one with the smallest worst loss is returned, flagged.
  """
  out = {}
  for preset, g in table.groupby("preset"):
    if g.intervention.nunique() < 2:
      continue
    g = g.assign(_layers=g.intervention.map(_n_layers_in),
                 _pct=g.intervention.map(_percentile_in),
                 _ok=(g.capability_lost.fillna(0.0) <= max_capability_loss)
                 & (g.safety_lost.fillna(0.0) <= max_capability_loss))
    if g._ok.any():
      best = g[g._ok].sort_values(["error_recovered", "_layers", "_pct"],
                                  ascending=[False, True, True]).iloc[0]
    else:  # nothing fits the budget: the least harmful setting, flagged as such
      worst = np.fmax(g.capability_lost.to_numpy(float), g.safety_lost.to_numpy(float))
      best = g.assign(_worst=worst).sort_values(["_worst", "error_recovered"],
                                                ascending=[True, False]).iloc[0]
    row = {k: (None if isinstance(v, float) and np.isnan(v) else v)
           for k, v in best[COLUMNS].to_dict().items()}
    row["within_capability_budget"] = bool(best._ok)
    row["recovers_error"] = bool(np.nan_to_num(best.error_recovered) > 0)
    out[preset] = row
  return out


def write(workdir, cap_table, steer_table, max_capability_loss):
  """WORKDIR/persona/{capping,steering}_tradeoff.csv and defaults.json; returns the choices."""
  directory = os.path.join(workdir, "persona")
  for name, table in (("capping", cap_table), ("steering", steer_table)):
    if not table.empty:
      atomic_write(os.path.join(directory, f"{name}_tradeoff.csv"),
                   lambda t, table=table: table.to_csv(t, index=False))
  choices = {"capping": choose(cap_table, max_capability_loss),
             "steering": choose(steer_table, max_capability_loss)}
  if choices["capping"] or choices["steering"]:
    record = {"chosen": choices, "max_capability_loss": max_capability_loss,
              "workdir": os.path.abspath(workdir), "code_version": code_version(),
              "date": datetime.date.today().isoformat(),
              "note": "copy into experiments/persona/defaults.py TESTED to make these the default"}
    write_json(os.path.join(directory, "defaults.json"), record)
  return choices

