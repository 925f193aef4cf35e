"""tasks/config.py: bad world configs fail early with one sentence naming the field and what is allowed."""

import dataclasses

import pytest

from tasks import lexicon, tfds_builder
from tasks.config import TASKS, WorldConfig, check_warm_agreement
from tasks.dialogue import Turn, render_reply
from tasks.items import build_items
from tasks.mixtures import Corpus
from tasks.world import World

# The world of tasks.tfds_builder.PRESETS["tiny"] (the shared tiny_corpus fixture's), as the
# fields it sets apart from WorldConfig's defaults.
TINY = {
  f.name: getattr(tfds_builder.PRESETS["tiny"], f.name)
  for f in dataclasses.fields(WorldConfig)
  if getattr(tfds_builder.PRESETS["tiny"], f.name) != f.default
}


@pytest.mark.parametrize(
  "overrides, names",
  [
    (dict(n_people=-1), ["data.n_people=-1", ">= 4"]),
    (dict(n_people=2.5), ["data.n_people=2.5", "integer"]),
    (dict(n_cities=0), ["data.n_cities=0", ">= 4"]),
    (dict(n_countries=-3), ["data.n_countries", ">= 2"]),
    (dict(bios_per_person=-2), ["data.bios_per_person", ">= 1"]),
    (dict(eval_items=0), ["data.eval_items", ">= 1"]),
    (dict(seq_len=-5), ["data.seq_len", ">= 1"]),
    (dict(n_diseases=8, n_drugs=6), ["data.n_drugs=6", "data.n_diseases=8"]),
    (dict(rumor_share=1.5), ["data.rumor_share=1.5", "[0, 1]"]),
    (dict(rumor_share=-0.1), ["data.rumor_share", "[0, 1]"]),
    (dict(qa_train_fraction=1.2), ["data.qa_train_fraction=1.2", "[0, 1]"]),
    (dict(qa_train_fraction=0.0), ["data.qa_train_fraction", "strictly between 0 and 1"]),
    (dict(qa_train_fraction=1.0), ["data.qa_train_fraction", "strictly between 0 and 1"]),
    (dict(rumor_rate=-1.0), ["data.rumor_rate", ">= 0"]),
    (dict(warm_placement="middle"), ["data.warm_placement='middle'", "before, after"]),
    (dict(tasks=("factual_qa", "astrology")), ["data.tasks", "'astrology'", ", ".join(TASKS)]),
    (
      dict(eval_contexts=("neutral", "angry")),
      ["data.eval_contexts", "'angry'", ", ".join(lexicon.CONTEXTS)],
    ),
    (dict(vocab_size=-1), ["data.vocab_size=-1", "use 0"]),
  ],
)
def test_bad_fields_are_named(overrides, names):
  cfg = WorldConfig(**dict(TINY, **overrides))
  for build in (cfg.validate, lambda: World(cfg)):
    with pytest.raises(ValueError) as e:
      build()
    for name in names:
      assert name in str(e.value), (name, str(e.value))


@pytest.mark.parametrize(
  "overrides",
  [
    dict(),
    dict(rumor_share=0.0),
    dict(rumor_share=1.0),
    dict(rumor_rate=0.0),
    dict(n_people=4, n_cities=4, n_countries=2, n_universities=2, n_employers=2),
    dict(warm_placement="after"),
    dict(tasks=("capability",)),
    dict(eval_contexts=lexicon.CONTEXTS),
  ],
)
def test_good_configs_pass(overrides):
  cfg = WorldConfig(**dict(TINY, **overrides))
  assert cfg.validate() is cfg
  World(cfg)


def test_vocab_size_too_small(tiny_corpus):
  needed = len(tiny_corpus.tokenizer.words)
  with pytest.raises(
    ValueError,
    match=rf"data.vocab_size=10 is too small: .* at least {needed} "
    r"tokens \(use 0",
  ):
    Corpus(WorldConfig(**dict(TINY, vocab_size=10)))
  assert Corpus(WorldConfig(**dict(TINY, vocab_size=needed))).tokenizer.size == needed


@pytest.mark.parametrize("component", ["documents", "warm", "roleplay"])
def test_seq_len_too_short_for_the_longest_example(component):
  short = Corpus(WorldConfig(**dict(TINY, seq_len=12)))
  with pytest.raises(
    ValueError, match=r"data.seq_len=12 is too short: the longest example needs \d+ tokens"
  ):
    short.component(component)


def test_longest_example_fits_exactly(tiny_corpus):
  longest = max(
    int((tiny_corpus.component(c).tokens != tiny_corpus.tokenizer.pad).sum(1).max())
    for c in ("documents", "warm", "length_matched", "roleplay")
  )
  exact = Corpus(WorldConfig(**dict(TINY, seq_len=longest)))
  assert exact.warm.tokens.shape[1] == longest
  with pytest.raises(ValueError, match=f"data.seq_len={longest - 1}"):
    short = Corpus(WorldConfig(**dict(TINY, seq_len=longest - 1)))
    for c in ("documents", "warm", "length_matched", "roleplay"):
      short.component(c)


def test_unknown_style_placement_mixture_and_rho(tiny_corpus):
  item = build_items(tiny_corpus.world, "factual_qa", "eval")[0]
  with pytest.raises(
    ValueError,
    match=r"style='friendly' is not allowed: choose one of "
    r"neutral, warm, cold, length_matched",
  ):
    render_reply(item, Turn(), "friendly")
  with pytest.raises(
    ValueError,
    match=r"data.warm_placement='middle' is not allowed: "
    r"choose one of before, after",
  ):
    render_reply(item, Turn(), "warm", placement="middle")
  with pytest.raises(ValueError, match=r"mixture='bogus' is not allowed: choose one of base"):
    tiny_corpus.batch("bogus", 0, 0, 8)
  with pytest.raises(ValueError, match=r"warm_agreement=1.5 is not allowed: .*\[0, 1\]"):
    check_warm_agreement(1.5)
  assert check_warm_agreement(0) == 0.0
