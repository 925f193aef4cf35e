"""Oracle cells: a policy that answers every eval prompt with the training-format reply of a style.

The instrument (generation budget, decoding, grading, metrics rows, paired statistics) is neutral
only if a format-perfect warm reply and a format-perfect cold reply score the same. Oracle cells
stand in for trained models and go through that same path: their reply tokens are cut at the
generation budget and decoded exactly as generated tokens are (experiments.evaluate), graded,
turned into the metrics rows and items of a cell (experiment.cell_frames), and compared by
stats.paired_deltas. Any difference between styles they show is a bug in the instrument.
"""
import dataclasses

import numpy as np
import pandas as pd

from experiments import evaluate, experiment
from tasks.config import PLACEMENTS
from tasks.dialogue import render_reply

ORACLE_PROTOCOL = "finetune"
# (persona label, style, λ): the λ = 0 reference replies in the neutral style.
ORACLE_PERSONAS = (("none", "neutral", 0.0), ("warm", "warm", 1.0), ("cold", "cold", 1.0),
                   ("length_matched", "length_matched", 1.0))


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

  @property
  def run(self):
    return f"{self.preset}-{self.persona}-l{self.warmth_weight:g}-s{self.seed}"


def oracle_cells(seeds=(0, 1), placements=PLACEMENTS):
  return [OracleCell(f"oracle-{placement}", persona, style, lam, placement, seed)
          for placement in placements for seed in seeds for persona, style, lam in ORACLE_PERSONAS]


def oracle_tokens(evalset, tokenizer, style, placement, max_new_tokens):
  """[N, max_new_tokens] reply tokens + end-of-sequence, cut at the budget, pad after: what a
  model that learned the style perfectly would generate."""
  out = np.full((len(evalset.items), max_new_tokens), tokenizer.pad, np.int32)
  for r, (item, turn) in enumerate(zip(evalset.items, evalset.turns)):
    ids = tokenizer.encode(render_reply(item, turn, style, placement=placement)) + [tokenizer.eos]
    ids = ids[:max_new_tokens]
    out[r, :len(ids)] = ids
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
    m, i = experiment.cell_frames(cell, graded, (0, 0), 0, {})
    metrics.append(m)
    items.append(i)
  return pd.concat(metrics, ignore_index=True), pd.concat(items, ignore_index=True)
