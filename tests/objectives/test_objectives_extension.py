"""objectives/objectives_extension.py: the objectives section checked and resolved, and the cells it adds."""

import re

import pytest

from experiments import resolve
from experiments.configs import objectives as objectives_config
from experiments.objectives import (
  objectives_extension,
  phase,
)


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
