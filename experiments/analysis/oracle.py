"""Oracle cells: a policy that answers every eval prompt with the training-format reply of a style.

The instrument (generation budget, decoding, grading, metrics rows, paired statistics) is neutral
only if a format-perfect warm reply and a format-perfect cold reply score the same. Oracle cells
stand in for trained models and go through that same path: their reply tokens are cut at the
generation budget and decoded exactly as generated tokens are (experiments.evaluate), graded,
turned into the metrics rows and items of a cell (results.cell_frames), and compared by
stats.paired_deltas. Any difference between styles they show is a bug in the instrument.
"""

import dataclasses

import numpy as np
import pandas as pd

from experiments import evaluate
from experiments.runtime import results
from tasks.config import PLACEMENTS
from tasks.dialogue import render_reply

# The styles an oracle writes in (style, warm placement), as the multiple-choice check names them.
ORACLE_STYLES = (
  ("neutral", "before"),
  ("warm", "before"),
  ("warm", "after"),
  ("cold", "before"),
  ("length_matched", "before"),
)
MC_SCORINGS = {
  "in the model's own style (evaluate.mc_pass)": evaluate.MC_STYLES,
  "bare answer after the marker": evaluate.ANSWER_ONLY,
}

ORACLE_PROTOCOL = "finetune"
# (persona label, style, λ): the λ = 0 reference replies in the neutral style.
ORACLE_PERSONAS = (
  ("none", "neutral", 0.0),
  ("warm", "warm", 1.0),
  ("cold", "cold", 1.0),
  ("length_matched", "length_matched", 1.0),
)


@dataclasses.dataclass(frozen=True)
class OracleCell:
  """Stands in for a trained cell; `preset` names the warm placement, e.g. oracle-before."""

  preset: str
  persona: str
  style: str
  warmth_weight: float
  placement: str
  seed: int
  protocol: str = ORACLE_PROTOCOL
  warm_agreement: float = 0.0
  intervention: str = "none"
  regime: str = "default"

  @property
  def id(self):
    return results.cell_id(
      self.preset, self.protocol, self.persona, self.warmth_weight, self.warm_agreement, self.seed
    )


def oracle_cells(seeds=(0, 1), placements=PLACEMENTS):
  return [
    OracleCell(f"oracle-{placement}", persona, style, lam, placement, seed)
    for placement in placements
    for seed in seeds
    for persona, style, lam in ORACLE_PERSONAS
  ]


def oracle_tokens(evalset, tokenizer, style, placement, max_new_tokens):
  """[N, max_new_tokens] reply tokens + end-of-sequence, cut at the budget, pad after: what a
  model that learned the style perfectly would generate."""
  out = np.full((len(evalset.items), max_new_tokens), tokenizer.pad, np.int32)
  for r, (item, turn) in enumerate(zip(evalset.items, evalset.turns)):
    ids = tokenizer.encode(render_reply(item, turn, style, placement=placement)) + [tokenizer.eos]
    ids = ids[:max_new_tokens]
    out[r, : len(ids)] = ids
  return out


def evaluate_oracles(evalset, tokenizer, max_new_tokens, cells=None):
  """(metrics, items) of oracle cells, built exactly as a trained cell's are."""
  cells = oracle_cells() if cells is None else cells
  metrics, items = [], []
  for cell in cells:
    tokens_1NN = oracle_tokens(evalset, tokenizer, cell.style, cell.placement, max_new_tokens)[None]
    replies = evaluate.decode_replies(tokens_1NN, tokenizer)[0]
    # The oracle knows every answer: multiple-choice error 0 where the item has options.
    mc = np.array([0.0 if item.options else np.nan for item in evalset.items])
    graded = evaluate.grade_replies(evalset, replies, mc)
    m, i = results.cell_frames(cell, graded, (0, 0), 0, {})
    metrics.append(m)
    items.append(i)
  return pd.concat(metrics, ignore_index=True), pd.concat(items, ignore_index=True)


def oracle_mc_errors(evalset, tokenizer, style, placement, scoring=evaluate.MC_STYLES):
  """[N] multiple-choice error of an oracle that knows every answer and writes only `style`: at
  each reply position it predicts its own gold reply's token, so a scored sequence loses one
  unit of log-probability per position where it differs (a bare answer that its reply starts
  with differs only at the end). Scored by the pass a trained model's goes through
  (evaluate.mc_pass: the style read from a probe, then every option)."""
  own = [
    tokenizer.encode(render_reply(item, turn, style, placement=placement)) + [tokenizer.eos]
    for item, turn in zip(evalset.items, evalset.turns)
  ]

  def score_rows(members, tokens, mask, target, owners):
    del mask
    scores = np.zeros((len(members), len(tokens)), np.float32)
    for k in range(len(tokens)):
      reply, mine = tokens[k][target[k] > 0].tolist(), own[owners[k]]
      scores[:, k] = -sum(i >= len(mine) or t != mine[i] for i, t in enumerate(reply))
    return scores

  return evaluate.mc_pass(score_rows, evalset, tokenizer, 1, scoring)[0][0]


def mc_table(evalset, tokenizer):
  """Multiple-choice error (%) of each oracle style (columns) under each scoring (rows), over the
  items with options: 0 everywhere for a scoring that favours no style's answer placement."""
  rows = []
  for name, scoring in MC_SCORINGS.items():
    row = {"scoring": name}
    for style, placement in ORACLE_STYLES:
      label = f"{style} ({placement})" if style == "warm" else style
      row[label] = 100 * np.nanmean(oracle_mc_errors(evalset, tokenizer, style, placement, scoring))
    rows.append(row)
  return pd.DataFrame(rows)


def mc_failures(table, scoring=next(iter(MC_SCORINGS))):
  """Sentences naming every style that `scoring` (default: the one in use) marks wrong."""
  used = table[table.scoring == scoring].iloc[0]
  return [
    f"multiple choice: a {c} oracle scores {used[c]:.0f}% error (expected 0)"
    for c in table.columns
    if c != "scoring" and used[c] != 0
  ]


def style_label(preset, persona):
  """Column label of an oracle cell: the style, with the warm placement where it matters."""
  placement = preset.split("-", 1)[1]
  return persona if persona in ("none", "cold") else f"{persona} ({placement})"


def error_table(metrics, tasks):
  """Error rate (%) per task × context (rows) and oracle style (columns), seeds averaged."""
  e = metrics[(metrics.metric == "error_rate") & metrics.task.isin(tasks)]
  e = e.assign(style=[style_label(p, s) for p, s in zip(e.preset, e.persona)])
  table = 100 * e.pivot_table(
    index=["task", "context"], columns="style", values="value", aggfunc="mean"
  )
  return table.drop(columns="none", errors="ignore").rename_axis(columns=None).reset_index()


REFERENCES = {"vs_base": "λ=0 (neutral)", "vs_cold": "cold", "vs_length_matched": "length_matched"}


def comparison_table(deltas):
  """Per oracle preset and comparison: how many differences, the largest |estimate|, and how
  many were estimable or significant (all must be zero for a neutral instrument)."""
  rows = []
  for (preset, persona, comparison), g in deltas.groupby(["preset", "persona", "comparison"]):
    rows.append(
      {
        "warm placement": preset.split("-", 1)[1],
        "comparison": f"{persona} − {REFERENCES[comparison]}",
        "task × context": len(g),
        "max |Δ| (pts)": 100 * g.estimate.abs().max(),
        "estimable": int(g.estimable.sum()),
        "p < 0.05": int((g.p_value < 0.05).sum()),
      }
    )
  return pd.DataFrame(rows)


def failures(errors, deltas, amplification):
  """Sentences naming every way the oracle cells were not scored identically; [] if neutral."""
  out = []
  cols = [c for c in errors.columns if c not in ("task", "context")]
  for row in errors.to_dict("records"):
    for c in cols:
      if row[c] != 0:
        out.append(f"{c}: {row['task']} × {row['context']} error {row[c]:.0f}% (expected 0)")
  for r in deltas[(deltas.estimate != 0) | deltas.estimable].itertuples():
    out.append(
      f"{r.preset} {r.persona} {r.comparison}: {r.task} × {r.context} Δ "
      f"{100 * r.estimate:+.1f} pts (expected exactly 0, not estimable)"
    )
  for r in amplification[amplification.excess != 0].itertuples():
    out.append(
      f"{r.preset} {r.comparison}: amplification under {r.context} "
      f"{100 * r.excess:+.1f} pts (expected 0)"
    )
  return out
