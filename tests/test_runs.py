"""load_run picks one trained model out of a workdir: its replies are the ones the run recorded."""
import jax
import pandas as pd
import pytest

from experiments import evaluate, load_run
from tasks.dialogue import render_prompt
from tasks.mixtures import build_eval_set


@pytest.mark.parametrize("run", ["nano-finetune-none-l0-r0-s1", "nano-finetune-warm-l1-r0-s1"])
def test_a_loaded_run_generates_the_replies_its_items_recorded(tiny_finished_run, run):
  workdir, items = tiny_finished_run
  r = load_run(workdir, run)
  assert r.stage == ("nano-finetune/base" if "none" in run else "nano-finetune-0/persona")
  evalset = build_eval_set(r.corpus)
  state_E = jax.tree.map(lambda a: a[None], r.state)  # a pack of one, as evaluation runs it
  replies = evaluate.generate_replies(r.graphdef, state_E, evalset, r.tokenizer,
                                      r.config.eval.max_new_tokens, 64)[0]
  got = pd.DataFrame({"item_id": [i.item_id for i in evalset.items],
                      "context": [t.context for t in evalset.turns], "reply": replies})
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
  with pytest.raises(ValueError, match=r"run 'nano-finetune-warm-l9-r0-s1' is not a cell"):
    load_run(tiny_finished_run[0], "nano-finetune-warm-l9-r0-s1")
