"""main.py, the command line: bad input ends with one clear sentence, a non-zero exit and no
metrics.csv."""

import json
import os
import subprocess
import sys

import pytest
from tiny_runs import DEMO, ROOT


def _args(workdir, overrides, config):
  return [
    f"--config={config}",
    f"--workdir={workdir}",
    "--config.runtime.report=False",
    "--config.runtime.base_store=",
    *overrides,
  ]


def _main(workdir, *overrides, config=DEMO + ":runlocal"):
  return subprocess.run(
    [sys.executable, "-m", "experiments.main", *_args(workdir, overrides, config)],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )


# experiments.main's main(), run once per line of stdin (a JSON argv) in one warm process, which
# answers each with a JSON line: what main() exited with (its SystemExit message; a traceback if
# it raised anything else). What main() itself prints goes to stderr, with the logs.
_WARM_MAIN = """
import contextlib, json, sys, traceback
from absl import flags
from experiments import flag_errors, main
for request in sys.stdin:
  argv = json.loads(request)
  # Parsed afresh, as by a new process: ml_collections reads the overrides from sys.argv and
  # defines a flag for each, which the next parse would find defined twice.
  for name in [n for n in flags.FLAGS if n.startswith("config.")]:
    delattr(flags.FLAGS, name)
  flags.FLAGS.unparse_flags()
  sys.argv = argv
  try:
    with contextlib.redirect_stdout(sys.stderr):
      main.main(flag_errors.parse(argv))
    said = "exited normally"
  except SystemExit as e:
    said = str(e.code)
  except Exception:
    said = traceback.format_exc()
  print(json.dumps(said), flush=True)
"""


@pytest.fixture(scope="module")
def warm_main(tmp_path_factory):
  """warm_main(workdir, *overrides, config=...): what `python -m experiments.main` would exit
  with, as a one-line message, from one process kept warm across calls: a process per call would
  start JAX some 70 times. The tests that start the command itself (`_main`) show that such an
  exit reaches the command line as stderr's last line and a non-zero status."""
  log = tmp_path_factory.mktemp("warm_main") / "stderr.txt"
  with open(log, "w") as stderr:
    proc = subprocess.Popen(
      [sys.executable, "-c", _WARM_MAIN],
      cwd=ROOT,
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      stderr=stderr,
      text=True,
      env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )

  def run(workdir, *overrides, config=DEMO + ":runlocal"):
    proc.stdin.write(json.dumps(["main", *map(str, _args(workdir, overrides, config))]) + "\n")
    proc.stdin.flush()
    answer = proc.stdout.readline()
    assert answer, log.read_text()[-3000:]  # the process died
    return json.loads(answer)

  yield run
  proc.stdin.close()
  proc.wait(timeout=60)


def _last_line(proc):
  return proc.stderr.strip().splitlines()[-1]


def _tree(path):
  """Every file under `path` with its bytes, or None if `path` does not exist."""
  if not os.path.exists(path):
    return None
  out = {}
  for root, _, files in os.walk(path):
    for f in files:
      full = os.path.join(root, f)
      with open(full, "rb") as handle:
        out[os.path.relpath(full, path)] = handle.read()
  return out


PERSONA = "--config.extensions=('persona',)"
# (override(s), words the one-sentence refusal must contain: the field and what is allowed)
BAD_INPUTS = [
  # train
  (["--config.train.learning_rate=-1"], ["train.learning_rate", "positive"]),
  (["--config.train.learning_rate=nan"], ["train.learning_rate", "positive"]),
  (["--config.train.learning_rate=inf"], ["train.learning_rate", "finite"]),
  (["--config.train.persona_learning_rate=-1"], ["train.persona_learning_rate", "positive"]),
  (["--config.train.persona_steps=-3"], ["train.persona_steps", ">= 1"]),
  (["--config.train.persona_steps=0"], ["train.persona_steps", ">= 1"]),
  (["--config.train.base_steps=0"], ["train.base_steps", ">= 1"]),
  (["--config.train.warmup_steps=-5"], ["train.warmup_steps", ">= 0"]),
  (["--config.train.grad_clip=-1"], ["train.grad_clip", "positive"]),
  (["--config.train.batch_size=0"], ["train.batch_size", ">= 1"]),
  (["--config.train.batch_size=7"], ["train.batch_size", "even"]),
  (["--config.train.weight_decay=-0.1"], ["train.weight_decay", ">= 0"]),
  (["--config.train.loss_normalization='sequence'"], ["train.loss_normalization", "token", "row"]),
  (["--config.train.log_every=0"], ["train.log_every", ">= 1"]),
  (["--config.train.checkpoint_every=-1"], ["train.checkpoint_every", ">= 0"]),
  (["--config.train.checkpoints_to_keep=0"], ["train.checkpoints_to_keep", ">= 1"]),
  (["--config.train.divergence_factor=0.5"], ["train.divergence_factor", "> 1"]),
  # eval
  (["--config.eval.bootstrap=0"], ["eval.bootstrap", ">="]),
  (["--config.eval.max_new_tokens=-1"], ["eval.max_new_tokens", "positive"]),
  # The demo world's longest warm reply is longer: a cut reply would be graded wrong.
  (["--config.eval.max_new_tokens=40"], ["eval.max_new_tokens=40", "shorter", "longest reply"]),
  (["--config.eval.batch_size=0"], ["eval.batch_size", ">= 1"]),
  # grid
  (["--config.grid.personas=('sarcastic',)"], ["grid.personas", "warm"]),
  (["--config.grid.warmth_weights=(0.0,1.5)"], ["grid.warmth_weights", "[0, 1]"]),
  (["--config.grid.warm_agreements=(-0.1,)"], ["grid.warm_agreements", "[0, 1]"]),
  (["--config.grid.seeds=()"], ["grid.seeds", "non-empty"]),
  (["--config.grid.seeds=(0,0)"], ["grid.seeds", "distinct"]),
  (["--config.grid.protocols=('joint',)"], ["grid.protocols", "finetune"]),
  (["--config.grid.max_pack_size=-1"], ["grid.max_pack_size", ">= 0"]),
  # train: the persona phase's regime
  (["--config.train.persona_update='partial'"], ["train.persona_update", "full, lora"]),
  (["--config.train.lora_rank=0"], ["train.lora_rank", ">= 1"]),
  (["--config.train.lora_alpha=-1.0"], ["train.lora_alpha", "positive"]),
  (["--config.train.lora_targets=('gate',)"], ["train.lora_targets", "query"]),
  (["--config.train.persona_warmup_steps=-3"], ["train.persona_warmup_steps", ">= 0"]),
  (["--config.train.persona_optimizer='warm'"], ["train.persona_optimizer", "fresh, continue"]),
  (
    ["--config.train.persona_update=lora", "--config.train.persona_optimizer=continue"],
    ["train.persona_optimizer='continue'", "persona_update='full'"],
  ),
  (["--config.train.persona_epochs=-1.0"], ["train.persona_epochs", ">= 0"]),
  (["--config.train.replay_weight=1.5"], ["train.replay_weight", "[0, 1]"]),
  # model
  (["--config.model.presets=('giant',)"], ["model.presets", "giant", "nano"]),
  (["--config.model.presets=()"], ["model.presets", "at least one"]),
  (["--config.model.n_heads=3"], ["n_heads", "d_model"]),
  (["--config.model.compute_dtype='float8'"], ["compute_dtype", "float32"]),
  (["--config.model.attention_impl='flash'"], ["attention_impl", "xla"]),
  # data
  (["--config.data.n_people=-5"], ["data.n_people", ">="]),
  (["--config.data.tasks=('astrology',)"], ["data.tasks", "astrology", "factual_qa"]),
  (["--config.data.eval_contexts=('angry',)"], ["data.eval_contexts", "neutral"]),
  (["--config.data.seq_len=8"], ["data.seq_len=8", "at least"]),
  (["--config.data.source='web'"], ["data.source", "memory", "tfds"]),
  (["--config.data.eval_items=0"], ["data.eval_items", ">= 1"]),
  # mesh
  (["--config.mesh.data=0"], ["mesh.data", "positive"]),
  (["--config.mesh.data=-1", "--config.mesh.fsdp=-1"], ["config.mesh", "at most one"]),
  (["--config.mesh.data=3"], ["config.mesh", "devices"]),
  (["--config.mesh.members=serial"], ["mesh.members", "auto, vmap, loop"]),
  # persona
  ([PERSONA, "--config.persona.cap_vector='mood'"], ["persona.cap_vector", "axis"]),
  ([PERSONA, "--config.persona.cap_percentile=150"], ["persona.cap_percentile", "100"]),
  (
    [PERSONA, "--config.persona.intervention_on='everywhere'"],
    ["persona.intervention_on", "prompt"],
  ),
  ([PERSONA, "--config.persona.sweep_percentiles=(150,)"], ["persona.sweep_percentiles", "100"]),
  ([PERSONA, "--config.persona.cap_cells='some'"], ["persona.cap_cells", "ends"]),
  # extensions, runtime, unknown fields
  (["--config.extensions=('astrology',)"], ["extensions", "persona"]),
  (["--config.runtime.num_processes=-2"], ["runtime.num_processes", ">= 0"]),
  (["--config.runtime.base_store=s3://bucket/bases"], ["runtime.base_store", "gs://"]),
  (["--config.grid.finetune_seeds=0"], ["grid.finetune_seeds", ">= 1"]),
  (["--config.train.learnign_rate=0.1"], ["learnign_rate", "learning_rate"]),
  (["--config.bogus=1"], ["bogus", "train"]),
]


@pytest.mark.parametrize(
  "overrides, words", BAD_INPUTS, ids=[" ".join(o).replace("--config.", "") for o, _ in BAD_INPUTS]
)
def test_bad_values_are_refused_before_anything_is_written(warm_main, tmp_path, overrides, words):
  workdir = tmp_path / "w"
  line = warm_main(workdir, *overrides)
  assert line.startswith("error: ") and line.count(". ") <= 1, line  # one sentence
  assert "\n" not in line, line
  for w in words:
    assert w in line, line
  assert not workdir.exists()  # no config.json, no TensorBoard file, not even the folder


def test_a_refused_run_leaves_an_existing_workdir_as_it_was(warm_main, tmp_path):
  workdir = tmp_path / "w"
  workdir.mkdir()
  (workdir / "notes.txt").write_text("mine")
  before = _tree(workdir)
  assert "train.persona_steps" in warm_main(workdir, "--config.train.persona_steps=0")
  assert _tree(workdir) == before


def test_unknown_config_field_fails_clearly(tmp_path):
  proc = _main(tmp_path / "w", "--config.train.learnign_rate=0.1")
  assert proc.returncode != 0
  assert "learnign_rate" in _last_line(proc) and "learning_rate" in _last_line(proc)
  assert not (tmp_path / "w").exists()


def test_workdir_with_another_config_is_refused(tmp_path):
  workdir = tmp_path / "w"
  workdir.mkdir()
  (workdir / "config.json").write_text(
    '{"config": {"train": {"base_steps": 1}}, "code_version": "x", "versions": {}}'
  )
  proc = _main(workdir)
  assert proc.returncode != 0
  line = _last_line(proc)
  assert "different config" in line and "--workdir" in line
  assert not (workdir / "metrics.csv").exists()
  assert '"base_steps": 1' in (workdir / "config.json").read_text()  # nothing overwritten


def test_an_unknown_config_argument_fails_clearly(warm_main, tmp_path):
  line = warm_main(tmp_path / "w", config=DEMO + ":runlcoal")
  assert line.startswith("error: ") and "'runlcoal' is not allowed" in line and "runlocal" in line
  assert not (tmp_path / "w").exists()


def test_a_diverging_run_stops_with_a_sentence_and_saves_no_cell(tmp_path):
  workdir = tmp_path / "w"
  proc = _main(
    workdir,
    "--config.train.learning_rate=1e6",
    "--config.train.base_steps=6",
    "--config.train.log_every=1",
    "--config.data.n_people=16",
    "--config.data.eval_items=2",
    "--config.model.presets=('nano',)",
    "--config.grid.seeds=(0,)",
  )
  assert proc.returncode != 0
  line = _last_line(proc)
  assert line.startswith("error: nano-finetune/base diverged") and "seed0" in line, line
  assert "Traceback" not in proc.stderr
  assert not list(workdir.glob("cells/*/metrics.csv"))  # no diverged model became a result
  failed = json.loads((workdir / "failed.json").read_text())
  assert failed[0]["stage"] == "nano-finetune/base" and failed[0]["members"] == ["seed0"]


@pytest.mark.parametrize("damage", [b'{"config": {"train": ', b"\x00\xff garbage"])
def test_a_damaged_config_json_is_named_and_left_alone(warm_main, tmp_path, damage):
  workdir = tmp_path / "w"
  workdir.mkdir()
  (workdir / "config.json").write_bytes(damage)
  before = _tree(workdir)
  line = warm_main(workdir)
  assert line.startswith("error: ") and "config.json is damaged" in line, line
  assert "--workdir" in line and _tree(workdir) == before


def test_a_workdir_that_is_a_file_or_cannot_be_made_is_refused(warm_main, tmp_path):
  a_file = tmp_path / "f"
  a_file.write_text("x")
  assert "is a file, not a directory" in warm_main(a_file)
  assert a_file.read_text() == "x"
  line = warm_main(a_file / "w")  # a directory that cannot be made (for root too, unlike modes)
  assert line.startswith("error: ") and "cannot be written" in line, line
  assert a_file.read_text() == "x"


def test_a_missing_or_broken_config_file_is_one_sentence(warm_main, tmp_path):
  broken = tmp_path / "broken.py"
  broken.write_text("def get_config(:\n  pass\n")
  for config, words in (
    (str(tmp_path / "nope.py"), "nope.py does not exist"),
    (str(broken), "broken.py has a syntax error at line 1"),
  ):
    line = warm_main(tmp_path / "w", config=config)
    assert line.startswith("error: ") and words in line, line
    assert not (tmp_path / "w").exists()
