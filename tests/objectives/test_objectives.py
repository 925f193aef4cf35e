"""Tests for the objectives package: affect loss, config, comparison table and report section."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from experiments import resolve
from experiments.analysis import plots
from experiments.configs import objectives as objectives_config
from experiments.objectives import (
  affect,
  compare,
  grpo,
  objectives_extension,
  phase,
  report_section,
  rl_progress,
)
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
    expected, rel=1e-5
  )
  other = jnp.array([[0, 0, 0]])  # different reply words, same loss
  assert float(affect.affect_loss(logits, other, mask, warm)) == pytest.approx(expected, rel=1e-5)
  # Its gradient raises the warm logits.
  g = jax.grad(lambda l: affect.affect_loss(l, other, mask, warm))(logits)
  assert float(g[0, 0, 1]) < 0 and float(g[0, 0, 0]) > 0


def test_objectives_config_validates_and_records_the_simulator():
  c = objectives_config.get_config()
  cfg = resolve.resolve(c)
  assert "objectives" in c.extensions and c.objectives.user.version
  assert set(c.objectives.methods) == set(phase.METHODS)
  bad = objectives_config.get_config()
  bad.objectives.group_size = 3
  with pytest.raises(ValueError, match="group_size"):
    resolve.resolve(bad)
  bad = objectives_config.get_config()
  bad.objectives.user.version = "0"
  with pytest.raises(ValueError, match="version"):
    resolve.resolve(bad)
  cells = objectives_extension.objective_cells(cfg)
  assert {x.persona for x in cells} == {"affect", "emotion_rl", "emotion_rl_heard"}


def _items(seeds=(0, 1, 2)):
  """Every method at λ = 0.5 on 3 seeds × 2 tasks × 2 contexts × 6 items; warm gets item k = 0
  and 1 of factual_qa wrong on every seed, affect item 0 only, everything else is right."""
  rows = []
  spec = [
    ("none", "none", 0.0, 0.0),
    ("cold", "none", 0.5, 0.0),
    ("warm", "none", 0.5, 1.0),
    ("warm", "cap@p25:L1", 0.5, 0.5),
    ("affect", "none", 0.5, 1.0),
  ]
  for seed in seeds:
    for persona, iv, lam, warmth in spec:
      for task in ("factual_qa", "capability", "safety_refusal"):
        for context in ("neutral", "false_belief"):
          for k in range(6):
            wrong = {"warm": 2, "affect": 1}.get(persona, 0) if iv == "none" else 0
            err = int(task == "factual_qa" and k < wrong)
            rows.append(
              dict(
                run=f"{persona}{iv}{seed}",
                preset="nano",
                n_params=10,
                protocol="finetune",
                regime="default",
                persona=persona,
                warmth_weight=lam,
                warm_agreement=0.0,
                seed=seed,
                intervention=iv,
                task=task,
                context=context,
                item_id=f"{task}/p{k}/x",
                error=err,
                mc_error=0.0,
                warmth=warmth,
                affirms=err,
                acknowledges=0,
                well_formed=1,
              )
            )
  return pd.DataFrame(rows)


def test_comparison_table_pairs_each_method_with_warm_and_base(tmp_path):
  table = compare.comparison_table(_items(), 0.5, n_boot=200)
  level = table[(table.vs == "") & (table.outcome == "error_rate")].set_index("method")
  # factual_qa is the only reliability task here: warm misses 2 of 6 items in both contexts.
  assert level.estimate["warm"] == pytest.approx(2 / 6)
  assert level.estimate["affect"] == pytest.approx(1 / 6)
  assert level.estimate["base"] == 0.0 and level.n_seeds["warm"] == 3
  vs_warm = table[(table.vs == "warm") & (table.outcome == "error_rate")].set_index("method")
  assert vs_warm.estimate["affect"] == pytest.approx(-1 / 6)
  assert vs_warm.ci_low["affect"] <= -1 / 6 <= vs_warm.ci_high["affect"]
  assert "warm" not in vs_warm.index  # never paired with itself
  vs_base = table[(table.vs == "base") & (table.outcome == "error_rate")].set_index("method")
  assert vs_base.estimate["warm"] == pytest.approx(2 / 6)
  assert vs_base.estimate["warm+capping"] == 0.0  # capping fixed both items here
  assert "ack_rate" not in set(table.outcome)  # no emotional context here: no row, not a NaN
  per_context = table[table.outcome == "error_rate[false_belief]"]
  assert set(per_context.method) == {"base", "cold", "warm", "affect", "warm+capping"}
  rows = compare.comparison_rows(table, 0.5)
  assert (rows.task == compare.COMPARISON_TASK).all()
  assert {"cmp:error_rate", "cmp:error_rate:vs_warm", "cmp:error_rate:vs_base"} <= set(rows.metric)
  back = compare.from_rows(rows)
  assert np.allclose(back.estimate, table.estimate, equal_nan=True) and (back.vs == table.vs).all()
  wide = compare.wide(back)
  assert list(wide.method) == ["base", "cold", "warm", "affect", "warm+capping"]
  assert wide.set_index("method").error_rate["warm"].startswith("33.3 [")
  doc, summary, figs = [], [], []
  drawn = {}
  save = plots.save
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(plots, "save", lambda fig, *a: drawn.setdefault("fig", fig) and save(fig, *a))
    report_section.add(rows, doc, summary, figs, str(tmp_path))
  assert doc and summary and figs[0].png and not figs[0].skipped
  assert any(kind == "h3" and "Paired against warm" in text for kind, text in doc)
  ax = drawn["fig"].axes[0]
  assert ax.get_xlabel().startswith("warmth score") and "error" in ax.get_ylabel()
  assert "_" not in ax.get_xlabel() + ax.get_ylabel()
  # One point per method, each with interval bars (errorbar containers), labelled in the legend.
  assert len(ax.containers) == 5 and {t.get_text() for t in ax.get_legend().get_texts()} == {
    "base",
    "cold",
    "warm",
    "affect",
    "warm+capping",
  }


def test_rl_progress_gives_the_rise_of_the_acknowledgement_rate_with_an_interval():
  steps = np.repeat(np.arange(10), 20)
  ack = np.where(steps < 2, np.arange(200) % 4 == 0, np.arange(200) % 4 != 0).astype(int)
  episodes = pd.DataFrame(
    {
      "preset": "nano",
      "method": "emotion_rl",
      "run": "r0",
      "step": steps,
      "acknowledges": ack,
      "reward": ack.astype(float),
    }
  )
  prog = rl_progress.table(episodes).set_index("run")
  assert prog.ack_first["r0"] == pytest.approx(0.25) and prog.ack_last["r0"] == pytest.approx(0.75)
  assert (
    prog.ack_rise["r0"] == pytest.approx(0.5) and 0 < prog.ci_low["r0"] < 0.5 < prog.ci_high["r0"]
  )
  assert prog.episodes["r0"] == 80  # the first and the last fifth: 2 steps of 20 each
  rows = rl_progress.rows(prog.reset_index())
  rise = rows[rows.metric == "rl_ack_rate_rise"]
  assert set(rise.run) == {"r0", "cmp-nano-emotion_rl"} and rise.ci_low.notna().all()
  flat = episodes.assign(acknowledges=1)
  p = rl_progress.table(flat).set_index("run")
  assert p.ack_rise["r0"] == 0 and p.ci_low["r0"] < 0 < p.ci_high["r0"]


def test_affect_kl_is_zero_at_the_reference_and_positive_away_from_it():
  ref = jnp.log(jnp.array([[[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]]))
  mask = jnp.array([[1, 1]])
  assert float(grpo.exact_kl(ref, ref, mask)) == pytest.approx(0.0, abs=1e-7)
  moved = jnp.log(jnp.array([[[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]]]))
  expected = (0.2 * np.log(0.2 / 0.5) + 0.3 * 0 + 0.5 * np.log(0.5 / 0.2)) / 2
  assert float(grpo.exact_kl(moved, ref, mask)) == pytest.approx(expected, rel=1e-5)
  assert float(grpo.exact_kl(moved, ref, jnp.array([[0, 1]]))) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize(
  "field,value,words",
  [
    (
      "rl_start",
      "warm",
      "rl_start='warm' is not allowed: choose one of base, warmup, mixed_warmup",
    ),
    (
      "rl_warmup_steps",
      300,
      "rl_warmup_steps=300 must lie strictly between 0 and train.persona_steps=300",
    ),
    ("affect_kl_beta", -1.0, "affect_kl_beta=-1.0 must be >= 0"),
    ("rl_learning_rate", -1e-3, "rl_learning_rate=-0.001 must be >= 0"),
  ],
)
def test_objectives_config_refuses_bad_rl_settings(field, value, words):
  bad = objectives_config.get_config()
  bad.objectives[field] = value
  with pytest.raises(ValueError, match=re.escape(words)):
    resolve.resolve(bad)


def test_rl_generation_budget_leaves_room_for_every_reply_to_an_episode_prompt():
  """A budget under the longest warm reply would score, and train on, cut replies."""
  from experiments.objectives import rollout
  from tasks import budget
  from tasks.world import World

  c = objectives_config.get_config()
  cfg = resolve.resolve(c)
  ext = cfg.extensions[-1]
  world = World(cfg.world)
  turns = rollout.user_turns(world, ext.user)
  longest = budget.longest_reply(world, turns)
  assert cfg.section("objectives").max_new_tokens == longest + budget.MARGIN
  assert cfg.record()["objectives"]["max_new_tokens"] == longest + budget.MARGIN
  assert c.objectives.max_new_tokens == 0  # as asked: the config itself is never written to
  # The belief check is a user turn too, and every opening is emotional.
  contexts = {t.context for _, t in turns}
  assert "neutral" in contexts and contexts - {"neutral"} <= {"emotional", "emotional+false_belief"}
  # Warm replies are the long ones: the budget covers them, and a shorter one is refused.
  warm = max(len(budget.render_reply(i, t, "warm").split()) + 1 for i, t in turns)
  assert warm <= longest
  short = objectives_config.get_config()
  short.objectives.max_new_tokens = longest - 1
  with pytest.raises(
    ValueError,
    match=re.escape(f"objectives.max_new_tokens={longest - 1} is shorter than the longest reply"),
  ):
    resolve.resolve(short)
  exact = objectives_config.get_config()
  exact.objectives.max_new_tokens = longest
  assert resolve.resolve(exact).section("objectives").max_new_tokens == longest


def test_each_regime_gets_its_own_comparison_beside_the_shared_base_models():
  # `forgetting`: the same cells, but warm misses every factual_qa item; the base models (regime
  # none) serve both regimes and must be the reference of each.
  gentle = _items()
  gentle = gentle.assign(regime=np.where(gentle.persona == "none", "none", "chosen"))
  harsh = gentle[gentle.persona != "none"].assign(regime="forgetting")
  harsh.loc[
    (harsh.persona == "warm") & (harsh.intervention == "none") & (harsh.task == "factual_qa"),
    "error",
  ] = 1
  table = compare.comparison_table(pd.concat([gentle, harsh], ignore_index=True), 0.5, n_boot=200)
  warm = table[(table.method == "warm") & (table.outcome == "error_rate")]
  level = warm[warm.vs == ""].set_index("regime").estimate
  assert level["chosen"] == pytest.approx(2 / 6) and level["forgetting"] == pytest.approx(1.0)
  vs_base = warm[warm.vs == "base"].set_index("regime").estimate
  assert vs_base["chosen"] == pytest.approx(2 / 6) and vs_base["forgetting"] == pytest.approx(1.0)
  rows = compare.comparison_rows(table, 0.5)
  assert {"cmp-nano@chosen-warm", "cmp-nano@forgetting-warm"} <= set(rows.run)
  back = compare.from_rows(rows)
  assert set(back.regime) == {"chosen", "forgetting"}
  assert "regime" in compare.wide(table).columns


def test_objective_cells_train_in_every_regime_and_refuse_low_rank_ones():
  c = objectives_config.get_config()
  cells = objectives_extension.objective_cells(resolve.resolve(c))
  assert {x.regime for x in cells} == {"chosen", "forgetting"} == set(c.grid.regimes)
  assert len(cells) == 2 * len(c.objectives.methods) * len(c.grid.seeds)
  bad = objectives_config.get_config()
  bad.grid.regimes.chosen.persona_update = "lora_embed"
  with pytest.raises(
    ValueError,
    match=r"grid.regimes.chosen trains low-rank adapters at nano, "
    r"but the objectives train every parameter",
  ):
    resolve.resolve(bad)
