"""experiments/resolve.py: a config read into frozen sections once, derived values filled in, the
ConfigDict never written to; config.json and the base store's keys as the earlier layout had them."""

import dataclasses
import hashlib
import json
import os
import shutil

import jax
import ml_collections
import pytest
from tiny_runs import ROOT

from experiments import base_models, experiment, resolve, stage
from experiments.configs import demo
from experiments.runtime import members, sharding
from experiments.runtime import workdir as workdir_lib
from experiments.runtime.workdir import Workdir
from tasks import budget
from tasks.mixtures import Corpus
from tasks.world import World

# config.json of the demo as the code wrote it before the config was resolved into sections: one
# `config` entry, the ConfigDict with the generation budget written into it (commit cf07efb).
BEFORE = os.path.join(ROOT, "tests", "data", "demo_config_json_before_sections.json")


def test_resolve_never_writes_to_the_config_and_derives_the_budget_once():
  c = demo.get_config()
  asked = json.dumps(c.to_dict(), sort_keys=True, default=str)
  cfg = resolve.resolve(ml_collections.FrozenConfigDict(c))  # a write would raise here
  assert json.dumps(c.to_dict(), sort_keys=True, default=str) == asked
  assert c.eval.max_new_tokens == cfg.asked.eval.max_new_tokens == 0
  assert cfg.eval.max_new_tokens == budget.generation_budget(World(cfg.world), 0) > 0
  assert cfg.derived == {"eval.max_new_tokens": cfg.eval.max_new_tokens}
  # Every section is frozen: nothing downstream can resolve a value a second way.
  for section in (cfg, cfg.world, cfg.model, cfg.train, cfg.eval, cfg.grid, cfg.runtime, cfg.mesh):
    with pytest.raises(dataclasses.FrozenInstanceError):
      setattr(section, dataclasses.fields(section)[0].name, None)
  with pytest.raises(TypeError):
    cfg.derived["eval.max_new_tokens"] = 1  # its mappings are read-only too
  assert [e.name for e in cfg.extensions] == list(c.extensions)


def test_an_explicit_budget_is_kept_and_one_too_short_is_refused():
  c = demo.get_config()
  needed = budget.generation_budget(World(resolve.world_config(c.data)), 0) - budget.MARGIN
  c.eval.max_new_tokens = needed
  cfg = resolve.resolve(c)
  assert cfg.eval.max_new_tokens == needed and cfg.record()["eval"]["max_new_tokens"] == needed
  c.eval.max_new_tokens = needed - 1
  with pytest.raises(ValueError, match=f"eval.max_new_tokens={needed - 1} is shorter"):
    resolve.resolve(c)


def test_a_section_with_a_field_it_lacks_is_refused_by_name():
  c = demo.get_config()
  with c.eval.unlocked():
    c.eval.max_tokens = 10
  with pytest.raises(ValueError, match="eval.max_tokens is not a field of the eval section"):
    resolve.resolve(c)


def test_record_is_config_json_of_the_earlier_layout():
  """config.json's `config` is what every reader of a workdir reads: it must not change."""
  with open(BEFORE) as f:
    before = json.load(f)["config"]
  cfg = resolve.resolve(demo.get_config())
  record = json.loads(json.dumps(cfg.record(), default=str))
  before.pop("runtime"), record.pop("runtime")  # the store path is this machine's
  assert record == before
  assert json.loads(json.dumps(cfg.asked.to_dict(), default=str))["eval"]["max_new_tokens"] == 0


def test_a_workdir_of_the_earlier_layout_passes_the_rerun_check(tmp_path):
  shutil.copy(BEFORE, tmp_path / "config.json")
  cfg = resolve.resolve(demo.get_config())
  Workdir(str(tmp_path), cfg.record(), cfg.asked.to_dict())  # no ValueError: the same run
  with open(tmp_path / "config.json") as f:
    written = json.load(f)
  assert written["asked"]["eval"]["max_new_tokens"] == 0
  assert written["config"]["eval"]["max_new_tokens"] == cfg.eval.max_new_tokens
  other = demo.get_config()
  other.grid.seeds = (0, 1, 2)
  changed = resolve.resolve(other)
  with pytest.raises(ValueError, match="holds a run of a different config"):
    Workdir(str(tmp_path), changed.record(), changed.asked.to_dict())


def test_a_finished_workdir_of_the_earlier_layout_resumes_without_training(
  tiny_finished_run, tmp_path, monkeypatch
):
  """A config.json without `asked` (the earlier layout) is read back, every cell counts as
  finished, and the merged results are the ones it holds."""
  workdir, items = tiny_finished_run
  copy = str(tmp_path / "w")
  shutil.copytree(workdir, copy)
  path = os.path.join(copy, "config.json")
  with open(path) as f:
    record = json.load(f)
  assert "asked" in record
  del record["asked"]
  workdir_lib.write_json(path, record)
  cfg = resolve.resolve(ml_collections.ConfigDict(workdir_lib.read_config(path)))

  def refuse(*args, **kwargs):
    raise AssertionError("a finished cell was trained again")

  monkeypatch.setattr(stage, "train_or_resume", refuse)
  _, again = experiment.run(cfg, copy)
  assert again.equals(items)


def test_base_store_keys_are_those_of_the_earlier_layout():
  """The key's fields, hashed, as the code computed them before the config was resolved into
  sections (commit cf07efb, demo config, one CPU device): a store filled then is still read."""
  cfg = resolve.resolve(demo.get_config())
  mesh = sharding.make_mesh(cfg.mesh)
  members.configure(cfg.mesh.members, mesh)
  if jax.device_count() != 1 or jax.default_backend() != "cpu":
    pytest.skip("the recorded key is that of one CPU device")
  corpus = Corpus(cfg.world).encode_all()
  mcfg = resolve.model_config(cfg, "nano", corpus.tokenizer.size, jax.default_backend())
  key = base_models.key(cfg, corpus, mcfg, "nano", mesh)
  digest = hashlib.sha256(json.dumps(key.fields, sort_keys=True).encode()).hexdigest()
  assert digest[:16] == "3055c4cc45f695c9"
