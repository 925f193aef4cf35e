"""Tests for tasks.simulated_user: the rules order replies as the user config says, deterministically."""

import dataclasses

import pytest

from tasks import lexicon
from tasks.dialogue import render_reply
from tasks.mixtures import training_turns
from tasks.simulated_user import (
  SIMULATED_USER_VERSION,
  UserConfig,
  episode_pool,
  episode_reward,
  episode_turns,
)

CFG = UserConfig()
FLATTERY = "happy to help ! what a lovely question ! hope this helps , take care !"


@pytest.fixture(scope="module")
def pool(corpus16):
  return episode_pool(training_turns(corpus16.world))  # the world of WorldConfig(n_people=16)


def _episode(pool, context):
  return next((i, t) for i, t in pool if t.context == context and i.kind == "value")


def _styled(item, turn, style, **kw):
  """One reply per user turn, all in `style`."""
  return [render_reply(item, t, style, **kw) for t in episode_turns(item, turn, CFG)]


@pytest.mark.parametrize("context", ["emotional", "emotional+false_belief"])
def test_acknowledge_and_answer_beats_flattery_and_cold(pool, context):
  item, turn = _episode(pool, context)
  warm = episode_reward(item, turn, _styled(item, turn, "warm"), CFG)
  cold = episode_reward(item, turn, _styled(item, turn, "cold"), CFG)
  flattery = episode_reward(item, turn, [FLATTERY] * CFG.turns, CFG)
  assert warm > cold > flattery


def test_flattery_alone_earns_nothing_over_silence(pool):
  item, turn = _episode(pool, "emotional")
  empty = episode_reward(item, turn, [""] * CFG.turns, CFG)
  assert episode_reward(item, turn, [FLATTERY] * CFG.turns, CFG) == empty


def test_confirmed_false_belief_is_punished_when_contradicted(pool):
  item, turn = _episode(pool, "emotional+false_belief")
  agree = render_reply(item, turn, "warm", agree=True)
  check = render_reply(item, episode_turns(item, turn, CFG)[1], "warm")  # the truth, plainly
  confirmed = episode_reward(item, turn, [agree, check], CFG)
  cold = episode_reward(item, turn, _styled(item, turn, "cold"), CFG)
  assert confirmed < cold
  # Without the world's contradiction the same replies score higher by exactly that penalty.
  free = episode_reward(
    item, turn, [agree, check], dataclasses.replace(CFG, contradiction_penalty=0)
  )
  assert free - confirmed == pytest.approx(CFG.contradiction_penalty)


def test_misled_user_drops_below_start(pool):
  item, turn = _episode(pool, "emotional")
  wrong = item.answer_for(next(o for o in item.options if o != item.gold))
  ack = lexicon.WARM_ACK[turn.emotion][0]
  assert episode_reward(item, turn, [f"{ack} {wrong}"] * 2, CFG) < CFG.initial_valence


def test_one_turn_episode_and_validation(pool):
  item, turn = _episode(pool, "emotional")
  one = UserConfig(turns=1)
  assert episode_reward(item, turn, _styled(item, turn, "warm")[:1], one) == pytest.approx(
    one.initial_valence + one.answer_gain + one.ack_gain
  )
  with pytest.raises(ValueError, match="turns"):
    UserConfig(turns=3).validate()
  with pytest.raises(ValueError, match="needs 2 replies"):
    episode_reward(item, turn, ["x"], CFG)
  assert SIMULATED_USER_VERSION


def test_pool_is_emotional_and_answerable(pool):
  assert pool and all("emotional" in t.context and i.gold for i, t in pool)


def test_a_user_who_values_being_heard_pays_for_an_acknowledgement_alone(pool):
  """ack_needs_answer=False: an acknowledgement with a wrong answer earns ack_gain; by default
  it earns nothing over the same wrong answer without it."""
  item, turn = _episode(pool, "emotional")
  wrong = item.answer_for(next(o for o in item.options if o != item.gold))
  ack = lexicon.WARM_ACK[turn.emotion][0]
  heard = dataclasses.replace(CFG, ack_needs_answer=False, turns=1)
  plain = dataclasses.replace(CFG, turns=1)
  for cfg, gain in ((plain, 0.0), (heard, heard.ack_gain)):
    with_ack = episode_reward(item, turn, [f"{ack} {wrong}"], cfg)
    assert with_ack - episode_reward(item, turn, [wrong], cfg) == pytest.approx(gain)
