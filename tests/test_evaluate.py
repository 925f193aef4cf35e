"""The multiple-choice scorer and the per-cell summary."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from experiments import evaluate
from experiments.analysis import stats
from experiments.runtime import results
from tasks.config import WorldConfig
from tasks.mixtures import Corpus, build_eval_set


@pytest.fixture(scope="module")
def corpus():
  return Corpus(WorldConfig(n_people=12, n_cities=6, eval_items=3))


def _constructed_scorer(preferred_ids, vocab_size):
  """A stand-in for score_fn whose logits put +8 on the preferred tokens at every position."""
  bias_V = jnp.zeros(vocab_size).at[jnp.asarray(preferred_ids)].set(8.0)

  def score(graphdef, state, tokens_BT, mask_BT, target_mask_BT, intervention=None):
    logp_V = bias_V - jnp.log(jnp.sum(jnp.exp(bias_V)))
    logp_BT = logp_V[tokens_BT[:, 1:]]
    return jnp.sum(logp_BT * target_mask_BT[:, 1:], axis=1) + 0.0 * state

  return score


def test_scorer_prefers_what_the_logits_prefer(corpus, monkeypatch):
  evalset = build_eval_set(corpus)
  rows = [r for r, it in enumerate(evalset.items) if len(it.options) > 1][:40]
  tok = corpus.tokenizer
  checked = 0
  for r in rows:
    if checked == 12:  # each check compiles a scorer of its own: a dozen items make the point
      break
    item = evalset.items[r]
    one = type(evalset)(
      [item], [evalset.turns[r]], evalset.prompts[r : r + 1], evalset.prompt_mask[r : r + 1]
    )
    gold = set(tok.encode(item.answer))
    wrong = set().union(*(tok.encode(item.answer_for(o)) for o in item.options if o != item.gold))
    if not (gold - wrong) or not (wrong - gold):
      continue  # e.g. "1 2 march" vs "2 march": no token belongs to one side only
    if len({len(tok.encode(item.answer_for(o))) for o in item.options}) > 1:
      continue  # a sum of log-probabilities also prefers the shorter answer: not this test
    state_E = jnp.zeros((1,))
    monkeypatch.setattr(evaluate, "score_fn", _constructed_scorer(sorted(gold - wrong), tok.size))
    assert evaluate.mc_errors(None, state_E, one, tok, 8)[0, 0] == 0.0, item.item_id
    monkeypatch.setattr(evaluate, "score_fn", _constructed_scorer(sorted(wrong - gold), tok.size))
    assert evaluate.mc_errors(None, state_E, one, tok, 8)[0, 0] == 1.0, item.item_id
    checked += 1
  assert checked == 12


def test_summary_rows_match_items():
  items = pd.DataFrame(
    {
      "task": ["capability"] * 4,
      "context": ["neutral"] * 4,
      "error": [1, 0, 0, 0],
      "mc_error": [np.nan, 1, 0, 0],
      "warmth": [0.5] * 4,
      **{b: [0, 1, 0, 0] for b in evaluate.BEHAVIOURS},
    }
  )
  rows = {r["metric"]: r for r in results.metric_rows(items)}
  assert rows["error_rate"]["value"] == 0.25 and rows["error_rate"]["n"] == 4
  assert rows["mc_error_rate"]["n"] == 3
  assert rows["pass_rate"]["value"] == 0.75


def test_two_identical_cells_are_not_estimable_rather_than_a_precise_zero():
  rng = np.random.default_rng(0)
  base = pd.DataFrame(
    {
      "item_id": np.tile(np.arange(30), 2),
      "seed": np.repeat([0, 1], 30),
      "task": "factual_qa",
      "context": "neutral",
      "preset": "nano",
      "n_params": 1,
      "protocol": "finetune",
      "regime": "default",
      "warm_agreement": 0.0,
      "intervention": "none",
      "error": rng.integers(0, 2, 60),
    }
  )
  cells = [
    base.assign(persona="warm", warmth_weight=0.0),
    base.assign(persona="warm", warmth_weight=1.0),
    base.assign(persona="cold", warmth_weight=1.0),
  ]
  deltas = stats.paired_deltas(pd.concat(cells), n_boot=500)
  assert len(deltas) >= 2
  assert (deltas.estimate == 0).all() and not deltas.estimable.any()
  assert deltas.ci_low.isna().all() and deltas.p_value.isna().all()


def test_generation_reports_progress_with_an_eta(eval_pack, caplog):
  import logging  # pylint: disable=g-import-not-at-top

  corpus, evalset, graphdef, state_E = eval_pack
  caplog.set_level(logging.INFO, logger="absl")
  evaluate.generate_replies(graphdef, state_E, evalset, corpus.tokenizer, 4, 8)
  n_batches = -(-len(evalset.items) // 8)
  lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("eval replies")]
  assert lines and lines[-1].startswith(
    f"eval replies of 2 model(s), {len(evalset.items)} prompts: {n_batches}/{n_batches} batches"
  )
  assert all("ETA" in line for line in lines) and lines[-1].endswith("ETA 0s")
  assert len(lines) <= 11  # about ten lines per pass, however many batches


def test_length_buckets_cover_every_row_once_and_trim_only_padding():
  lengths = np.array([5, 40, 7, 33, 18, 2, 46, 9])
  batches = evaluate.buckets(lengths, 3)
  rows = np.concatenate([r for r, _ in batches])
  assert sorted(rows) == list(range(8))
  for r, width in batches:
    assert lengths[r].max() <= width <= max(lengths)  # no real token is cut
    assert width % evaluate.BUCKET == 0 or width == max(lengths)
  # Sorted by length, the short prompts share a narrow batch.
  assert batches[0][1] == 16 and set(batches[0][0]) == {5, 0, 2}


def test_graded_rows_carry_each_items_gold_answer(corpus):
  """items.csv keeps the gold answer, which the report needs for the constant-answer level."""
  evalset = build_eval_set(corpus)
  rows = evaluate.grade_replies(
    evalset, ["yes ."] * len(evalset.items), np.zeros(len(evalset.items))
  )
  assert list(rows.gold) == [item.gold for item in evalset.items]
  rows = rows[rows.task == "medical_contraindication"]
  assert set(rows.gold) == {"yes", "no"}
  assert (rows.error == (rows.gold == "no")).all()  # "yes" errs exactly where the gold is "no"


def test_a_blind_evaluation_grades_errors_of_the_controls_only(eval_pack, monkeypatch):
  """eval.blind: member 1 (a non-control persona) keeps warmth and form only, and its
  multiple-choice pass never runs; member 0 is graded in full, exactly as without blinding."""
  import ml_collections  # pylint: disable=g-import-not-at-top

  corpus, evalset, graphdef, state_E = eval_pack
  cfg = ml_collections.ConfigDict({"max_new_tokens": 4, "batch_size": 8})
  full = evaluate.evaluate_pack(graphdef, state_E, evalset, corpus.tokenizer, cfg)
  scored = []
  real = evaluate.mc_errors
  monkeypatch.setattr(
    evaluate,
    "mc_errors",
    lambda g, s, *a: scored.append(np.asarray(jax.tree.leaves(s)[0]).shape[0]) or real(g, s, *a),
  )
  blind = evaluate.evaluate_pack(
    graphdef, state_E, evalset, corpus.tokenizer, cfg, graded=[True, False]
  )
  assert scored == [1]  # one member's options scored, not two
  pd.testing.assert_frame_equal(blind[0], full[0])
  hidden = [
    c
    for c in full[1]
    if c not in ("task", "context", "emotion", "item_id", "gold") + evaluate.BLIND_KEEPS
  ]
  assert all(((blind[1][c] == "") | blind[1][c].isna()).all() for c in hidden)
  pd.testing.assert_frame_equal(
    blind[1][list(evaluate.BLIND_KEEPS)], full[1][list(evaluate.BLIND_KEEPS)]
  )
  rows = results.metric_rows(blind[1])
  assert {r["metric"] for r in rows} == {"warmth_score", "well_formed_rate"}


def test_each_member_is_scored_in_the_style_it_writes(corpus):
  # Member e's scorer rewards the tokens of style e's opening, whatever the option: the pass must
  # read each member's own style from the probe, then score every option in it.
  evalset = build_eval_set(corpus)
  tok = corpus.tokenizer
  marks = {}
  for s, (style, placement) in enumerate(evaluate.MC_STYLES):
    item, turn = next(
      (i, t)
      for i, t in zip(evalset.items, evalset.turns)
      if i.options and t.context == "neutral" and t.role in (None, 0)
    )
    marks[s] = set(tok.encode(evaluate.render_reply(item, turn, style, placement=placement)))
  wanted = [2, 0, 1]  # cold, neutral, warm

  def score_rows(members, tokens, mask, target, owners):
    del mask, owners
    out = np.zeros((len(members), len(tokens)), np.float32)
    for m, e in enumerate(members):
      mine = marks[wanted[e]] - set().union(*(marks[s] for s in marks if s != wanted[e]))
      out[m] = [np.isin(row[t > 0], list(mine)).sum() for row, t in zip(tokens, target)]
    return out

  errors, style_E = evaluate.mc_pass(score_rows, evalset, tok, 3)
  assert style_E.tolist() == wanted
  assert errors.shape == (3, len(evalset.items))
  has = np.array([len(i.options) > 0 for i in evalset.items])
  assert np.isnan(errors[:, ~has]).all() and not np.isnan(errors[:, has]).any()
