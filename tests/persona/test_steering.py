"""Tests for preventative steering (experiments/persona/steering.py) through the training step."""

import jax
import numpy as np
import pytest
from tiny_runs import expand

from experiments import data, grid, resolve, stage, train
from experiments.persona import steering
from experiments.persona.geometry import SeedGeometry

jax.config.update("jax_numpy_rank_promotion", "raise")

STEPS = 3


@pytest.fixture(scope="module")
def pieces(make_demo12_config, demo12_corpus, demo12_model_config):
  """(config, corpus, model config, a random geometry): 12 people, 6 cities, batches of 8."""
  mcfg = demo12_model_config
  rng = np.random.default_rng(0)
  geom = SeedGeometry(
    rng.normal(size=(3, mcfg.n_layers, mcfg.d_model)), None, None, None, None, {}, np.zeros(0, bool)
  )
  return make_demo12_config(), demo12_corpus, mcfg, geom


def _train(pieces, cells, steer):
  """STEPS persona-phase steps of `cells`, all from the same initial model."""
  config, corpus, mcfg, _ = pieces
  _, state_E = train.init_states(mcfg, [0] * len(cells))
  st = stage.imitation(
    "persona",
    "p",
    cells,
    STEPS,
    config.train,
    mcfg,
    data.Batches(corpus, 0, config.train.batch_size).persona(cells, 0),
    config.train.persona_learning_rate,
    steer=steer,
  )
  state_E, _, history = train.train_stage(st, state_E, options=train.Options(log_every=1))
  return jax.device_get(state_E), history


def _member(state_E, e):
  return jax.tree.leaves(jax.tree.map(lambda a: a[e], state_E))


def _warm(lam=1.0):
  return grid.Cell("nano", "finetune", "warm", lam, 0.0, 0)


def _twin(alpha, layers):
  return steering.SteeredCell("nano", "finetune", "warm", 1.0, 0.0, 0, alpha=alpha, layers=layers)


@pytest.fixture(scope="module")
def steered_pack(pieces):
  """One steered pack: a plain cell, an α = 0 twin and an α = 8 twin (one compilation)."""
  cells = [_warm(), _twin(0.0, (1,)), _twin(8.0, (0, 1))]
  steer = steering.training_intervention(cells, {0: pieces[3]})
  assert steer is not None
  return _train(pieces, cells, steer)


def test_alpha_zero_equals_plain_fine_tuning(pieces, steered_pack):
  """A steered twin with α = 0, and a plain cell in a steered pack, train exactly as without."""
  steered, _ = steered_pack
  # The same pack size: XLA may block a vmapped matmul differently for another E.
  plain, _ = _train(pieces, [_warm()] * 3, None)
  for e in range(2):
    for a, b in zip(_member(steered, e), _member(plain, e)):
      np.testing.assert_array_equal(a, b)


def test_nonzero_alpha_steers_only_the_persona_rows(steered_pack):
  steered, history = steered_pack
  first = history[0]
  assert first["base_loss"][0] == first["base_loss"][2]  # the base rows are never steered
  assert first["persona_loss"][0] != first["persona_loss"][2]
  assert any(not np.array_equal(a, b) for a, b in zip(_member(steered, 0), _member(steered, 2)))


def test_no_steered_cell_means_no_intervention(pieces):
  assert steering.training_intervention([_warm()], {0: pieces[3]}) is None


def test_steered_twins_ids_labels_and_plain_twin():
  cells = [
    grid.Cell("nano", "finetune", "none", 0.0, 0.0, 0),
    _warm(0.0),
    _warm(0.5),
    grid.Cell("nano", "finetune", "cold", 1.0, 0.0, 0),
    _warm(1.0),
  ]
  twins = steering.extra_cells(cells, [4.0, -2.0], "warmth", lambda preset: (1,))
  assert [t.id for t in twins] == [
    "nano-finetune-warm-l1-r0-s0-psteer4-L1",
    "nano-finetune-warm-l1-r0-s0-psteer-2-L1",
  ]
  assert twins[0].intervention == "train-steer+4:L1"
  assert twins[1].intervention == "train-steer-2:L1"
  assert twins[0].plain == _warm(1.0) and twins[0].pack == _warm(1.0).pack
  syco = steering.extra_cells(cells, [4.0], "sycophancy", lambda preset: (0, 1))
  assert syco[0].intervention == "train-steer[sycophancy]+4:L0-1"


def test_steer_default_adds_the_presets_tested_alpha():
  from experiments.configs import persona as persona_config  # pylint: disable=g-import-not-at-top
  from experiments.persona import defaults  # pylint: disable=g-import-not-at-top

  c = persona_config.get_config("runlocal")
  c.persona.steer_alphas, c.persona.steer_default = (), True

  def twins_of(config):
    cfg = resolve.resolve(config)
    return cfg.cells()[len(expand(config)) :]

  twins = twins_of(c)
  assert twins and all(isinstance(x, steering.SteeredCell) for x in twins)
  assert {t.alpha for t in twins} == {defaults.TESTED["nano"]["steer_alpha"]}
  c.persona.steer_default = False
  assert twins_of(c) == []
