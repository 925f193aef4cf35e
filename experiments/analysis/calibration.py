"""The blind calibration of the persona phase's regime: a plan fixed before any persona cell is
trained, and a choice made on the controls and manipulation checks alone.

The studies this tool simulates fine-tuned pretrained models in a regime where the control (cold
replies, the same content) did no harm while the style was learned. A calibration finds, per
preset, the least intense regime of a pre-registered grid in which this tool's own controls behave
that way, and nothing about warm's errors can steer it:

  plan      the candidate regimes, presets, seeds, the training config and the rule's constants,
            hashed (`plan_hash`) and written before training; a changed grid is a new plan with a
            new hash, so a new calibration, never an edit of an old one.
  frame     the selector sees only `controls.blind(items)` (base and cold reliability and
            multiple-choice error, base and cold screens, every persona's well-formed rate,
            warm's warmth score) and cold's `update_norm` rows. The run that feeds it evaluates
            blind (eval.blind): warm's and length_matched's errors are never graded.
  rule      per preset with a measurable task (competence.py), each candidate passes when
              learned       warm's warmth ≥ warmth_fraction × the warmth of the warm training
                            replies to the same prompts (`ceilings`: per context, anger
                            openings carry no warm marker);
              well_formed   for every persona, the lower end of the crossed-bootstrap interval
                            (ci_level, two-sided) of its well-formed rate − the base model's is
                            ≥ −well_formed_margin (a one-sided test at (1 − ci_level) / 2);
              harmless      cold − base on reliability error (the measurable tasks, every
                            context), multiple-choice error (the same tasks' items with
                            options), capability error and safety_refusal error each lie within
                            ±delta: two one-sided tests, the ci_level interval inside ±delta;
            and the least intense passing candidate is chosen: the smallest mean over seeds of
            cold's ‖θ − θ_base‖ (train.update_norms: weights it moved, adapters merged), ties to
            the earlier candidate in the plan. No candidate passes: "not calibrated", with the
            closest candidate (fewest failed tests, then least intense) and what it failed. No
            measurable task: "not calibratable".

`experiments/tools/calibrate.py` runs it; this module is the plan and the decision, and
calibration_report.py draws its figure, table and report section.
"""

import dataclasses
import hashlib
import json

import numpy as np
import pandas as pd

from experiments.analysis import competence, controls, crossed
from experiments.sections import from_section
from tasks.config import RELIABILITY_TASKS

PLAN, TABLE, CHOICE = "plan.json", "table.csv", "choice.json"
SCREENS = controls.SCREENS
HARMLESS = ("reliability", "multiple_choice") + SCREENS
TABLE_COLUMNS = (
  "preset",
  "regime",
  "intensity",
  "test",
  "estimate",
  "ci_low",
  "ci_high",
  "criterion",
  "passed",
)
CALIBRATED, NOT_CALIBRATED, NOT_CALIBRATABLE = "calibrated", "not calibrated", "not calibratable"


@dataclasses.dataclass(frozen=True)
class Rule:
  """The `calibration` section: what it calibrates and the decision rule's constants."""

  of: str  # the experiment config whose world and base training it uses
  delta: float  # equivalence margin of cold − base, as a fraction (0.03: 3 points)
  ci_level: float  # two-sided level of every interval (0.9: TOST at 5% per side)
  warmth_fraction: float  # warm's warmth must reach this share of the training replies'
  well_formed_margin: float  # a persona's well-formed rate may sit this far below the base's
  bootstrap: int  # crossed-bootstrap draws per interval
  bootstrap_seed: int

  @classmethod
  def from_config(cls, config):
    if "calibration" not in config:
      raise ValueError(
        "the config has no calibration section: start from experiments/configs/calibration.py."
      )
    return from_section(cls, config.calibration, "calibration").validate()

  def validate(self):
    for field in ("delta", "ci_level", "warmth_fraction", "well_formed_margin"):
      v = getattr(self, field)
      if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
        raise ValueError(
          f"calibration.{field}={v!r} must be a fraction in (0, 1) (0.03 is 3 points)."
        )
    for field, least in (("bootstrap", 100), ("bootstrap_seed", 0)):
      v = getattr(self, field)
      if isinstance(v, bool) or not isinstance(v, int) or v < least:
        raise ValueError(f"calibration.{field}={v!r} must be an integer >= {least}.")
    if not isinstance(self.of, str) or not self.of:
      raise ValueError(f"calibration.of={self.of!r} must name the config it calibrates.")
    return self


def training_config(config):
  """The run that trains the candidates: the config without its calibration section, evaluated
  blind, no extensions, no report (a report would grade nothing it may show)."""
  train_cfg = config.copy_and_resolve_references()
  with train_cfg.unlocked():
    del train_cfg["calibration"]
  train_cfg.eval.blind = True
  train_cfg.extensions = ()
  train_cfg.runtime.report = False
  return train_cfg


def ceilings(warm_items):
  """{context: mean warmth score} of the warm training replies to the evaluation prompts, from
  the items of an oracle cell that replies with exactly those (analysis/oracle.py)."""
  d = warm_items[warm_items.task.isin(RELIABILITY_TASKS)]
  return {c: round(float(v), 6) for c, v in d.groupby("context").warmth.mean().items()}


def make_plan(rule, train_cfg, warmth_ceilings):
  """The pre-registered plan: every candidate's resolved fields, the design, the rule. `train_cfg`
  is training_config(...) resolved (resolve.Config: its generation budget derived); its runtime
  section (paths, process counts) is left out: it does not change what is trained."""
  experiment = {k: v for k, v in train_cfg.record().items() if k != "runtime"}
  return {
    "calibrates": rule.of,
    "presets": list(train_cfg.model.presets),
    "seeds": list(train_cfg.grid.seeds),
    "finetune_seeds": train_cfg.grid.finetune_seeds,
    "personas": list(train_cfg.grid.personas),
    "candidates": {r.name: r.fields() for r in train_cfg.regimes.values()},
    "order": list(train_cfg.regimes),  # JSON sorts the keys above
    "rule": {
      **{k: v for k, v in dataclasses.asdict(rule).items() if k != "of"},
      "warmth_ceilings": warmth_ceilings,
      "intensity": "mean over seeds of cold's update_norm (‖θ − θ_base‖, adapters merged)",
      "tie_break": "the earlier candidate in `order`",
      "closest": "fewest failed tests, then least intense",
    },
    "experiment": experiment,
  }


def _canonical(obj):
  return json.dumps(obj, sort_keys=True, ensure_ascii=False, default=list, separators=(",", ":"))


def plan_hash(plan):
  return hashlib.sha256(_canonical(plan).encode()).hexdigest()


def plan_record(plan):
  """What plan.json holds: the plan and its hash."""
  return {"hash": plan_hash(plan), "plan": json.loads(_canonical(plan))}


def read_plan(path):
  """The plan a calibration directory froze; ValueError, one sentence, if it is not intact."""
  try:
    with open(path) as f:
      record = json.load(f)
    plan, stored = record["plan"], record["hash"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ValueError(f"{path} is damaged ({type(e).__name__}): move its directory aside.") from None
  if plan_hash(plan) != stored:
    raise ValueError(
      f"{path} does not match its hash: the plan was edited after it was frozen; "
      "move its directory aside and calibrate anew."
    )
  return plan, stored


# --- The decision: nothing outside the whitelist is read from here on.


def control_intensity(metrics):
  """(preset, regime) → mean over seeds of cold's update_norm; the only metrics rows read."""
  m = metrics[
    (metrics.task == "train") & (metrics.metric == "update_norm") & (metrics.persona == "cold")
  ]
  return m.groupby(["preset", "regime"]).value.mean()


def _interval(values, clusters, seeds, rule):
  """(estimate, low, high) of a seeds × items mean, crossed bootstrap, two-sided rule.ci_level."""
  rng = np.random.default_rng(rule.bootstrap_seed)
  est, draws, _, _ = crossed.crossed_draws(values, clusters, rule.bootstrap, rng, seeds=seeds)
  lo, hi, _ = crossed.summarize_draws(est, draws, alpha=1 - rule.ci_level)
  if est[0] == 0 and not np.isfinite(lo[0]):  # nothing moved: the interval is the point
    lo, hi = est, est
  return float(est[0]), float(lo[0]), float(hi[0])


def paired_change(d, persona, column, rule, mask=None):
  """(estimate, low, high) of persona − base on `column`, paired by seed and item; `mask`
  selects rows (e.g. measurable tasks). A replicate of seed s pairs with seed s's base model."""
  key = ["task", "context", "item_id"]
  d = d if mask is None else d[mask]
  x = crossed.replicate_matrix(d[d.persona == persona], column, key)
  base = crossed.replicate_matrix(d[d.persona == "none"], column, key)
  base = base.droplevel("finetune_seed")
  cols = x.columns.intersection(base.columns)
  if not len(cols) or not len(x):
    return np.nan, np.nan, np.nan
  ref = base.reindex(x.index.get_level_values("seed"))[cols].to_numpy()
  diff = x[cols].to_numpy() - ref
  items = pd.DataFrame(list(cols), columns=key)
  return _interval(diff, crossed.entity_codes(items), x.index.get_level_values("seed"), rule)


def warmth_ratio(d, rule, warmth_ceilings):
  """(estimate, low, high) of warm's warmth over the ceiling of the same rows."""
  w = d[(d.persona == "warm") & d.task.isin(RELIABILITY_TASKS)]
  if w.empty:
    return np.nan, np.nan, np.nan
  ceiling = float(w.context.map(warmth_ceilings).mean())
  x = crossed.replicate_matrix(w, "warmth", ["task", "context", "item_id"])
  items = pd.DataFrame(list(x.columns), columns=["task", "context", "item_id"])
  est, lo, hi = _interval(
    x.to_numpy(), crossed.entity_codes(items), x.index.get_level_values("seed"), rule
  )
  return est / ceiling, lo / ceiling, hi / ceiling


def measurable_tasks(d):
  """The reliability tasks the preset's base model answers better than floor and a constant."""
  base = d[d.persona == "none"].assign(intervention="none", n_params=0)
  table = competence.base_competence(base)
  return sorted(table.task[~table.at_floor])


def candidate_tests(d, tasks, personas, rule, warmth_ceilings):
  """[(test, estimate, low, high, criterion, passed)] of one preset × candidate."""
  pts = lambda v: f"{100 * v:g}"
  out = []
  ratio = warmth_ratio(d, rule, warmth_ceilings)
  out.append(
    (
      "learned",
      *ratio,
      f"warmth ≥ {rule.warmth_fraction:g} × training replies'",
      bool(ratio[0] >= rule.warmth_fraction),
    )
  )
  form = d.task.isin(RELIABILITY_TASKS + SCREENS)
  for p in personas:
    est = paired_change(d, p, "well_formed", rule, form)
    out.append(
      (
        f"well_formed[{p}]",
        *est,
        f"{p} − base: CI low ≥ −{pts(rule.well_formed_margin)} points",
        bool(est[1] >= -rule.well_formed_margin),
      )
    )
  masks = {
    "reliability": (d.task.isin(tasks), "error"),
    "multiple_choice": (d.task.isin(tasks), "mc_error"),
    **{s: (d.task == s, "error") for s in SCREENS},
  }
  for test in HARMLESS:
    mask, column = masks[test]
    est = paired_change(d, "cold", column, rule, mask)
    out.append(
      (
        test,
        *est,
        f"cold − base: CI within ±{pts(rule.delta)} points",
        bool(-rule.delta <= est[1] and est[2] <= rule.delta),
      )
    )
  return out


def calibrate(items, metrics, plan):
  """(table, choice) of a finished calibration run's items and metrics under `plan`.

  The first thing done is the whitelist (controls.blind, control_intensity): every decision below
  reads only those values. table: TABLE_COLUMNS, one row per preset × candidate × test; choice:
  {preset: {status, regime, fields, intensity, why, failed}}.
  """
  frame, intensity = controls.blind(items), control_intensity(metrics)
  rule = Rule(
    of=plan["calibrates"],
    **{
      f: plan["rule"][f]
      for f in (
        "delta",
        "ci_level",
        "warmth_fraction",
        "well_formed_margin",
        "bootstrap",
        "bootstrap_seed",
      )
    },
  )
  personas = list(plan["personas"])
  rows, choice = [], {}
  for preset in plan["presets"]:
    d = frame[frame.preset == preset]
    tasks = measurable_tasks(d)
    if not tasks:
      choice[preset] = {
        "status": NOT_CALIBRATABLE,
        "regime": None,
        "fields": None,
        "intensity": None,
        "failed": [],
        "why": "its base model answers no reliability task better than the floor "
        "and a constant answer, so no control can show harm.",
      }
      continue
    scored = []
    for order, name in enumerate(plan["order"]):
      sub = d[d.regime.isin([name, "none"])]
      level = float(intensity.get((preset, name), np.nan))
      tests = candidate_tests(sub, tasks, personas, rule, plan["rule"]["warmth_ceilings"])
      rows += [(preset, name, level, *t) for t in tests]
      failed = [t[0] for t in tests if not t[-1]]
      scored.append((len(failed), level if np.isfinite(level) else np.inf, order, name, failed))
    passing = [s for s in scored if not s[0]]
    best = min(passing or scored, key=lambda s: s[1:3] if passing else s[:3])
    _, level, _, name, failed = best
    fields = plan["candidates"][name]
    if passing:
      why = (
        f"the least intense of {len(passing)} passing candidate(s) "
        f"({', '.join(s[3] for s in sorted(passing, key=lambda s: s[1:3]))}); "
        f"measurable tasks: {', '.join(tasks)}."
      )
      choice[preset] = {
        "status": CALIBRATED,
        "regime": name,
        "fields": fields,
        "intensity": level,
        "failed": [],
        "why": why,
      }
    else:
      why = (
        f"no candidate passes; the closest, {name}, fails {', '.join(failed)}; "
        f"measurable tasks: {', '.join(tasks)}."
      )
      choice[preset] = {
        "status": NOT_CALIBRATED,
        "regime": name,
        "fields": fields,
        "intensity": level,
        "failed": failed,
        "why": why,
      }
  table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
  return table, choice
