"""The generation budget: how many new tokens generation must allow, derived from the world.

A reply cut short is graded on what the user would have read, so a budget shorter than the longest
format-perfect reply makes long styles (warm phrasing before the answer) wrong by construction. The
budget is therefore the longest reply any style can give to any evaluation prompt, plus a margin
for a model that says a little more than its training data did. The same holds for replies
sampled in training (emotion RL): a cut warm reply would be scored, and trained on, unfinished.
"""

import itertools

from tasks.config import PLACEMENTS
from tasks.dialogue import can_agree, has_false_belief, render_reply
from tasks.lexicon import STYLES
from tasks.mixtures import eval_turns
from tasks.world import World

MARGIN = 8  # tokens beyond the longest training-format reply


def format_replies(item, turn):
  """Every training-format reply to one prompt: each style and placement, validating or not."""
  for style, placement in itertools.product(STYLES, PLACEMENTS):
    yield render_reply(item, turn, style, placement=placement)
  if has_false_belief(item, turn) and can_agree(item):
    for placement in PLACEMENTS:
      yield render_reply(item, turn, "warm", agree=True, placement=placement)


def longest_reply(world: World, items_turns=None):
  """Tokens (words plus end-of-sequence) of the longest format-perfect reply to a prompt of
  `items_turns` ((item, turn) pairs; default: the world's evaluation prompts)."""
  items_turns = eval_turns(world) if items_turns is None else items_turns
  return max(
    len(reply.split()) + 1 for item, turn in items_turns for reply in format_replies(item, turn)
  )


def generation_budget(world: World, requested=0, field="eval.max_new_tokens", items_turns=None):
  """A generation budget in new tokens: `requested`, or the derived one when it is 0.

  `field` names the config field it resolves, `items_turns` the prompts it generates for (default:
  evaluation's). Raises ValueError when `requested` is shorter than the longest reply to them.
  """
  needed = longest_reply(world, items_turns)
  if requested == 0:
    return needed + MARGIN
  if requested < needed:
    raise ValueError(
      f"{field}={requested} is shorter than the longest reply this world can "
      f"produce to its prompts ({needed} tokens with end-of-sequence), so long "
      f"replies would be cut off: use 0 (derived: {needed + MARGIN}) or at least "
      f"{needed}."
    )
  return int(requested)
