"""Report sections on what a study could measure: base competence, power, mechanisms.

Each section appends ('h2'/'p'/'table'/...) blocks to `doc` and plain sentences to `summary`, as
the rest of experiments/analysis/report.py does, and is a no-op without the rows it needs.
"""

import numpy as np
import pandas as pd

from experiments.analysis import competence, mechanism, power
from experiments.analysis import regime_comparison as rc
from experiments.regimes import label as regime_label

CONTEXTS = ["neutral", "emotional", "false_belief", "emotional+false_belief", "all contexts"]


def pts(x):
  return "n/a" if pd.isna(x) else f"{100 * x:.1f}"


def with_nonembedding(items, metrics):
  """items whose n_params is each preset's non-embedding count (what scaling plots use)."""
  if "n_params_nonembed" not in metrics or metrics.n_params_nonembed.isna().all():
    return items
  size = metrics.dropna(subset=["n_params_nonembed"]).groupby("preset").n_params_nonembed.first()
  return items.assign(n_params=items.preset.map(size).fillna(items.n_params))


def competence_section(items, doc, summary):
  """Per preset, the base model's held-out error per reliability task (neutral), floors and
  constant-answer levels flagged."""
  table = competence.base_competence(items)
  if table.empty:
    return
  note = np.select(
    [table.error >= competence.FLOOR, table.at_chance],
    ["at floor: no effect measurable", "at chance: no effect measurable"],
    "",
  )
  doc += [
    ("h2", "Base-model competence (held-out items, neutral context)"),
    (
      "p",
      "Error of the base model before any persona phase, generated reply and multiple "
      "choice, beside the error of always giving the task's most common held-out "
      f"answer. A task at floor (error ≥ {100 * competence.FLOOR:.0f}%) or at chance "
      "(error at or above that constant answer's) cannot show an effect of warmth on "
      "what the model knows: it is flagged, and pooled contrasts and the primary family "
      "leave it out for that preset.",
    ),
    (
      "table",
      pd.DataFrame(
        {
          "preset": table.preset,
          "task": table.task,
          "error %": table.error.map(pts),
          "MC error %": table.get("mc_error", pd.Series(index=table.index)).map(pts),
          "constant answer %": table.chance.map(pts),
          "items": table.n_items,
          "note": note,
        }
      ),
    ),
  ]
  floor = table[table.at_floor]
  if len(floor):
    summary.append(
      "No effect measurable (base-model error ≥ "
      f"{100 * competence.FLOOR:.0f}%, or no better than a constant answer), left "
      "out of pooled contrasts: "
      + ", ".join(
        f"{r.task} ({r.preset}, {pts(r.error)}%"
        + (f" vs {pts(r.chance)}% constant" if r.at_chance else "")
        + ")"
        for r in floor.itertuples()
      )
      + "."
    )


def power_section(deltas, items, n_boot, doc, summary):
  """Half-width and minimum detectable effect of every primary contrast, and of warm − cold
  pooled over reliability tasks per context and preset."""
  prim = power.with_power(deltas[deltas.test_family == "primary"])
  pooled = power.pooled_by_context(items, n_boot)
  if prim.empty and pooled.empty:
    return
  doc += [
    ("h2", "Power: interval half-widths and minimum detectable effects"),
    (
      "p",
      "Half-width of the 95% interval and the minimum detectable effect (MDE) at 80% "
      "power (two-sided, α = 0.05, from the crossed-design standard error), in points. "
      "A null is read as 'no effect' only where the MDE is at most "
      f"{100 * power.MATTERS:.0f} points.",
    ),
  ]
  if len(pooled):
    rank = {c: i for i, c in enumerate(CONTEXTS)}
    pooled = pooled.sort_values(
      ["n_params", "context"],
      key=lambda s: s.map(rank) if s.name == "context" else s,
      kind="stable",
    )
    doc += [
      ("h3", "Warm − cold at the largest λ, pooled over measurable reliability tasks"),
      (
        "table",
        pd.DataFrame(
          {
            "preset": pooled.preset,
            "context": pooled.context,
            "Δ [95% CI]": [
              mechanism.change_text(e, a, b)
              for e, a, b in zip(pooled.estimate, pooled.ci_low, pooled.ci_high)
            ],
            "half-width": pooled.half_width.map(pts),
            "MDE": pooled.mde.map(pts),
            "items": pooled.n_items,
            "seeds": pooled.n_seeds,
          }
        ),
      ),
    ]
  _projection(items, doc, summary)
  if len(prim):
    doc += [
      ("h3", "Primary family"),
      (
        "table",
        prim[["preset", "comparison", "task", "context", "n_items", "n_seeds"]].assign(
          **{"half-width": prim.half_width.map(pts), "MDE": prim.mde.map(pts)}
        ),
      ),
    ]
  # Contrasts on tasks a preset's base model cannot answer say nothing about warmth: left out.
  measured = competence.measurable(items, prim.dropna(subset=["half_width"]))
  if len(measured):
    worst = measured.loc[measured.half_width.idxmax()]
    summary.append(
      f"Power: across the {len(measured)} estimable primary contrasts on measurable "
      "tasks the 95% interval half-width was "
      f"{pts(measured.half_width.min())}–{pts(measured.half_width.max())} points "
      f"(widest: {worst.task} × {worst.context}, {worst.preset}) and the minimum "
      f"detectable effect at 80% power {pts(measured.mde.min())}–"
      f"{pts(measured.mde.max())} points."
    )


def _projection(items, doc, summary):
  """What a larger design would give, from this run's variance components."""
  seeds, factors = (5, 10, 20), (1, 2)
  pooled = power.projected_half_widths(items, seeds, factors)
  per_task = power.projected_half_widths(items, seeds, factors, by_task=True)
  if pooled.empty or pooled.n_seeds.min() < 2:
    return
  names = {"half_width": "measured"}
  names.update({power.hw_column(n, k): f"{n} seeds, {k}× items" for n in seeds for k in factors})
  points = lambda t: t[list(names)].map(pts).rename(columns=names)
  rank = {c: i for i, c in enumerate(CONTEXTS)}
  pooled = pooled.sort_values(
    ["n_params", "context"], key=lambda s: s.map(rank) if s.name == "context" else s, kind="stable"
  )
  widest = per_task.groupby(["n_params", "preset"])[list(names)].max().reset_index()
  finetune = int(pooled.n_finetune_seeds.max())
  doc += [
    ("h3", "Projected half-widths of larger designs"),
    (
      "p",
      "From this run's variance components (base seed, fine-tuning seed within it, item "
      "cluster, item, residual), the 95% half-width of warm − cold at the largest λ a "
      "balanced design with more base seeds (each with this run's "
      f"{finetune} fine-tuning seed{'s' if finetune > 1 else ''}) or more held-out items "
      "per task × context would give, in points: a planning figure that assumes the "
      "larger study's components equal these. Targets: "
      f"±{100 * power.POOLED_TARGET:.0f} pooled, ±{100 * power.TASK_TARGET:.0f} per "
      "measurable task × context.",
    ),
    (
      "table",
      pd.concat([pooled[["preset", "context"]], points(pooled)], axis=1).reset_index(drop=True),
    ),
    ("p", "The widest measurable task × context of each preset:"),
    ("table", pd.concat([widest[["preset"]], points(widest)], axis=1)),
  ]
  _variance_sources(pooled.reset_index(drop=True), doc, summary)
  for preset, pooled_p in pooled.groupby("preset", sort=False):
    summary.append(
      _power_verdict(preset, pooled_p, per_task[per_task.preset == preset], seeds, factors)
    )


def _power_verdict(preset, pooled, per_task, seeds, factors):
  """One sentence per preset: the power targets met, or the smallest projected design that meets
  them, or none up to the largest one projected."""
  targets = (
    f"(±{100 * power.POOLED_TARGET:.0f} pooled, ±{100 * power.TASK_TARGET:.0f} per "
    "measurable task × context)"
  )
  if (pooled.half_width <= power.POOLED_TARGET).all() and (
    per_task.half_width <= power.TASK_TARGET
  ).all():
    return (
      f"Power targets {targets} met at {preset}: widest pooled half-width "
      f"±{100 * pooled.half_width.max():.1f}, widest task × context "
      f"±{100 * per_task.half_width.max():.1f} points."
    )
  design = power.smallest_design(pooled, per_task, seeds, factors)
  if design:
    return (
      f"Power targets {targets} are not met at {preset} by this run's "
      f"{int(pooled.n_seeds.min())} seeds; at its variance components they would be with "
      f"{design[0]} seeds and {design[1]}× the items."
    )
  return (
    f"Power targets {targets} are not met at {preset}, nor by any projected design up to "
    f"{seeds[-1]} seeds and {factors[-1]}× the items."
  )


def _variance_sources(pooled, doc, summary):
  """Where the pooled warm − cold variance comes from, base seeds and fine-tuning seeds apart,
  and which of the two to add next (power.next_replicate, one trained model costing 1)."""
  share = lambda col: pooled[col].map(lambda v: "n/a" if pd.isna(v) else f"{100 * v:.0f}%")
  # With one fine-tuning seed per base seed their variance is inside the base seeds' share.
  split = pooled.n_finetune_seeds > 1
  text = (
    "Share of the variance of warm − cold (pooled, largest λ) from each source, and the "
    "half-width in points with one more base seed (a base model and its persona cells) or "
    "one more fine-tuning seed per base seed (persona cells only); 'add next' is the one "
    "that narrows the interval more per added trained model."
  )
  if not split.all():
    text += (
      " With one fine-tuning seed per base seed the two cannot be told apart: the base "
      "seeds' share holds both, and more fine-tuning seeds are credited only with the "
      "residual they average out, which undervalues them."
    )
  doc += [
    ("p", text),
    (
      "table",
      pd.DataFrame(
        {
          "preset": pooled.preset,
          "context": pooled.context,
          "base seeds": share("share_seed"),
          "fine-tuning seeds": share("share_finetune").where(split, "in base seeds"),
          "items": share("share_items"),
          "residual": share("share_residual"),
          "half-width": pooled.half_width.map(pts),
          "+1 base seed": pooled.hw_next_seed.map(pts),
          "+1 fine-tuning seed each": pooled.hw_next_finetune.map(pts),
          "add next": pooled["add"],
        }
      ),
    ),
  ]
  for preset, d in pooled[split].groupby("preset", sort=False):
    counts = d["add"].value_counts()
    summary.append(
      f"Per added trained model, the pooled warm − cold intervals of {preset} narrow "
      "most with "
      + " and ".join(f"another {add} in {n} of {len(d)} contexts" for add, n in counts.items())
      + f" ({int(d.n_seeds.min())} base seeds with {int(d.n_finetune_seeds.max())} "
      "fine-tuning seeds each now)."
    )


def mechanism_section(items, metrics, n_boot, doc, summary, figs, staging):
  """The decomposition of warm − cold per preset and context, and its scaling figure."""
  table = mechanism.decomposition(with_nonembedding(items, metrics), n_boot)
  if table.empty:
    return
  doc += [
    ("h2", "Mechanisms: what carries the warm − cold change"),
    (
      "p",
      "At each preset's largest λ, measurable reliability tasks pooled, error-rate "
      "change in points [95% crossed-bootstrap CI]. total = warm words + length; "
      "position: warm phrasing after − before the answer; agreement: change per unit ρ "
      "of validating replies. n/a: the grid has no cells for that part.",
    ),
    ("table", mechanism.wide(table, CONTEXTS)),
  ]
  figs.append(mechanism.scaling_figure(table, staging))
  pooled = table[table.context == "all contexts"]
  for preset, d in pooled.groupby("preset", sort=False):
    parts = [
      f"{r.part} {mechanism.change_text(r.estimate, r.ci_low, r.ci_high)}" for r in d.itertuples()
    ]
    summary.append(
      f"Mechanisms ({preset}, pooled over contexts, points): " + "; ".join(parts) + "."
    )


def _labelled(table, config):
  regimes_table = ((config or {}).get("grid") or {}).get("regimes")
  return [regime_label(regimes_table, r, p) for r, p in zip(table.regime, table.preset)]


def regimes_section(items, metrics, config, n_boot, doc, summary, figs, staging):
  """The answer per persona-phase regime side by side (analysis/regime_comparison.py): warm −
  cold per context, the decomposition, knows versus says, and the regime diagram; a no-op for a
  workdir of one regime."""
  if len(rc.regimes_of(items, config)) < 2:
    return
  items = with_nonembedding(items, metrics)
  answer = rc.answer_table(items, n_boot, config)
  if answer.empty:
    return
  answer = answer.assign(
    cell=[
      f"{mechanism.change_text(r.estimate, r.ci_low, r.ci_high)} (MDE {pts(r.mde)})"
      for r in answer.itertuples()
    ],
    regime=_labelled(answer, config),
  )
  wide = answer.pivot_table(
    index=["n_params", "preset", "regime"],
    columns="context",
    values="cell",
    aggfunc="first",
    sort=False,
  )
  wide = (
    wide[[c for c in CONTEXTS if c in wide.columns]]
    .reset_index()
    .sort_values("n_params", kind="stable")
    .drop(columns="n_params")
    .fillna("n/a")
  )
  decomposition = rc.decomposition_table(items, n_boot, config)
  pooled = decomposition[decomposition.context == "all contexts"]
  parts = (
    mechanism.wide(
      pooled.assign(
        preset=pooled.preset + " · " + pd.Series(_labelled(pooled, config), pooled.index)
      ),
      ["all contexts"],
    )
    .drop(columns="context")
    .rename(columns={"preset": "preset · regime"})
  )
  amplification = rc.amplification_table(items, n_boot, config)
  knows = rc.knows_vs_says(items, n_boot, config)
  diagram = rc.diagram_table(items, metrics, n_boot, config)
  doc += [
    ("h2", "The answer per regime, side by side"),
    (
      "p",
      "Each regime's cells against the base models every regime shares, never against "
      "another regime's. A regime is labelled with how its setting was chosen for the "
      "preset (the blind calibration: calibrated, or not calibrated with the closest "
      "candidate and the tests it failed). Warm − cold at the largest λ, measurable "
      "reliability tasks pooled, error-rate change in points [95% CI] (minimum "
      "detectable effect at 80% power).",
    ),
    ("table", wide),
    ("h3", "What carries warm − cold, per regime (all contexts pooled)"),
    ("table", parts),
  ]
  if len(amplification):
    doc += [
      ("h3", "Amplification by context, per regime"),
      (
        "p",
        "Warm − cold under each context against its neutral size, on the same items "
        "(measurable reliability tasks, largest λ): the excess in points and the ratio, "
        "95% crossed-bootstrap intervals.",
      ),
      ("table", _amplification_table(amplification, config)),
    ]
  if len(knows):
    doc += [
      ("h3", "Knows versus says"),
      (
        "p",
        "On the measurable reliability items that have options: error of the generated "
        "reply and of the multiple-choice pass (each model scored in the style it "
        "writes), and each persona's change against its base model split item by item "
        "into knowledge lost (the multiple-choice change) and expression (the rest: "
        "the model still picks the right option but does not say it), points [95% CI].",
      ),
      ("table", _knows_table(knows, config)),
    ]
  drawn = rc.diagram_figure(diagram, staging, ((config or {}).get("grid") or {}).get("regimes"))
  if not drawn.skipped:
    figs.append(drawn)
  for preset, g in answer[answer.context == "all contexts"].groupby("preset", sort=False):
    summary.append(
      f"Warm − cold by regime ({preset}, all contexts, points): "
      + "; ".join(f"{r.regime} {r.cell}" for r in g.itertuples())
      + "."
    )
  for (preset, regime), g in amplification.groupby(["preset", "regime"], sort=False):
    summary.append(
      f"Amplification ({preset}, {regime}): warm − cold beyond its neutral size, "
      + "; ".join(
        f"{r.context} {mechanism.change_text(r.excess, r.excess_ci_low, r.excess_ci_high)}"
        for r in g.itertuples()
      )
      + " points."
    )
  warm = knows[knows.persona == "warm"]
  for r in warm.itertuples():
    summary.append(
      f"Knows versus says ({r.preset}, {r.regime}): warm's reliability error changed by "
      f"{mechanism.change_text(r.total, r.total_ci_low, r.total_ci_high)} points against the "
      f"base model, knowledge {mechanism.change_text(r.knowledge, r.knowledge_ci_low, r.knowledge_ci_high)}"
      f", expression {mechanism.change_text(r.expression, r.expression_ci_low, r.expression_ci_high)}."
    )


def _amplification_table(amp, config):
  amp = amp.assign(regime=_labelled(amp, config))
  return pd.DataFrame(
    {
      "preset": amp.preset,
      "regime": amp.regime,
      "context": amp.context,
      "neutral": amp.neutral_effect.map(pts),
      "in context": amp.context_effect.map(pts),
      "excess [95% CI]": [
        mechanism.change_text(*v) for v in zip(amp.excess, amp.excess_ci_low, amp.excess_ci_high)
      ],
      "ratio [95% CI]": [
        f"{r:.2f} [{a:.2f} to {b:.2f}]"
        for r, a, b in zip(amp.ratio, amp.ratio_ci_low, amp.ratio_ci_high)
      ],
    }
  )


def _knows_table(knows, config):
  text = lambda r, k: (
    ""
    if r.persona == "none"
    else mechanism.change_text(getattr(r, k), getattr(r, f"{k}_ci_low"), getattr(r, f"{k}_ci_high"))
  )
  return pd.DataFrame(
    {
      "preset": knows.preset,
      "regime": _labelled(knows, config),
      "persona": knows.persona,
      "error %": knows.error.map(pts),
      "MC error %": knows.mc_error.map(pts),
      "change vs base": [text(r, "total") for r in knows.itertuples()],
      "knowledge (MC)": [text(r, "knowledge") for r in knows.itertuples()],
      "expression": [text(r, "expression") for r in knows.itertuples()],
      "items": knows.n_items,
      "seeds": knows.n_seeds,
    }
  )
