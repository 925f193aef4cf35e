"""The persona extension's report section: the capping trade-off, as the run printed it.

The table is tradeoff.capping_table's, with the run's own bootstrap draws, so the report and the
console (and persona/capping_tradeoff.csv) show the same numbers.
"""

import pandas as pd

from experiments.analysis import plots
from experiments.persona import tradeoff


def _est_ci(df, col):
  """'+1.2 [-0.2 to +2.9]' from the columns col, col_ci_low, col_ci_high; 'n/a' without one."""
  text = lambda v: "n/a" if pd.isna(v) else tradeoff.points(v)
  return pd.Series(
    [
      text(e) if pd.isna(e) or pd.isna(a) else f"{text(e)} [{text(a)} to {text(b)}]"
      for e, a, b in zip(df[col], df[f"{col}_ci_low"], df[f"{col}_ci_high"])
    ],
    index=df.index,
    dtype=object,
  )


def capping_section(items, metrics, n_boot, doc, summary, figs, staging):
  """The capping trade-off: tradeoff.capping_table's rows, the numbers the run printed."""
  if items is None:
    table = pd.DataFrame(columns=tradeoff.COLUMNS)
    if metrics.intervention.astype(str).str.startswith("cap").any():
      doc.append(
        ("p", "items.csv is absent, so the capping trade-off (paired per item) is skipped.")
      )
  else:
    table = tradeoff.capping_table(items, n_boot, metrics=metrics)
  if len(table):
    table = table.sort_values(["n_params", "protocol", "regime", "intervention"])
    cols = (
      ["preset"]
      + (["protocol"] if table.protocol.nunique() > 1 else [])
      + (["regime"] if table.regime.nunique() > 1 else [])
    )
    doc += [
      ("h3", "Activation capping trade-off (warm cells at the largest λ)"),
      (
        "p",
        "Error recovered = uncapped − capped reliability error in the warm cells at "
        "the largest λ: positive means capping lowered error, negative that it made "
        "error worse. Capability / safety lost = capped − uncapped error on the "
        "capability / safety_refusal checks (base and largest-λ cells); positive means "
        "capping added error. Paired per item, 95% crossed-bootstrap CIs: the numbers "
        "of the run's console table and persona/capping_tradeoff.csv.",
      ),
      (
        "table",
        table.assign(
          **{
            "λ": table.warmth_weight.map("{:g}".format),
            "error recovered, pts": _est_ci(table, "error_recovered"),
            "share of warm − cold gap": table.recovery_share.map(
              lambda v: "n/a" if pd.isna(v) else f"{v:.0%}"
            ),
            "capability lost, pts": _est_ci(table, "capability_lost"),
            "safety lost, pts": _est_ci(table, "safety_lost"),
            "prompts clamped": table.clamped_share.map(
              lambda v: "n/a" if pd.isna(v) else f"{v:.1%}"
            ),
          }
        )[
          cols
          + [
            "λ",
            "intervention",
            "error recovered, pts",
            "share of warm − cold gap",
            "capability lost, pts",
            "safety lost, pts",
            "prompts clamped",
            "n_seeds",
          ]
        ],
      ),
    ]
    for r in table[table.n_params == table.n_params.max()].itertuples():
      binds = (
        ""
        if pd.isna(r.clamped_share)
        else f"; it clamped {r.clamped_share:.1%} of (prompt, capped layer) pairs where the "
        "reply starts"
      )
      regime = f", regime {r.regime}" if table.regime.nunique() > 1 else ""
      summary.append(
        f"{r.intervention} (preset {r.preset}{regime}, λ = {r.warmth_weight:g}) "
        f"{tradeoff.tradeoff_in_words(r)}{binds}."
      )
  figs.append(plots.capping_tradeoff(table, staging))
