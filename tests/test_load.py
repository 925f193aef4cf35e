"""load.py: load_cell picks one trained cell out of a workdir; its replies are the ones the run
recorded."""

import os
import types

from flax import nnx
import jax
import numpy as np
import orbax.checkpoint as ocp
import pandas as pd
import pytest

from experiments import evaluate, load_cell
from experiments.runtime import checkpoints
from tasks.dialogue import render_prompt
from tasks.mixtures import build_eval_set

STAGES = {
  "nano-finetune-none-l0-r0-s1": "nano-finetune/base",
  "nano-finetune-warm-l1-r0-s1": "nano-finetune-0/persona",
  "nano-finetune@lora-warm-l1-r0-s1": "nano-finetune@lora-0/persona",
}


@pytest.mark.parametrize("run", list(STAGES))
def test_a_loaded_run_generates_the_replies_its_items_recorded(tiny_finished_run, run):
  workdir, items = tiny_finished_run
  r = load_cell(workdir, run)
  assert r.stage == STAGES[run]
  assert r.model_config.lora_rank == (4 if "@lora" in run else 0)
  evalset = build_eval_set(r.corpus)
  state_E = jax.tree.map(lambda a: a[None], r.state)  # a pack of one, as evaluation runs it
  replies = evaluate.generate_replies(
    r.graphdef, state_E, evalset, r.tokenizer, r.config.eval.max_new_tokens, 64
  )[0]
  got = pd.DataFrame(
    {
      "item_id": [i.item_id for i in evalset.items],
      "context": [t.context for t in evalset.turns],
      "reply": replies,
    }
  )
  rec = items[(items.run == run) & (items.intervention == "none")]
  merged = rec.merge(got, on=["item_id", "context"], suffixes=("", "_loaded"))
  assert len(merged) == len(rec) > 0
  assert (merged.reply.fillna("") == merged.reply_loaded).all()
  item_id, context, prompt = r.eval_prompts()[0]  # one prompt on its own, unpadded
  assert (item_id, context) == (evalset.items[0].item_id, evalset.turns[0].context)
  assert prompt == render_prompt(evalset.items[0], evalset.turns[0])
  assert r.reply(prompt) == replies[0]
  assert r.model_config.vocab_size == r.tokenizer.size
  out = r.model(r.encode(prompt), return_residuals=True)
  t = 1 + len(prompt.split())
  assert out.residuals_LBTD.shape == (r.model_config.n_layers, 1, t, r.model_config.d_model)


def test_an_unknown_run_is_one_sentence(tiny_finished_run):
  with pytest.raises(ValueError, match=r"'nano-finetune-warm-l9-r0-s1' is not a cell"):
    load_cell(tiny_finished_run[0], "nano-finetune-warm-l9-r0-s1")


def test_lora_cells_keep_their_base_model_and_share_it_with_every_regime(tiny_finished_run):
  workdir, items = tiny_finished_run
  base = load_cell(workdir, "nano-finetune-none-l0-r0-s1")
  root = os.path.join(workdir, "checkpoints")
  stages = sorted(
    f"{pack}/{stage}" for pack in os.listdir(root) for stage in os.listdir(os.path.join(root, pack))
  )
  # One base stage, which the lora pack restored: both regimes fine-tuned the same base models.
  assert stages == [
    "nano-finetune-0/persona",
    "nano-finetune/base",
    "nano-finetune@cont-0/persona",
    "nano-finetune@lora-0/persona",
  ]
  for run in ("nano-finetune@lora-warm-l1-r0-s1", "nano-finetune@lora-cold-l1-r0-s1"):
    adapted = load_cell(workdir, run).state
    adapters, frozen = nnx.split_state(adapted, nnx.LoRAParam, ...)
    for (path, a), (_, b) in zip(nnx.to_flat_state(frozen), nnx.to_flat_state(base.state)):
      np.testing.assert_array_equal(a[...], b[...], err_msg=f"{run} {path}")
    moved = [
      path
      for path, b in nnx.to_flat_state(adapters)
      if path[-1] == "lora_b" and np.abs(b[...]).max() > 0
    ]
    assert len(moved) == 2 * 6, run  # every adapted projection of both layers learned
  full = load_cell(workdir, "nano-finetune-warm-l1-r0-s1").state
  assert any(
    not np.array_equal(a[...], b[...])
    for (_, a), (_, b) in zip(nnx.to_flat_state(full), nnx.to_flat_state(base.state))
  )
  regimes = items.drop_duplicates("run").set_index("run").regime
  assert regimes["nano-finetune-none-l0-r0-s1"] == "none"
  assert regimes["nano-finetune-warm-l1-r0-s1"] == "default"
  assert regimes["nano-finetune@lora-cold-l1-r0-s1"] == "lora"


def test_a_continued_optimizer_counts_on_from_base_training(tiny_finished_run):
  workdir, _ = tiny_finished_run
  path = os.path.join(workdir, "checkpoints", "nano-finetune@cont-0", "persona")
  with checkpoints.StageCheckpoints(
    types.SimpleNamespace(path=workdir), "nano-finetune@cont-0/persona", cleanup=False
  ) as ckpt:
    step, meta = ckpt.latest()
  assert meta["complete"] and step == meta["steps"] > 0
  leaves = ocp.StandardCheckpointer().restore(os.path.join(path, str(step), "opt_state"))
  adam_count, schedule_count = np.asarray(leaves[0]), np.asarray(leaves[-1])
  assert adam_count.tolist() == [20 + step] * 2  # Adam's bias correction goes on from base
  assert schedule_count.tolist() == [step] * 2  # the persona schedule started at its own 0
  fresh = os.path.join(workdir, "checkpoints", "nano-finetune-0", "persona")
  first = ocp.StandardCheckpointer().restore(os.path.join(fresh, "6", "opt_state"))[0]
  assert np.asarray(first).tolist() == [6] * 2
