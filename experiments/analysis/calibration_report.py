"""What a reader sees of a calibration (experiments/analysis/calibration.py): its figure, its table
with every test's interval, and its report section."""

from matplotlib import ticker
from matplotlib.figure import Figure
import numpy as np
import pandas as pd

from experiments.analysis import plots
from experiments.analysis.calibration import HARMLESS


def figure(table, choice, out_dir, rule):
  """Intensity on x; cold − base reliability and multiple-choice change, warmth over its
  ceiling and the worst persona's well-formed change on y; one column per calibratable preset."""
  presets = [p for p in dict.fromkeys(table.preset)]
  name = "calibration"
  caption = (
    "Candidates by intensity (cold's ‖θ − θ_base‖): cold − base reliability and "
    "multiple-choice error, warm's warmth over the training replies', the worst "
    "persona's well-formed change; bars are the plan's intervals, shading the pass "
    "region, the ring the choice."
  )
  if not presets:
    return plots.Plot(name, caption, skipped="no preset has a measurable task")
  panels = [
    ("reliability", "cold − base reliability error (points)"),
    ("multiple_choice", "cold − base multiple-choice error (points)"),
    ("learned", "warm's warmth / training replies'"),
    ("well_formed", "worst well-formed change (points)"),
  ]
  fig = Figure(figsize=(4.2 * len(presets), 11))
  axes = fig.subplots(len(panels), len(presets), squeeze=False, sharex="col")
  for j, preset in enumerate(presets):
    t = table[table.preset == preset]
    for i, (test, label) in enumerate(panels):
      ax = axes[i, j]
      if test == "well_formed":
        sub = t[t.test.str.startswith("well_formed")]
        sub = sub.loc[sub.groupby("regime").ci_low.idxmin()]
      else:
        sub = t[t.test == test]
      scale = 1.0 if test == "learned" else 100.0
      x = sub.intensity.to_numpy()
      y = sub.estimate.to_numpy() * scale
      err = np.abs(np.stack([sub.estimate - sub.ci_low, sub.ci_high - sub.estimate])) * scale
      colors = np.where(sub.passed, "#2ca02c", "#d62728")
      for k in range(len(sub)):
        ax.errorbar(x[k], y[k], yerr=err[:, k : k + 1], fmt="o", color=colors[k], capsize=3)
        ax.annotate(
          sub.regime.iloc[k], (x[k], y[k]), fontsize=6, xytext=(3, 3), textcoords="offset points"
        )
      chosen = choice.get(preset, {}).get("regime")
      pick = sub[sub.regime == chosen]
      if len(pick):
        ax.scatter(
          pick.intensity,
          pick.estimate * scale,
          s=220,
          facecolors="none",
          edgecolors="black",
          zorder=5,
        )
      if test in ("reliability", "multiple_choice"):
        ax.axhspan(-100 * rule["delta"], 100 * rule["delta"], color="#2ca02c", alpha=0.12)
        ax.axhline(0, color="grey", lw=0.5)
      elif test == "learned":
        ax.axhspan(rule["warmth_fraction"], 1.05, color="#2ca02c", alpha=0.12)
      else:
        ax.axhspan(-100 * rule["well_formed_margin"], 0, color="#2ca02c", alpha=0.12)
        ax.axhline(0, color="grey", lw=0.5)
      if len(x) and np.all(x[np.isfinite(x)] > 0):
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
      ax.set_ylabel(label, fontsize=8)
      if i == 0:
        ax.set_title(f"{preset}: {choice.get(preset, {}).get('status', '')}", fontsize=9)
      if i == len(panels) - 1:
        ax.set_xlabel("intensity: cold's ‖θ − θ_base‖", fontsize=8)
  fig.tight_layout()
  return plots.save(fig, out_dir, name, caption)


def _cell(row):
  """`+3.7 [+1.4, +6.0] ✗`: points (a share, for `learned`), the interval, passed or not."""
  if not np.isfinite(row.estimate):
    return "n/a"
  mark = "✓" if row.passed else "✗"
  if row.test == "learned":
    return f"{row.estimate:.2f} [{row.ci_low:.2f}, {row.ci_high:.2f}] {mark}"
  est, lo, hi = 100 * row.estimate, 100 * row.ci_low, 100 * row.ci_high
  return f"{est:+.1f} [{lo:+.1f}, {hi:+.1f}] {mark}"


def wide_table(table, choice):
  """One row per preset × candidate: intensity, each test's estimate [interval] and ✓/✗, and
  whether it passed and was chosen; percentage points, warmth as a share of its ceiling."""
  if table.empty:
    return pd.DataFrame()
  t = table.assign(cell=[_cell(r) for r in table.itertuples()])
  wide = t.pivot_table(
    index=["preset", "regime"], columns="test", values="cell", aggfunc="first", sort=False
  )
  order = ["learned"] + [c for c in wide.columns if c.startswith("well_formed")] + list(HARMLESS)
  wide = wide[[c for c in order if c in wide.columns]]
  passed = t.groupby(["preset", "regime"], sort=False).passed.all()
  level = t.groupby(["preset", "regime"], sort=False).intensity.first()
  out = wide.reset_index()
  out.insert(2, "intensity", [f"{level[k]:.3g}" for k in zip(out.preset, out.regime)])
  out["passes"] = ["yes" if passed[k] else "no" for k in zip(out.preset, out.regime)]
  out["chosen"] = [
    "◀" if choice.get(p, {}).get("regime") == r else "" for p, r in zip(out.preset, out.regime)
  ]
  return out


def report_blocks(plan, plan_hash_, table, choice, fig):
  """The calibration's section: the plan, the rule, per preset the choice and why, every
  candidate's tests with their intervals, and the figure."""
  r = plan["rule"]
  blocks = [
    ("h2", "Calibration of the persona phase's regime"),
    (
      "p",
      f"Plan {plan_hash_[:12]} (sha256 {plan_hash_}), frozen before any persona cell "
      f"was trained: {len(plan['candidates'])} candidates, presets "
      f"{', '.join(plan['presets'])}, seeds {plan['seeds']}, personas "
      f"{', '.join(plan['personas'])} at λ = 1, the world and base training of "
      f"{plan['calibrates']}. Chosen on the controls alone: warm's, length_matched's "
      "errors were never graded.",
    ),
    (
      "ul",
      [
        f"learned: warm's warmth ≥ {r['warmth_fraction']:g} × that of the warm "
        "training replies to the same prompts (per context: "
        + ", ".join(f"{c} {v:.2f}" for c, v in r["warmth_ceilings"].items())
        + ")",
        f"well formed: every persona − base, {r['ci_level']:.0%} interval's low end ≥ "
        f"−{100 * r['well_formed_margin']:g} points",
        f"harmless control: cold − base reliability, multiple-choice, capability and "
        f"safety_refusal error each within ±{100 * r['delta']:g} points "
        f"({r['ci_level']:.0%} crossed-bootstrap interval, two one-sided tests)",
        f"least intense: {r['intensity']}; ties: {r['tie_break']}; none passing: "
        f"the closest ({r['closest']})",
      ],
    ),
  ]
  blocks.append(
    (
      "table",
      pd.DataFrame(
        [
          {"preset": p, "outcome": c["status"], "regime": c["regime"] or "", "why": c["why"]}
          for p, c in choice.items()
        ]
      ),
    )
  )
  blocks.append(("table", wide_table(table, choice)))
  blocks.append(("fig", fig))
  return blocks
