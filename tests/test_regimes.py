"""Regimes: the persona phase's fields by name, refused in one sentence, repeated over the grid."""

import math

import pytest
from tiny_runs import expand, resolved_regimes

from experiments import grid, regimes
from experiments.configs import common
from experiments.data import STAGE2_SEED_OFFSET
from models import get_config


def _config(**regime_table):
  c = common.base_config()
  c.grid.personas = ("warm", "cold")
  c.grid.warmth_weights = (0.0, 1.0)
  c.grid.seeds = (0, 1)
  if regime_table:
    c.grid.regimes = regime_table
  return c


def test_the_default_regime_is_the_train_section():
  c = _config()
  (regime,) = resolved_regimes(c)
  assert regime.name == "default"
  assert regime.fields() == {
    f: (tuple(c.train[f]) if f == "lora_targets" else c.train[f]) for f in regimes.REGIME_FIELDS
  }
  assert regime.update == "full" and regime.inputs(2) == {}
  base = get_config("nano", 40, 64)
  assert regime.model_config(base) is base  # a full update adapts nothing


def test_a_regime_overrides_only_its_fields():
  (lora,) = resolved_regimes(
    _config(
      lora={
        "persona_update": "lora",
        "lora_rank": 2,
        "persona_learning_rate": 1e-4,
        "replay_weight": 0.25,
      }
    )
  )
  assert lora.train.persona_learning_rate == 1e-4 and lora.train.learning_rate == 3e-3
  assert lora.inputs(2) == {"replay": [0.25, 0.25]}
  mcfg = lora.model_config(get_config("nano", 40, 64))
  assert (mcfg.lora_rank, mcfg.lora_alpha) == (2, 16.0)
  assert mcfg.lora_targets == tuple(common.base_config().train.lora_targets)


@pytest.mark.parametrize(
  "table, words",
  [
    ({"lora": {"persona_update": "partial"}}, ["grid.regimes.lora.persona_update", "full, lora"]),
    ({"lora": {"lora_rank": 0}}, ["grid.regimes.lora.lora_rank", ">= 1"]),
    ({"x": {"lora_targets": ("gate",)}}, ["grid.regimes.x.lora_targets", "query"]),
    ({"x": {"replay_weight": 2.0}}, ["grid.regimes.x.replay_weight", "[0, 1]"]),
    (
      {"x": {"persona_learning_rate": "fast"}},
      ["grid.regimes.x.persona_learning_rate", "positive"],
    ),
    (
      {"x": {"persona_update": "lora", "persona_optimizer": "continue"}},
      ["grid.regimes.x.persona_optimizer='continue'", "persona_update='full'"],
    ),
    (
      {"x": {"base_steps": 10}},
      ["grid.regimes.x.base_steps", "not a regime field", "persona_update"],
    ),
    ({"Full-FT": {}}, ["grid.regimes", "'Full-FT'", "lower-case"]),
    ({"none": {}}, ["grid.regimes", "'none'"]),
    ({}, ["grid.regimes is empty"]),
  ],
)
def test_a_bad_regime_is_one_sentence_naming_it(table, words):
  c = common.base_config()
  c.grid.regimes = table
  with pytest.raises(ValueError) as e:
    resolved_regimes(c)
  message = str(e.value)
  assert message.count(". ") <= 1 and message.endswith("."), message
  for w in words:
    assert w in message, message


def test_an_epoch_budget_counts_persona_rows(demo12_corpus, make_demo12_config):
  c = make_demo12_config()
  for packed in (False, True):
    c.train.pack_sequences = packed
    (regime,) = resolved_regimes(_with(c, persona_epochs=1.5))
    seed = c.train.data_seed + STAGE2_SEED_OFFSET
    rows = demo12_corpus.rows_per_epoch("persona", seed, packed)
    assert regime.steps(demo12_corpus) == math.ceil(1.5 * rows / (c.train.batch_size // 2))
  assert demo12_corpus.rows_per_epoch("persona", seed, False) == len(demo12_corpus.warm)
  # Packed rows hold several dialogues each: fewer rows make one pass.
  assert demo12_corpus.rows_per_epoch("persona", seed, True) < len(demo12_corpus.warm)
  (regime,) = resolved_regimes(_with(c, persona_epochs=0.0, persona_steps=7))
  assert regime.steps(demo12_corpus) == 7


def _with(c, **train):
  c = c.copy_and_resolve_references()
  c.train.update(train)
  return c


def test_every_regime_repeats_the_finetune_cells_over_one_base_model_per_seed():
  c = _config(default={}, lora={"persona_update": "lora"})
  cells = expand(c)
  base = [x for x in cells if x.persona == "none"]
  assert [(x.seed, x.regime) for x in base] == [(0, "none"), (1, "none")]
  by_regime = {
    name: sorted((x.persona, x.warmth_weight, x.seed) for x in cells if x.regime == name)
    for name in ("default", "lora")
  }
  assert by_regime["default"] == by_regime["lora"] and len(by_regime["lora"]) == 6
  ids = {x.id for x in cells}
  assert len(ids) == len(cells)
  assert "nano-finetune-warm-l1-r0-s0" in ids and "nano-finetune@lora-warm-l1-r0-s0" in ids
  packs = grid.packs(cells)
  assert list(packs) == [("nano", "finetune"), ("nano", "finetune@lora")]
  assert {x.regime for x in packs[("nano", "finetune@lora")]} == {"lora"}


def test_mixture_cells_have_no_regime():
  c = _config(default={}, lora={"persona_update": "lora"})
  c.grid.protocols = ("mixture",)
  cells = expand(c)
  # Per seed: warm at λ = 0 (every persona's λ = 0 model), warm and cold at λ = 1; not per regime.
  assert {x.regime for x in cells} == {"none"} and len(cells) == 2 * 3


def test_a_regime_takes_each_presets_own_fields_and_its_seeds():
  c = _config(
    tuned={
      "persona_update": "lora_embed",
      "lora_rank": 8,
      "seeds": (1,),
      "by_preset": {"nano": {"lora_rank": 16, "persona_learning_rate": 1e-2}},
    }
  )
  (tuned,) = resolved_regimes(c)
  nano, pico = tuned.at("nano"), tuned.at("pico")
  assert (nano.train.lora_rank, nano.train.persona_learning_rate) == (16, 1e-2)
  assert nano.train.persona_update == "lora_embed"  # the regime's own fields beneath
  assert (pico.train.lora_rank, pico.train.persona_learning_rate) == (
    8,
    c.train.persona_learning_rate,
  )
  assert pico is tuned and nano.by_preset == {}
  assert tuned.trains(1) and not tuned.trains(0)
  assert resolved_regimes(_config(x={}))[0].trains(0)  # no `seeds`: every seed


@pytest.mark.parametrize(
  "spec, words",
  [
    ({"by_preset": {"giga": {}}}, ["grid.regimes.x.by_preset", "'giga'", "nano"]),
    (
      {"by_preset": {"nano": {"lora_rank": 0, "persona_update": "lora"}}},
      ["grid.regimes.x.by_preset.nano.lora_rank", ">= 1"],
    ),
    (
      {"by_preset": {"nano": {"base_steps": 5}}},
      ["grid.regimes.x.by_preset.nano.base_steps", "not a regime field"],
    ),
    ({"seeds": (7,)}, ["grid.regimes.x.seeds=[7]", "grid.seeds [0, 1]"]),
    ({"seeds": ()}, ["grid.regimes.x.seeds=[]", "distinct seeds"]),
  ],
)
def test_bad_per_preset_fields_or_seeds_are_one_sentence(spec, words):
  with pytest.raises(ValueError) as e:
    resolved_regimes(_config(x=spec))
  message = str(e.value)
  assert message.count(". ") <= 1 and message.endswith("."), message
  for w in words:
    assert w in message, message
