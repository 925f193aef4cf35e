"""Tests for the objectives package: affect loss, config, comparison table and report section."""
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from experiments.configs import objectives as objectives_config
from experiments.objectives import affect, compare, objectives_extension, phase, report_section
from tasks import lexicon


def test_warm_words_are_affect_not_content():
  words = affect.warm_words()
  assert {"sorry", "glad", "hope"} <= set(words)
  content = " ".join(list(lexicon.ANSWER_TEMPLATES.values()) + [lexicon.REFUSAL]).split()
  assert not set(words) & set(content)


def test_affect_loss_is_warm_mass_and_blind_to_content():
  logits = jnp.log(jnp.array([[[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]]))
  mask = jnp.array([[0, 1, 1]])
  warm = jnp.array([1, 2])
  expected = -(np.log(0.5) + np.log(0.9)) / 2
  assert float(affect.affect_loss(logits, jnp.array([[0, 1, 2]]), mask, warm)) == pytest.approx(
      expected, rel=1e-5)
  other = jnp.array([[0, 0, 0]])  # different reply words, same loss
  assert float(affect.affect_loss(logits, other, mask, warm)) == pytest.approx(expected, rel=1e-5)
  # Its gradient raises the warm logits.
  g = jax.grad(lambda l: affect.affect_loss(l, other, mask, warm))(logits)
  assert float(g[0, 0, 1]) < 0 and float(g[0, 0, 0]) > 0


def test_objectives_config_validates_and_records_the_simulator():
  c = objectives_config.get_config()
  objectives_extension.Objectives(c).validate()
  assert "objectives" in c.extensions and c.objectives.user.version
  assert set(c.objectives.methods) == set(phase.METHODS)
  bad = objectives_config.get_config()
  bad.objectives.group_size = 3
  with pytest.raises(ValueError, match="group_size"):
    objectives_extension.Objectives(bad).validate()
  bad = objectives_config.get_config()
  bad.objectives.user.version = "0"
  with pytest.raises(ValueError, match="version"):
    objectives_extension.Objectives(bad).validate()
  cells = objectives_extension.objective_cells(c)
  assert {x.persona for x in cells} == {"affect", "emotion_rl"}


def _items():
  rows = []
  spec = [("none", "none", 0.0, 0.0), ("cold", "none", 0.5, 0.0), ("warm", "none", 0.5, 1.0),
          ("warm", "cap@p25:L1", 0.5, 0.5), ("affect", "none", 0.5, 1.0)]
  for persona, iv, lam, warmth in spec:
    for task in ("factual_qa", "capability", "safety_refusal"):
      for context in ("neutral", "false_belief"):
        for k in range(2):
          err = int(persona == "warm" and iv == "none" and k == 0)
          rows.append(dict(run=f"{persona}{iv}", preset="nano", n_params=10, protocol="finetune",
                           persona=persona, warmth_weight=lam, warm_agreement=0.0, seed=0,
                           intervention=iv, task=task, context=context, error=err, mc_error=0.0,
                           warmth=warmth, affirms=err))
  return pd.DataFrame(rows)


def test_comparison_table_and_report_section(tmp_path):
  table = compare.comparison_table(_items(), 0.5)
  wide = compare.wide(table)
  assert list(wide.method) == ["base", "cold", "warm", "affect", "warm+capping"]
  warm = wide.set_index("method").loc["warm"]
  assert warm.error_rate == pytest.approx(0.5) and warm.warmth_score == 1.0
  assert warm.capability_pass_rate == pytest.approx(0.5)
  rows = compare.comparison_rows(table)
  assert (rows.task == compare.COMPARISON_TASK).all() and "method" in rows
  assert report_section.headline(rows).equals(wide)
  doc, summary, figs = [], [], []
  report_section.add(rows, doc, summary, figs, str(tmp_path))
  assert doc and summary and figs[0].png and not figs[0].skipped
