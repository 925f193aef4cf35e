"""Configs are plain data: they import only ml_collections, parse their argument, and their
defaults are the dataclasses' own."""

import ast
import dataclasses
import glob
import os

import pytest
from tiny_runs import expand, resolved_regimes

from experiments import grid, resolve
from experiments.configs import common, demo, objectives, regime_controls, study, sweep
from experiments.train_config import TrainConfig
from tasks.config import WorldConfig
from tasks.simulated_user import SIMULATED_USER_VERSION, UserConfig

CONFIG_DIR = os.path.dirname(common.__file__)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(CONFIG_DIR, "*.py"))))
def test_config_files_import_only_ml_collections_and_each_other(path):
  tree = ast.parse(open(path).read())
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      names = [node.module]
    else:
      continue
    for name in names:
      assert name == "ml_collections" or name.startswith("experiments.configs"), (path, name)


def test_defaults_are_the_dataclasses_defaults():
  c = common.base_config()
  world = WorldConfig()
  for f in dataclasses.fields(WorldConfig):
    assert c.data[f.name] == getattr(world, f.name), f.name
  o = common.objectives_section()
  assert o.user.version == SIMULATED_USER_VERSION
  assert {k: o.user[k] for k in dataclasses.asdict(UserConfig())} == dataclasses.asdict(
    UserConfig()
  )


def test_the_config_argument_is_parsed():
  assert demo.get_config("preset=micro").model.presets == ("micro",)
  both = demo.get_config("runlocal,preset=micro")
  assert both.model.presets == ("micro",) and both.train.base_steps == 30
  assert sweep.get_config("runlocal").train.base_steps == 40
  assert objectives.get_config(None).train.base_steps == 3000
  for bad in ("runlcoal", "preset=", "seed=3", "gpu"):  # gpu: a variant of study.py only
    with pytest.raises(ValueError, match=r"--config argument .* is not allowed: use runlocal"):
      demo.get_config(bad)
  gpu = study.get_config("gpu")
  assert "small" in gpu.model.presets and gpu.model.compute_dtype == "bfloat16"
  assert study.get_config("gpu,preset=mini").model.presets == ("mini",)
  with pytest.raises(ValueError, match="runlocal and gpu cannot be combined"):
    study.get_config("runlocal,gpu")


def test_a_section_refuses_a_field_it_does_not_know():
  c = demo.get_config("runlocal")
  c.grid.seed = (0,)  # the field is `seeds`
  with pytest.raises(ValueError, match=r"grid.seed is not a field of the grid section.*seeds"):
    grid.GridConfig.from_config(c)


@pytest.mark.parametrize(
  "field, value, words",
  [
    ("batch_size", 7, "must be even"),
    ("learning_rate", 0.0, "positive"),
    ("checkpoints_to_keep", 0, ">= 1"),
    ("persona_steps", 0, ">= 1"),
    ("loss_normalization", "sequence", "token, row"),
  ],
)
def test_train_section_rules(field, value, words):
  c = demo.get_config("runlocal")
  c.train[field] = value
  with pytest.raises(ValueError, match=f"train.{field}") as e:
    TrainConfig.from_config(c)
  assert words in str(e.value)


def test_an_unknown_extension_is_refused_before_anything_runs():
  c = demo.get_config("runlocal")
  c.extensions = ("persona", "astrology")
  with pytest.raises(ValueError, match="extensions contains 'astrology': allowed are persona"):
    resolve.resolve(c)


@pytest.mark.parametrize("arg,n_items", [(None, 100), ("gpu", 200)])
def test_the_study_has_enough_held_out_items_per_reliability_task_and_context(arg, n_items):
  import collections

  from tasks.config import RELIABILITY_TASKS
  from tasks.mixtures import Corpus, build_eval_set

  c = study.get_config(arg)
  evalset = build_eval_set(Corpus(resolve.world_config(c.data)))
  counts = collections.Counter((i.task, t.context) for i, t in zip(evalset.items, evalset.turns))
  for task in RELIABILITY_TASKS:
    for context in c.data.eval_contexts:
      assert counts[task, context] >= n_items, (task, context, counts[task, context])
  if arg == "gpu":
    assert len(c.grid.seeds) >= 10
    return
  cells = expand(c)
  assert len({x.preset for x in cells}) >= 4 and len(c.grid.sweep_seeds) >= 3
  # The primary comparisons at λ = 1 have ten replicates at pico and nano in the chosen regime and
  # three in the forgetting regime beside it; femto and micro three, in the chosen regime alone.
  for persona in ("none", "warm", "cold", "length_matched"):
    for preset in c.model.presets:
      small_or_costly = preset in ("femto", "micro")
      for regime, wanted in (
        ("chosen", 3 if small_or_costly else 10),
        ("forgetting", 0 if small_or_costly else 3),
      ):
        seeds = {
          x.seed
          for x in cells
          if x.preset == preset
          and x.persona == persona
          and x.regime == regime
          and x.warm_agreement == 0
          and x.warmth_weight == 1.0
        }
        if persona == "none":  # the base models serve both regimes
          seeds = {x.seed for x in cells if x.preset == preset and x.persona == "none"}
          wanted = 3 if small_or_costly else 10
        assert len(seeds) == wanted, (persona, preset, regime, sorted(seeds))
  for regime in ("chosen", "forgetting"):
    top = {
      (x.persona, x.warm_agreement)
      for x in cells
      if x.warmth_weight == 1.0 and x.seed == 0 and x.preset == "nano" and x.regime == regime
    }
    assert top >= {
      ("warm", 0.0),
      ("warm", 1.0),
      ("cold", 0.0),
      ("length_matched", 0.0),
      ("warm_after", 0.0),
    }, regime


def test_the_study_trains_each_presets_chosen_setting_labelled_with_how_it_was_chosen():
  from experiments import regimes

  c = study.get_config()
  chosen, forgetting = resolved_regimes(c)
  assert (chosen.name, forgetting.name) == ("chosen", "forgetting")
  for preset in c.model.presets:
    entry = study.CHOSEN[preset]
    fields = chosen.at(preset).fields()
    assert {k: fields[k] for k in entry["overrides"]} == entry["overrides"], preset
    label = regimes.label(c.grid.to_dict()["regimes"], "chosen", preset)
    assert entry["status"] in label and entry["regime"] in label, label
  # What the calibration recorded is what runs: nano's closest candidate, pico's for femto.
  assert (
    chosen.at("nano").train.lora_rank == 16
    and chosen.at("femto").fields() == chosen.at("pico").fields()
  )
  assert "not calibrated" in regimes.label(c.grid.to_dict()["regimes"], "chosen", "nano")
  assert regimes.label(c.grid.to_dict()["regimes"], "forgetting", "nano") == "forgetting"
  # forgetting is the train section's own persona phase: every parameter, no replay at λ = 1.
  assert forgetting.at("nano").train.persona_update == "full"
  assert forgetting.at("nano").train.replay_weight == -1


def test_the_regime_controls_config_trains_three_regimes_from_the_studys_base_models():
  from experiments import regimes

  c = regime_controls.get_config()
  s = study.get_config()
  assert list(s.grid.regimes) == ["chosen", "forgetting"]
  assert all(c.train[k] == s.train[k] for k in ("base_steps", "learning_rate", "batch_size"))
  assert c.data.to_dict() == s.data.to_dict()
  by_name = {r.name: r for r in resolved_regimes(c)}
  assert by_name["forgetting"].fields() == {
    f: getattr(TrainConfig.from_config(s), f) for f in regimes.REGIME_FIELDS
  }
  assert {r.update for r in by_name.values()} == {"full", "lora", "lora_embed"}
  cells = expand(c)
  assert len([x for x in cells if x.persona == "none"]) == 3  # one base model per seed
  assert len(cells) == 3 + 4 * 3 * 3  # + regimes × personas × seeds


def test_the_regime_diagram_spans_the_chosen_setting_to_forgetting_on_the_studys_bases():
  from experiments.configs import regime_diagram

  c, s = regime_diagram.get_config(), study.get_config()
  assert c.data.to_dict() == s.data.to_dict()
  assert all(c.train[k] == s.train[k] for k in ("base_steps", "learning_rate", "batch_size"))
  by_name = {r.name: r.at("nano") for r in resolved_regimes(c)}
  assert len(by_name) >= 4
  assert by_name["chosen"].fields() == resolve.resolve(s).regimes["chosen"].at("nano").fields()
  assert (
    by_name["forgetting"].fields() == resolve.resolve(s).regimes["forgetting"].at("nano").fields()
  )
  replay = sorted(r.train.replay_weight for n, r in by_name.items() if n.startswith("replay"))
  assert replay == [0.25, 0.5, 1.0]
  cells = expand(c)
  assert {x.seed for x in cells} == {0, 1, 2} and {x.preset for x in cells} == {"nano"}
  assert len([x for x in cells if x.persona != "none"]) == len(by_name) * 2 * 3  # warm, cold
