"""show_batch prints exactly the rows a run trained on at a step."""

import subprocess
import sys

import pytest
import tiny_runs

from experiments import data
from experiments.tools import show_batch


def test_rows_are_the_trainers_rows_at_that_step(make_demo_config, demo_corpus):
  c, corpus = make_demo_config(), demo_corpus  # 16 people, batches of 8
  lines = []
  show_batch.show(c, "base", 1, 5, write=lines.append)
  assert c.train.pack_sequences  # one line per example of a packed row
  batch = data.Batches(corpus, c.train.data_seed, 8, True).base([1])(5)["base"]
  tokens, mask, seg = (batch[k][0] for k in ("tokens", "mask", "segment_ids"))
  want = [
    show_batch.decode_row(corpus.tokenizer, tokens[r][seg[r] == k], mask[r][seg[r] == k])
    for r in range(8)
    for k in range(1, seg[r].max() + 1)
  ]
  assert len(want) > 8
  assert [line.split(": ", 1)[1] for line in lines[1:]] == want
  other = []
  show_batch.show(c, "base", 1, 6, write=other.append)
  assert other[1:] != lines[1:]


def test_persona_rows_mark_validating_replies_only_when_rho_asks(make_demo_config):
  c = make_demo_config()
  for rho, expect in ((0.0, False), (1.0, True)):
    lines = []
    show_batch.show(c, "persona", 0, 3, persona="warm", rho=rho, write=lines.append)
    assert lines[0].startswith("stage persona, seed 0, persona warm")
    assert any("validating" in line for line in lines) == expect
    rows = {line.split("[")[1].split(".")[0] for line in lines if line.startswith("persona[")}
    assert rows == {"0", "1", "2", "3"}


def test_a_fine_tuning_seed_shows_its_own_persona_rows(make_demo_config):
  c = make_demo_config()
  shown = {}
  for k in (0, 1):
    lines = []
    show_batch.show(c, "persona", 0, 3, write=lines.append, finetune_seed=k)
    shown[k] = lines
  assert "fine-tuning seed 1" in shown[1][0] and "fine-tuning seed" not in shown[0][0]
  assert shown[0][1:] != shown[1][1:]
  plain = []
  show_batch.show(c, "persona", 0, 3, write=plain.append)
  assert plain == shown[0]


def test_command_line_prints_rows_and_refuses_unknown_personas():
  cmd = [
    sys.executable,
    "-m",
    "experiments.tools.show_batch",
    f"--config={tiny_runs.DEMO}:runlocal",
    "--step=2",
    "--rows=2",
  ]
  ok = subprocess.run(
    cmd, cwd=tiny_runs.ROOT, env=tiny_runs.env(), capture_output=True, text=True, timeout=120
  )
  assert ok.returncode == 0, ok.stderr[-2000:]
  assert "base[0.1]" in ok.stdout and "base[1.1]" in ok.stdout and "base[2." not in ok.stdout
  bad = subprocess.run(
    cmd + ["--stage=persona", "--persona=sarcastic"],
    cwd=tiny_runs.ROOT,
    env=tiny_runs.env(),
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert bad.returncode != 0 and "--persona='sarcastic' must be one of" in bad.stderr


@pytest.mark.parametrize(
  "kwargs, words",
  [
    ({"rho": 2.0}, ["--rho=2", "[0, 1]"]),
    ({"persona": "sarcastic"}, ["--persona='sarcastic'", "warm"]),
    ({"step": -1}, ["--step=-1", ">= 0"]),
  ],
)
def test_values_the_main_command_refuses_are_refused_here_too(make_demo_config, kwargs, words):
  args = {"stage": "persona", "seed": 0, "step": 0, **kwargs}
  with pytest.raises(ValueError) as raised:
    show_batch.show(
      make_demo_config(),
      args.pop("stage"),
      args.pop("seed"),
      args.pop("step"),
      write=lambda _: None,
      **args,
    )
  for w in words:
    assert w in str(raised.value)
