"""data.py: a packed (vmapped) set of cells trains and scores like the same cells trained one by
one."""

import dataclasses

import jax
import numpy as np
import pytest

from experiments import data, evaluate, grid, stage, train
from experiments.runtime import sharding
from tasks.mixtures import EvalSet, build_eval_set

STEPS = 4
CELLS = [
  grid.Cell("nano", "finetune", "warm", 1.0, 1.0, 0),
  grid.Cell("nano", "finetune", "cold", 0.5, 0.0, 1),
  grid.Cell("nano", "finetune", "warm", 0.0, 0.0, 2),
]


@pytest.fixture(scope="module")
def train_pack(make_demo_config, demo_corpus, demo_model_config):
  """train_pack(cells): (graphdef, state_E, losses) of the cells trained as one pack, in the world
  of 16 people with batches of 8 (tests/conftest.py)."""
  c, corpus, mcfg = make_demo_config(), demo_corpus, demo_model_config

  def run(cells):
    st = stage.imitation(
      "persona",
      "p",
      cells,
      STEPS,
      c.train,
      mcfg,
      data.Batches(corpus, 0, 8).persona(cells, 0),
      1e-2,
    )
    graphdef, abstract = train.abstract_states(mcfg, len(cells))
    sh = sharding.PackShardings(
      sharding.make_mesh(c.mesh),
      sharding.rules_of(c.mesh),
      abstract,
      jax.eval_shape(jax.vmap(st.optimizer.init), abstract),
      st.batches.shapes,
    )
    state_E = train.init_states(mcfg, [x.seed for x in cells], sh)[1]
    state_E, _, history = train.train_stage(
      st, state_E, shardings=sh, options=train.Options(log_every=1)
    )
    losses = {k: np.stack([h[k] for h in history]) for k in ("loss", "base_loss", "persona_loss")}
    return graphdef, state_E, losses

  return run


def test_packed_cells_match_cells_trained_one_by_one(train_pack, demo_corpus):
  corpus = demo_corpus
  graphdef, packed, packed_losses = train_pack(CELLS)
  full = build_eval_set(corpus)
  evalset = EvalSet(full.items[:32], full.turns[:32], full.prompts[:32], full.prompt_mask[:32])
  packed_mc = evaluate.mc_errors(graphdef, packed, evalset, corpus.tokenizer, 256)
  for e, cell in enumerate(CELLS[:2]):  # the third only keeps the pack from being a pair
    _, alone, losses = train_pack([cell])
    for k, v in losses.items():
      np.testing.assert_allclose(packed_losses[k][:, e], v[:, 0], rtol=1e-5, err_msg=k)
    for a, b in zip(jax.tree.leaves(packed), jax.tree.leaves(alone)):
      np.testing.assert_allclose(np.asarray(a)[e], np.asarray(b)[0], rtol=1e-4, atol=1e-6)
    alone_mc = evaluate.mc_errors(graphdef, alone, evalset, corpus.tokenizer, 256)
    np.testing.assert_array_equal(packed_mc[e], alone_mc[0])
  assert not np.allclose(packed_losses["loss"][:, 0], packed_losses["loss"][:, 1])


def test_each_finetune_seed_reads_its_own_persona_stream_and_adapters(demo_corpus):
  batches = data.Batches(demo_corpus, 0, 8)
  first = grid.Cell("nano", "finetune", "warm", 1.0, 0.0, 1)
  cells = [
    first,
    dataclasses.replace(first, finetune_seed=0),
    dataclasses.replace(first, finetune_seed=1),
    dataclasses.replace(first, finetune_seed=2),
  ]
  rows = batches.persona(cells, data.STAGE2_SEED_OFFSET)(3)["persona"]["tokens"]
  np.testing.assert_array_equal(rows[0], rows[1])  # replicate 0 is the cell as it always was
  assert not np.array_equal(rows[1], rows[2]) and not np.array_equal(rows[2], rows[3])
  keys = train.adapter_keys([5, 5, 5, 5], [0, 0, 1, 2])
  np.testing.assert_array_equal(keys[0], train.adapter_keys([5])[0])
  np.testing.assert_array_equal(keys[0], keys[1])
  assert len({k.tobytes() for k in keys}) == 3
