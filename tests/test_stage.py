"""stage.py: a stage killed, preempted or diverging, rerun with the same command, ends bit-identical
to one that never stopped, or names the failed cell."""

import os
import random
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp
import pandas as pd
import pytest
import tiny_runs

STEPS = (
  "--config.train.base_steps=30",
  "--config.train.persona_steps=20",
  "--config.train.checkpoint_every=4",
  "--config.train.log_every=1",
)
STAGES = {"base": 30, "persona": 20}
STAGE_DIRS = ("nano-finetune/base", "nano-finetune/persona")


def _run(workdir, cmd=None):
  return tiny_runs.run(cmd or tiny_runs.main_cmd(workdir, *STEPS))


def _stop_at(workdir, stage, step, sig, cmd=None, ready=None):
  return tiny_runs.stop_at(cmd or tiny_runs.main_cmd(workdir, *STEPS), stage, step, sig, ready)


def _final_arrays(workdir):
  out = {}
  for name in STAGE_DIRS:
    path = os.path.join(workdir, "checkpoints", name)
    step = max(int(d) for d in os.listdir(path) if d.isdigit())
    state = ocp.StandardCheckpointer().restore(os.path.join(path, str(step), "state"))
    for k, v in _leaves(state, name):
      out[k] = np.asarray(v)
  return out


def _leaves(tree, prefix):
  if isinstance(tree, dict):
    for k, v in tree.items():
      yield from _leaves(v, f"{prefix}/{k}")
  else:
    yield prefix, tree


def _plant_half_written(workdir):
  """What a kill during a save leaves: a later step still under orbax's temporary name."""
  path = os.path.join(workdir, "checkpoints", STAGE_DIRS[0])
  steps = sorted(int(d) for d in os.listdir(path) if d.isdigit())
  if not steps:  # killed before the first save: there is nothing to copy
    return
  fake = os.path.join(path, f"{steps[-1] + 1}.orbax-checkpoint-tmp")
  shutil.copytree(os.path.join(path, str(steps[-1])), fake)
  for root, _, files in os.walk(fake):
    for f in files:
      with open(os.path.join(root, f), "w") as handle:
        handle.write("garbage")


def _assert_identical(a, b):
  for f in ("metrics.csv", "items.csv"):
    assert (a / f).read_bytes() == (b / f).read_bytes(), f
  ref, got = _final_arrays(a), _final_arrays(b)
  assert ref.keys() == got.keys()
  for k in ref:
    np.testing.assert_array_equal(got[k], ref[k], err_msg=k)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The workdir of the run the stopped ones are compared with, trained once for the module."""
  workdir = tmp_path_factory.mktemp("ref")
  _run(workdir)
  return workdir


@pytest.mark.slow
def test_sigkill_at_a_random_step_then_rerun_is_bit_identical(tmp_path, reference):
  rng = random.Random()
  stage = rng.choice(list(STAGES))
  step = rng.randint(1, STAGES[stage] - 1)
  code, _ = _stop_at(tmp_path / "killed", stage, step, signal.SIGKILL)
  assert code == -signal.SIGKILL, f"the run ended before {stage} step {step}"
  if os.path.isdir(tmp_path / "killed" / "checkpoints" / STAGE_DIRS[0]):
    _plant_half_written(tmp_path / "killed")
  rerun = _run(tmp_path / "killed")
  assert "resuming at step" in rerun.stderr or "finished earlier" in rerun.stderr or step < 4
  _assert_identical(reference, tmp_path / "killed")


@pytest.mark.slow
def test_sigterm_checkpoints_the_current_step_and_the_rerun_resumes_from_it(tmp_path, reference):
  code, err = _stop_at(tmp_path / "stopped", "persona", 7, signal.SIGTERM)
  stopped = re.search(r"stopped: persona stopped at step (\d+) of 20", err)
  assert code == 1 and stopped, err[-2000:]
  rerun = _run(tmp_path / "stopped")
  assert f"nano-finetune/persona: resuming at step {stopped.group(1)} " in rerun.stderr
  _assert_identical(reference, tmp_path / "stopped")
  # The base model's loss curve (log_every=1), restored with its finished stage on the rerun.
  m = pd.read_csv(tmp_path / "stopped" / "metrics.csv")
  curve = m[(m.metric == "loss") & (m.persona == "none")]
  assert len(curve) == STAGES["base"] and curve.tokens.is_monotonic_increasing
  assert curve.tokens.nunique() == STAGES["base"] and curve.value.iloc[-1] < curve.value.iloc[0]


@pytest.mark.slow
def test_sigterm_during_evaluation_stops_at_a_batch_and_the_rerun_matches(tmp_path, reference):
  # Small evaluation batches (a runtime field: results do not depend on it) give many boundaries.
  cmd = tiny_runs.main_cmd(tmp_path / "stopped", *STEPS, "--config.eval.batch_size=4")
  proc = subprocess.Popen(
    cmd,
    cwd=tiny_runs.ROOT,
    env=tiny_runs.env(),
    stderr=subprocess.PIPE,
    stdout=subprocess.DEVNULL,
    text=True,
  )
  for line in proc.stderr:
    m = re.search(r"eval replies of \d+ model\(s\), \d+ prompts: (\d+)/(\d+) batches", line)
    if m and int(m.group(1)) < int(m.group(2)) // 2:
      proc.send_signal(signal.SIGTERM)
      break
  rest = proc.stderr.read()
  assert proc.wait(timeout=60) == 1, rest[-2000:]
  assert re.search(
    r"stopped: evaluation \(replies .*\) at batch \d+ of \d+ stopped on SIGTERM", rest
  ), rest[-2000:]
  assert " persona step " not in rest  # it stopped there, not at the next training step
  _run(tmp_path / "stopped", cmd)
  _assert_identical(reference, tmp_path / "stopped")


def _objectives_cmd(workdir):
  """The objectives config, small: in each regime affect trains 8 steps, emotion_rl 2 of warm-up
  then 6 of RL, saving every 2."""
  config = os.path.join(tiny_runs.ROOT, "experiments", "configs", "objectives.py")
  return [
    sys.executable,
    "-m",
    "experiments.main",
    f"--config={config}:runlocal",
    f"--workdir={workdir}",
    "--config.extensions=('objectives',)",
    "--config.data.eval_items=1",
    "--config.train.persona_steps=8",
    "--config.grid.regimes.chosen.persona_steps=8",
    "--config.objectives.rl_warmup_steps=2",
    "--config.grid.seeds=(0,)",
    "--config.objectives.methods=('affect', 'emotion_rl')",
    "--config.train.checkpoint_every=2",
    "--config.train.log_every=1",
    "--config.eval.bootstrap=20",
    "--config.runtime.report=False",
  ]


@pytest.mark.slow
def test_an_objectives_run_killed_mid_phase_resumes_to_the_same_results(tmp_path):
  """GRPO samples from the current policy: the rerun must restore parameters, optimizer state
  and the episode journal, and sample the remaining steps exactly as the uninterrupted run did."""
  ref, killed = tmp_path / "ref", tmp_path / "killed"
  _run(ref, _objectives_cmd(ref))
  step = random.Random().randint(3, 5)
  # The config's first regime, `chosen`, trains first: the kill lands in its emotion_rl stage,
  # and the rerun then trains `forgetting` as the uninterrupted run did.
  pack = "nano-finetune@chosen"
  saved = killed / "checkpoints" / pack / "emotion_rl"
  has_save = lambda: saved.is_dir() and any(d.name.isdigit() for d in saved.iterdir())
  code, _ = _stop_at(
    killed, "emotion_rl", step, signal.SIGKILL, _objectives_cmd(killed), ready=has_save
  )
  assert code == -signal.SIGKILL, f"the run ended before emotion_rl step {step}"
  rerun = _run(killed, _objectives_cmd(killed))
  assert re.search(rf"{pack}/emotion_rl: (resuming at step|finished earlier)", rerun.stderr), (
    rerun.stderr[-3000:]
  )
  assert f"{pack}/emotion_rl_warmup: finished earlier" in rerun.stderr
  for f in (
    "metrics.csv",
    "items.csv",
    f"objectives/{pack}-emotion_rl-episodes.csv",
    "objectives/nano-finetune@forgetting-emotion_rl-episodes.csv",
  ):
    assert (ref / f).read_bytes() == (killed / f).read_bytes(), f
  episodes = (ref / "objectives" / f"{pack}-emotion_rl-episodes.csv").read_text().splitlines()
  assert len(episodes) == 1 + 6 * 8  # every RL step's 8 episodes (2 prompts × 4), none lost
  # TensorBoard: emotion_rl's run has its warm-up and RL curves, affect's has no rollout curves.
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top

  def tags(run):
    acc = event_accumulator.EventAccumulator(str(ref / "tb" / run))
    acc.Reload()
    return acc, set(acc.Tags()["scalars"])

  rl, rl_tags = tags(f"{pack}-emotion_rl-l1-r0-s0")
  assert {"train/reward", "train/ack_rate", "train/reply_tokens", "train/kl"} <= rl_tags
  assert [e.step for e in rl.Scalars("train/reward")] == list(range(33, 39))  # after 30 + 2
  assert [e.step for e in rl.Scalars("train/loss")][:2] == [31, 32]  # the warm-up's steps
  _, affect_tags = tags(f"{pack}-affect-l1-r0-s0")
  assert "train/kl" in affect_tags and "train/reward" not in affect_tags


def test_a_preempted_stage_resumes_to_the_same_parameters(
  tmp_path, monkeypatch, make_demo_config, demo_corpus, demo_model_config
):
  import jax  # pylint: disable=g-import-not-at-top

  from experiments import data, grid, stage, train
  from experiments.runtime import distributed, sharding
  from experiments.runtime.workdir import Workdir

  c, corpus, mcfg = make_demo_config(), demo_corpus, demo_model_config  # 16 people, batches of 8
  c.train.checkpoint_every, c.train.log_every = 0, 2
  mesh = sharding.make_mesh(c.mesh)
  base_cells = [grid.Cell("nano", "finetune", "none", 0.0, 0.0, s) for s in (0, 1)]
  st = stage.imitation(
    "base",
    "p/base",
    base_cells,
    6,
    c.train,
    mcfg,
    data.Batches(corpus, 0, 8).base([0, 1]),
    1e-2,
    members=["seed0", "seed1"],
  )
  init = lambda sh: train.init_states(mcfg, [0, 1], sh)[1]
  run = lambda name: stage.train_or_resume(
    c, Workdir(str(tmp_path / name), c.to_dict()), mesh, st, init
  )
  ref = run("ref")
  # Stopped on a logged step: the checkpoint must hold that step's losses, or the curve loses it.
  monkeypatch.setattr(distributed, "preempted", lambda step: step == 4)
  with pytest.raises(train.Preempted, match="step 4 of 6"):
    run("stopped")
  monkeypatch.undo()
  for got in (run("stopped"), run("stopped")):  # resumed, then restored (not retrained)
    for a, b in zip(jax.tree.leaves(ref.state), jax.tree.leaves(got.state)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(got.final["base_loss"], ref.final["base_loss"])
    np.testing.assert_array_equal(got.curve[0], [2, 4, 6])  # the loss curve, one row per log
    np.testing.assert_array_equal(got.curve[1], ref.curve[1])
    assert got.curve[1].shape == (3, 2)  # steps × members


def test_a_diverging_cell_is_named_and_no_checkpoint_holds_its_state(
  tmp_path, make_demo_config, demo_corpus, demo_model_config
):
  """Two packed cells, one with an absurd learning rate: the stage stops naming only that cell,
  the checkpoints written before keep finite parameters, and none is marked complete."""
  from experiments import data, grid, stage, train
  from experiments.runtime import checkpoints, sharding
  from experiments.runtime.workdir import Workdir

  c, corpus, mcfg = make_demo_config(), demo_corpus, demo_model_config
  c.train.checkpoint_every, c.train.log_every = 1, 1
  cells = [grid.Cell("nano", "finetune", "none", 0.0, 0.0, s) for s in (0, 1)]
  st = stage.imitation(
    "base",
    "p/base",
    cells,
    12,
    c.train,
    mcfg,
    data.Batches(corpus, 0, 8).base([0, 1]),
    1e-2,
    members=["steady", "bad"],
  )
  st.inputs["lr"] = np.array([1e-2, 1e6], np.float32)
  init = lambda sh: train.init_states(mcfg, [0, 1], sh)[1]
  workdir = Workdir(str(tmp_path / "w"), c.to_dict())
  with pytest.raises(train.Diverged, match=r"p/base diverged .*step \d+ \(.*bad") as raised:
    stage.train_or_resume(c, workdir, sharding.make_mesh(c.mesh), st, init)
  assert "steady" not in str(raised.value)
  graphdef, abstract = st.abstract
  with checkpoints.StageCheckpoints(workdir, "p/base", cleanup=False) as ckpt:
    step, meta = ckpt.latest()
    assert not meta["complete"] and step < 12
    state = ckpt.restore(step, abstract)[0]
  assert np.asarray(train.finite_members(state)).all()
  del graphdef


def test_an_exploding_loss_stops_the_stage(make_demo_config, demo_corpus, demo_model_config):
  from experiments import data, grid, stage, train

  c, corpus, mcfg = make_demo_config(), demo_corpus, demo_model_config
  st = stage.imitation(
    "base",
    "p/base",
    [grid.Cell("nano", "finetune", "none", 0.0, 0.0, 0)],
    3,
    c.train,
    mcfg,
    data.Batches(corpus, 0, 8).base([0]),
    1e-2,
    members=["s0"],
  )
  with pytest.raises(train.Diverged, match=r"step 4 \(s0 \(loss 50\)\)"):
    train.check_divergence(st, 4, [50.0], [[6.0], [4.0], [3.0]], factor=10.0)
  train.check_divergence(st, 4, [20.0], [[6.0], [4.0], [3.0]], factor=10.0)  # 5× the median: fine
  with pytest.raises(train.Diverged, match="loss nan"):
    train.check_divergence(st, 1, [float("nan")], [], factor=10.0)


@pytest.mark.slow
def test_a_lora_phase_killed_mid_phase_then_rerun_is_bit_identical(tmp_path):
  lora = ("--config.train.persona_update=lora", "--config.train.persona_learning_rate=0.01")
  cmd = lambda name: tiny_runs.main_cmd(tmp_path / name, *STEPS, *lora)
  _run(tmp_path / "ref", cmd("ref"))
  saved = tmp_path / "killed" / "checkpoints" / STAGE_DIRS[1] / "8"
  code, _ = _stop_at(
    tmp_path / "killed", "persona", 9, signal.SIGKILL, cmd=cmd("killed"), ready=saved.is_dir
  )
  assert code == -signal.SIGKILL, "the run ended before persona step 9"
  rerun = _run(tmp_path / "killed", cmd("killed"))
  assert re.search(r"nano-finetune/persona: resuming at step (8|12|16) ", rerun.stderr)
  _assert_identical(tmp_path / "ref", tmp_path / "killed")
  adapters = [k for k in _final_arrays(tmp_path / "killed") if "lora_b" in k]
  assert adapters and all(k.startswith(STAGE_DIRS[1]) for k in adapters)
