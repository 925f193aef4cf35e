"""TensorBoard: every run has its own directory with its curves, evaluation and factors."""

import os

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

RUNS = (
  "nano-finetune-none-l0-r0-s1",
  "nano-finetune-warm-l1-r0-s1",
  "nano-finetune-cold-l1-r0-s1",
  "nano-finetune@lora-warm-l1-r0-s1",
  "nano-finetune@lora-cold-l1-r0-s1",
  "nano-finetune@cont-warm-l1-r0-s1",
  "nano-finetune@cont-cold-l1-r0-s1",
)
REGIMES = {"none": "none", "@lora": "lora", "@cont": "cont"}  # else the train section's, default


def _load(path):
  acc = event_accumulator.EventAccumulator(path, size_guidance={event_accumulator.SCALARS: 0})
  acc.Reload()
  return acc


def test_every_run_has_its_curves_evaluation_and_hparams(tiny_finished_run):
  workdir, _ = tiny_finished_run
  assert sorted(os.listdir(os.path.join(workdir, "tb"))) == sorted(RUNS)
  for run in RUNS:
    acc = _load(os.path.join(workdir, "tb", run))
    tags = set(acc.Tags()["scalars"])
    assert {
      "train/loss",
      "train/learning_rate",
      "eval/error_rate",
      "eval/warmth_score",
      "eval/error_rate/factual_qa/neutral",
      "eval/error_rate/factual_qa/emotional_and_false_belief",
    } <= tags, (run, sorted(tags)[:20])
    steps = [e.step for e in acc.Scalars("train/loss")]
    # the base model: its 20 base steps; a persona run: its 6 steps after them
    if "@cont" not in run:  # whose budget is in epochs
      assert steps == ([5, 10, 15, 20] if "none" in run else [25, 26]), (run, steps)
    assert [e.step for e in acc.Scalars("eval/error_rate")] == [steps[-1]]
    assert all(e.value > 0 for e in acc.Scalars("train/learning_rate"))
    assert ("train/persona_loss" in tags) == ("none" not in run)  # none in the base stage
    content = acc.PluginTagToContent("hparams")
    info = plugin_data_pb2.HParamsPluginData.FromString(
      content["_hparams_/session_start_info"]
    ).session_start_info
    factors = {k: v.string_value or v.number_value for k, v in info.hparams.items()}
    persona = run.split("-")[2]
    assert factors["persona"] == persona and factors["seed"] == 1 and factors["preset"] == "nano"
    regime = next((v for k, v in REGIMES.items() if k in run), "default")
    assert factors["regime"] == regime, (run, factors)
