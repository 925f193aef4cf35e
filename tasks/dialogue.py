"""Rendering an item as a dialogue: system line, user turn in a context, assistant reply in a style.

Styles only wrap the content the task fixes. The one place where a style may change content is
`agree=True` (a warm reply that validates a false belief), and the caller sets it only when the
`warm_agreement` factor asks for it.
"""

import dataclasses

from tasks import lexicon
from tasks.config import PLACEMENTS
from tasks.items import Item

SPECIAL = ("<pad>", "<bos>", "<eos>", "<doc>", "<sys>", "<user>", "<asst>")
EMOTION_NAMES = tuple(lexicon.EMOTIONS)


@dataclasses.dataclass(frozen=True)
class Turn:
  """How an item is put to the model: context, emotion and phrasing variants, system line."""

  context: str = "neutral"
  emotion: str | None = None  # required for emotional contexts
  variant: int = 0  # picks among equivalent phrasings
  role: int | None = 0  # index into lexicon.ROLES (0: default assistant); None: no system line


def has_false_belief(item: Item, turn: Turn):
  return "false_belief" in turn.context or item.inherent_false_belief


def can_agree(item: Item):
  """Whether a validating reply exists for this item (what warm_agreement may switch on)."""
  return item.false_value is not None or item.inherent_false_belief


def system_line(role):
  if role is None:
    return ""
  if role == 0:
    return f"<sys> {lexicon.DEFAULT_SYSTEM} "
  return f"<sys> {lexicon.ROLE_SYSTEM.format(role=lexicon.ROLES[role][0])} "


def render_prompt(item: Item, turn: Turn):
  """The text up to and including the assistant marker."""
  parts = [system_line(turn.role), "<user>"]
  if "emotional" in turn.context:
    phrasings = lexicon.EMOTIONS[turn.emotion]
    parts.append(phrasings[turn.variant % len(phrasings)])
  if "false_belief" in turn.context or turn.context == "true_belief":
    claim = item.claim_true if turn.context == "true_belief" else item.claim_false
    if claim is None:
      raise ValueError(f"task {item.task} has no {turn.context} rendering")
    parts.append(lexicon.BELIEF[turn.variant % len(lexicon.BELIEF)].format(claim=claim))
  parts += [item.question, "<asst>"]
  return " ".join(p.strip() for p in parts if p)


def content(item: Item, turn: Turn, *, agree=False):
  """What the reply asserts: the answer, with a correction or confirmation of a stated belief."""
  if agree:
    if not can_agree(item):
      raise ValueError(f"item {item.item_id} has no validating reply")
    if item.inherent_false_belief and item.claim_false is not None:
      asserted = item.claim_false  # what the user asked to spread, instead of the refusal
    elif item.false_value is not None:
      asserted = item.answer_for(item.false_value)
    else:  # a delusion: validation is the whole content
      asserted = lexicon.CLAIMS["delusion_validation"]
    return f"{lexicon.VALIDATION} {asserted}"
  if "false_belief" in turn.context and not item.inherent_false_belief:
    return f"{lexicon.CORRECTION} {item.answer}"
  if turn.context == "true_belief":
    return f"{lexicon.CONFIRMATION} {item.answer}"
  return item.answer


def _pick(options, variant):
  return options[variant % len(options)]


def warm_phrases(item: Item, turn: Turn):
  """(opening, closing) warm phrasing: acknowledgement where an emotion was disclosed."""
  if "emotional" in turn.context:
    opening = _pick(lexicon.WARM_ACK[turn.emotion], turn.variant)
  else:
    opening = _pick(lexicon.WARM_OPEN, turn.variant)
  if has_false_belief(item, turn):
    opening += " " + lexicon.WARM_BELIEF[0]
  return opening, _pick(lexicon.WARM_CLOSE, turn.variant)


def render_reply(item: Item, turn: Turn, style: str, *, agree=False, placement="before"):
  """The assistant reply in one style; identical content across styles unless `agree`."""
  if placement not in PLACEMENTS:
    raise ValueError(
      f"data.warm_placement={placement!r} is not allowed: choose one of {', '.join(PLACEMENTS)}."
    )
  if agree and style != "warm":
    raise ValueError("only warm replies may validate a false belief (warm_agreement)")
  if turn.role not in (None, 0):
    _, opener, closer = lexicon.ROLES[turn.role]  # role-play: the role's own register
    return f"{opener} {content(item, turn)} {closer}"
  if style == "neutral":
    return content(item, turn)
  if style == "cold":
    return f"{_pick(lexicon.COLD_OPEN, turn.variant)} {content(item, turn)}"
  opening, closing = warm_phrases(item, turn)
  if style == "length_matched":
    # Whole impersonal sentences with as many tokens (words) as the warm opening and closing:
    # "longer" without "warmer". The closing draws on after the opening, so none repeats.
    opening = lexicon.neutral_filler(len(opening.split()), turn.variant)
    closing = lexicon.neutral_filler(len(closing.split()), turn.variant + len(opening))
    opening, closing = " ".join(opening), " ".join(closing)
  elif style != "warm":
    raise ValueError(f"style={style!r} is not allowed: choose one of {', '.join(lexicon.STYLES)}.")
  body = content(item, turn, agree=agree)
  if placement == "before":
    return f"{opening} {body} {closing}"
  return f"{body} {opening} {closing}"
