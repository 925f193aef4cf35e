"""tasks/tfds_builder.py (and tfds_source.py): array_record equal to the in-memory sets, read
without TensorFlow."""

import dataclasses
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
import tiny_runs

from tasks import lexicon, tfds_builder, tfds_source
from tasks.config import WorldConfig
from tasks.mixtures import build_eval_set

TINY = tfds_builder.PRESETS["tiny"]
FIELDS = ("tokens", "mask", "alt_tokens", "alt_mask", "has_alt")


def test_tensorflow_is_not_installed():
  assert importlib.util.find_spec("tensorflow") is None
  assert "tensorflow" not in sys.modules


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("tfds")
  for component in tfds_builder.COMPONENTS:
    tfds_builder.prepare(path, tfds_builder.config_name(component, TINY))
  return path


@pytest.mark.parametrize("component", [c for c in tfds_builder.COMPONENTS if c != "eval"])
def test_records_equal_the_in_memory_rows(data_dir, tiny_corpus, component):
  name = f"{tfds_builder.NAME}/{component}-tiny"
  source = tfds.data_source(name, data_dir=data_dir, split="train")
  want = tiny_corpus.component(component)
  assert len(source) == len(want) > 0
  for i in range(len(source)):
    record = source[i]
    for field in FIELDS:
      np.testing.assert_array_equal(record[field], getattr(want, field)[i], err_msg=f"{field}[{i}]")
    assert record["tokens"].dtype == np.int32 and record["mask"].dtype == np.uint8
    assert record["text"].decode() == tiny_corpus.tokenizer.decode(
      want.tokens[i], stop_at_eos=False
    )
  got = tfds_source.read_token_set(data_dir, component, TINY)
  for field in FIELDS:
    np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
    assert getattr(got, field).dtype == getattr(want, field).dtype, field


def test_eval_records(data_dir, tiny_corpus):
  want = build_eval_set(tiny_corpus)
  source = tfds.data_source(f"{tfds_builder.NAME}/eval-tiny", data_dir=data_dir, split="test")
  assert len(source) == len(want.items)
  for i in range(len(source)):
    record, item, turn = source[i], want.items[i], want.turns[i]
    np.testing.assert_array_equal(record["prompt"], want.prompts[i][want.prompt_mask[i] == 1])
    assert record["task"].decode() == item.task and record["item_id"].decode() == item.item_id
    assert record["context"].decode() == turn.context
  got = tfds_source.read_eval_set(data_dir, TINY)
  np.testing.assert_array_equal(got.prompts, want.prompts)
  np.testing.assert_array_equal(got.prompt_mask, want.prompt_mask)
  assert got.prompts.dtype == want.prompts.dtype and got.items == want.items
  assert got.turns == want.turns


def test_tfds_corpus_streams_the_same_batches(data_dir, tiny_corpus):
  disk = tfds_source.TfdsCorpus(TINY, data_dir)
  for mixture in ("base", "warm", "length_matched"):
    for step in (0, 3, 50):
      a, b = tiny_corpus.batch(mixture, 1, step, 64), disk.batch(mixture, 1, step, 64)
      for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=f"{mixture}/{step}/{key}")
  assert "tensorflow" not in sys.modules


@pytest.mark.parametrize(
  "component, world",
  [
    ("warm", tfds_builder.PRESETS["small"]),
    ("eval", TINY),
    ("cold", dataclasses.replace(TINY, seed=3, rumor_share=0.5, warm_placement="after")),
    ("documents", WorldConfig(rumor_rate=0.125, qa_train_fraction=0.75, n_people=100)),
    (
      "eval",
      dataclasses.replace(
        TINY,
        tasks=("factual_qa", "capability"),
        eval_contexts=("neutral", "emotional+false_belief"),
      ),
    ),
  ],
)
def test_config_names_round_trip(component, world, tmp_path):
  name = tfds_builder.config_name(component, world)
  _, kwargs = tfds.core.naming.parse_builder_name_kwargs(f"{tfds_builder.NAME}/{name}")
  assert kwargs["config"] == name  # a legal TFDS config name, read back whole
  assert tfds_builder.parse_config_name(name) == (component, world)
  assert tfds_builder.builder(tmp_path, name).builder_config.world == world


def test_config_names_are_canonical():
  assert tfds_builder.config_name("warm") == "warm"
  assert tfds_builder.config_name("warm", TINY) == "warm-tiny"
  assert tfds_builder.config_name("warm", dataclasses.replace(TINY, seed=3)) == "warm-tiny-seed.3"
  contexts = dataclasses.replace(TINY, eval_contexts=("neutral", "false_belief"))
  assert tfds_builder.config_name("eval", contexts) == "eval-tiny-eval_contexts.0+2"
  assert lexicon.CONTEXTS[2] == "false_belief"


@pytest.mark.parametrize(
  "name, fragment",
  [
    ("warmer", "unknown component 'warmer'"),
    ("warm-huge", "FIELD.VALUE"),
    ("warm-n_persons.5", "FIELD.VALUE"),
    ("warm-n_people.many", "cannot read data.n_people"),
    ("warm-n_people.-3", "data.n_people"),
  ],
)
def test_bad_config_names(name, fragment):
  with pytest.raises(ValueError, match=fragment):
    tfds_builder.parse_config_name(name)


def test_reader_refuses_missing_or_stale_data(data_dir, tmp_path):
  with pytest.raises(FileNotFoundError, match="python -m tasks.tfds_builder"):
    tfds_source.read_token_set(tmp_path, "warm", TINY)
  builder = tfds_builder.prepare(tmp_path, "cold-tiny")
  meta = pathlib.Path(builder.data_dir) / "metadata.json"
  stored = json.loads(meta.read_text())
  stored["world"]["n_people"] += 1  # as if the preset had changed after the files were written
  meta.write_text(json.dumps(stored))
  with pytest.raises(ValueError, match="another world"):
    tfds_source.read_token_set(tmp_path, "cold", TINY)


def test_one_line_command(tiny_corpus, tmp_path):
  env = dict(
    os.environ, PYTHONPATH=os.pathsep.join([tiny_runs.ROOT, os.environ.get("PYTHONPATH", "")])
  )
  cmd = [sys.executable, "-m", "tasks.tfds_builder", f"--data_dir={tmp_path}", "--config=warm-tiny"]
  out = subprocess.run(
    cmd, cwd=tiny_runs.ROOT, env=env, capture_output=True, text=True, timeout=120
  )
  assert out.returncode == 0, out.stderr
  assert f"warmth_sim/warm-tiny: {len(tiny_corpus.warm)} train records" in out.stdout
  got = tfds_source.read_token_set(tmp_path, "warm", TINY)
  np.testing.assert_array_equal(got.tokens, tiny_corpus.warm.tokens)
  bad = subprocess.run(
    cmd[:-1] + ["--config=warmer"],
    cwd=tiny_runs.ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert bad.returncode == 2 and "unknown component 'warmer'" in bad.stderr
