"""Training: loss goes down and facts are learned; λ = 0 makes the persona data irrelevant; LoRA
moves only its adapters; the replay weight and a continued optimizer are what they say."""

import dataclasses
import functools

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_runs import resolved_regimes

from experiments import data, evaluate, grid, stage, train
from experiments.runtime import members
from models import Transformer
from models.config import LORA_TARGETS
from tasks.dialogue import Turn
from tasks.items import build_items
from tasks.mixtures import EvalSet

# The world of 12 people and 6 cities (tests/conftest.py: make_demo12_config, demo12_corpus,
# demo12_model_config, demo12_model): small enough to learn its trained facts in 400 steps.


def _config(make_demo12_config, **train):
  c = make_demo12_config()
  for k, v in train.items():
    c.train[k] = v
  return c


def _train_evalset(corpus, task):
  """Trained (not held-out) items of a task, as an EvalSet in the neutral context."""
  items = build_items(corpus.world, task, "train")
  turns = [Turn("neutral", None, 0, 0)] * len(items)
  from tasks.dialogue import render_prompt

  enc = [
    [corpus.tokenizer.bos] + corpus.tokenizer.encode(render_prompt(i, t))
    for i, t in zip(items, turns)
  ]
  width = max(map(len, enc))
  prompts = np.zeros((len(enc), width), np.int32)
  mask = np.zeros_like(prompts)
  for r, e in enumerate(enc):
    prompts[r, width - len(e) :], mask[r, width - len(e) :] = e, 1
  return EvalSet(items, turns, prompts, mask)


def test_training_reduces_loss_and_learns_trained_facts(
  make_demo12_config, demo12_corpus, demo12_model_config, demo12_model, xla_optimised
):
  config = _config(
    make_demo12_config,
    base_steps=400,
    batch_size=32,
    learning_rate=1e-2,
    warmup_steps=20,
    log_every=400,
  )
  corpus, mcfg = demo12_corpus, demo12_model_config
  graphdef, state_E = demo12_model
  state_E = jax.tree.map(jnp.copy, state_E)  # train_stage donates it; the fixture's stays intact
  batches = data.Batches(corpus, 0, config.train.batch_size)
  first = train.imitation_loss(
    jax.tree.map(lambda a: a[0], state_E),
    graphdef,
    jax.tree.map(lambda a: a[0], batches.base([0])(0)),
    {"lam": 0.0, "rho": 0.0},
  )[0]
  base = stage.imitation(
    "base",
    "base",
    [grid.Cell("nano", "finetune", "none", 0.0, 0.0, 0)],
    config.train.base_steps,
    config.train,
    mcfg,
    batches.base([0]),
    1e-2,
  )
  state_E, _, history = train.train_stage(base, state_E, options=train.Options(log_every=400))
  assert float(history[-1]["loss"][0]) < 0.6 * float(first)
  evalset = _train_evalset(corpus, "factual_qa")  # four options: chance error is 0.75
  errors = evaluate.mc_errors(graphdef, state_E, evalset, corpus.tokenizer, 256)[0]
  assert np.mean(errors) < 0.5, np.mean(errors)


def test_lambda_zero_gives_bit_identical_parameters_for_warm_and_cold(
  make_demo12_config, demo12_corpus, demo12_model_config
):
  config = _config(make_demo12_config, persona_steps=5, batch_size=8)
  corpus, mcfg = demo12_corpus, demo12_model_config
  cells = [
    grid.Cell("nano", "finetune", p, lam, 0.0, 0)
    for p, lam in (("warm", 0.0), ("cold", 0.0), ("warm", 1.0), ("cold", 1.0))
  ]
  _, state_E = train.init_states(mcfg, [0] * len(cells))
  st = stage.imitation(
    "persona",
    "p",
    cells,
    5,
    config.train,
    mcfg,
    data.Batches(corpus, 0, config.train.batch_size).persona(cells, 0),
    1e-2,
  )
  state_E, _, _ = train.train_stage(st, state_E, options=train.Options(log_every=5))
  leaves = [np.asarray(x) for x in jax.tree.leaves(state_E)]
  assert all(np.array_equal(x[0], x[1]) for x in leaves)  # λ = 0: warm ≡ cold
  assert any(not np.array_equal(x[2], x[3]) for x in leaves)  # λ = 1: the data matter


@pytest.mark.parametrize("mode", members.MODES[1:])
def test_packed_step_equals_single_step(
  make_demo12_config, demo12_corpus, demo12_model_config, mode, monkeypatch
):
  monkeypatch.setattr(members, "_mode", [mode])  # vmapped or looped members, restored after
  config = _config(make_demo12_config, batch_size=8)
  corpus, mcfg = demo12_corpus, demo12_model_config
  cells = [grid.Cell("nano", "finetune", "warm", lam, 0.0, s) for lam, s in ((0.5, 0), (1.0, 1))]
  graphdef, state_E = train.init_states(mcfg, [0, 1])
  batch = data.Batches(corpus, 0, 8).persona(cells, 0)(0)
  opt = train.make_optimizer(config.train, 10)
  opt_E = jax.vmap(opt.init)(state_E)
  inputs = {
    k: np.array(v, np.float32)
    for k, v in (("lam", [0.5, 1.0]), ("rho", [0.0, 0.0]), ("lr", [1e-2, 1e-2]))
  }
  copy = lambda t: jax.tree.map(np.array, t)  # the packed step donates its inputs
  packed, _, _ = train.make_step(graphdef, opt, train.imitation_loss)(
    copy(state_E), copy(opt_E), batch, inputs
  )
  for e in range(2):
    take = lambda t: jax.tree.map(lambda a: a[e], t)
    single, _, _ = jax.jit(
      functools.partial(train.train_step, graphdef, opt, train.imitation_loss)
    )(take(state_E), take(opt_E), take(batch), take(inputs))
    for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(take(packed))):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_rho_selects_validating_rows_only_where_asked(demo12_corpus):
  b = demo12_corpus.batch("warm", 0, 0, 64)
  tokens0, _ = train.persona_rows(b, 0.0)
  tokens1, _ = train.persona_rows(b, 1.0)
  np.testing.assert_array_equal(tokens0, b["tokens"])
  np.testing.assert_array_equal(np.asarray(tokens1)[b["has_alt"]], b["alt_tokens"][b["has_alt"]])
  np.testing.assert_array_equal(np.asarray(tokens1)[~b["has_alt"]], b["tokens"][~b["has_alt"]])


def _loss_with(demo12_model, normalization):
  """token_loss of a two-row batch whose rows carry 1 and 3 target tokens."""
  graphdef, state_E = demo12_model
  model = nnx.merge(graphdef, jax.tree.map(lambda a: a[0], state_E))
  tokens = np.array([[1, 5, 6, 7, 8, 0], [1, 9, 10, 11, 12, 13]], np.int32)
  mask = np.array([[0, 0, 0, 0, 1, 0], [0, 0, 1, 1, 1, 0]], np.uint8)
  per_row = [float(train.token_loss(model, tokens[r : r + 1], mask[r : r + 1])) for r in range(2)]
  return float(train.token_loss(model, tokens, mask, normalization=normalization)), per_row


def test_row_normalisation_weighs_every_example_the_same(demo12_model):
  row, (short, long) = _loss_with(demo12_model, "row")
  np.testing.assert_allclose(row, (short + long) / 2, rtol=1e-5)


def test_token_normalisation_weighs_every_target_token_the_same(demo12_model):
  token, (short, long) = _loss_with(demo12_model, "token")
  np.testing.assert_allclose(token, (1 * short + 3 * long) / 4, rtol=1e-5)
  assert abs(token - (short + long) / 2) > 1e-4  # the two really differ on this batch


def _lora(mcfg, rank=4):
  return dataclasses.replace(mcfg, lora_rank=rank, lora_targets=LORA_TARGETS)


def _persona_batch(corpus, cells):
  return jax.tree.map(lambda a: a[0], data.Batches(corpus, 0, 8).persona(cells, 0)(0))


@pytest.mark.parametrize("update", ["lora", "lora_embed"])
def test_lora_step_moves_only_the_adapters(
  make_demo12_config, demo12_corpus, demo12_model_config, demo12_model, update
):
  # Weight decay on: AdamW's decoupled decay would move a frozen matrix with a zero gradient.
  config = _config(make_demo12_config, weight_decay=0.1)
  graphdef0, base_E = demo12_model
  mcfg = _lora(demo12_model_config)
  graphdef = nnx.graphdef(nnx.eval_shape(lambda: Transformer(mcfg, rngs=nnx.Rngs(0))))
  adapters = jax.tree.map(lambda a: a[0], train.init_adapters(mcfg, [0]))
  base = jax.tree.map(lambda a: a[0], base_E)
  state = nnx.merge_state(adapters, base)
  cell = grid.Cell("nano", "finetune", "warm", 1.0, 0.0, 0)
  batch = _persona_batch(demo12_corpus, [cell])
  inputs = {"lam": 1.0, "rho": 0.0, "lr": 1e-2}
  # B starts at zero: the adapted model starts as its base model.
  tokens = batch["persona"]["tokens"][:2, :-1]
  np.testing.assert_array_equal(
    nnx.merge(graphdef, state)(tokens).logits_BTV, nnx.merge(graphdef0, base)(tokens).logits_BTV
  )
  opt = train.make_optimizer(config.train, 10)
  trained = train.trainable(state, update)[0]
  opt_state = opt.init(trained)
  assert jax.tree.structure(opt_state[1].mu) == jax.tree.structure(trained)  # what it trains
  step = jax.jit(
    functools.partial(train.train_step, graphdef, opt, train.imitation_loss, update=update)
  )
  new = state
  for _ in range(2):  # the first step moves only B (A's gradient is zero while B is)
    new, opt_state, _ = step(new, opt_state, batch, inputs)
  lora_new, frozen_new = nnx.split_state(new, nnx.LoRAParam, ...)
  embed = [path for path, _ in nnx.to_flat_state(frozen_new)].index(("embed",))
  for k, (a, b) in enumerate(zip(jax.tree.leaves(frozen_new), jax.tree.leaves(base))):
    if update == "lora_embed" and k == embed:  # trained in full beside the adapters
      assert not np.array_equal(a, b)
    else:
      np.testing.assert_array_equal(a, b)  # bit-identical base
  moved = [
    not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(lora_new), jax.tree.leaves(adapters))
  ]
  assert all(moved), "every adapter matrix (A and B) moves within two steps"


def test_update_norms_measure_the_weight_change_with_adapters_merged(demo12_model_config):
  """‖θ − θ_base‖ per member, against its own base row: a full update's plain distance; an
  adapter's A·B·α/r (zero while B is, so an adapted model starts at distance 0)."""
  _, base_E = train.init_states(demo12_model_config, [0, 1])
  rng = np.random.default_rng(0)
  moved = jax.tree.map(lambda a: a + jnp.asarray(rng.normal(size=a.shape), a.dtype) * 0.01, base_E)
  flat = lambda tree: np.concatenate(
    [np.asarray(a).reshape(2, -1) for a in jax.tree.leaves(tree)], axis=1
  )
  want = np.linalg.norm(flat(moved) - flat(base_E), axis=1)
  np.testing.assert_allclose(train.update_norms(moved, base_E, 0.0), want, rtol=1e-5)
  # Against the other member's base model the distance is larger: rows are paired, not pooled.
  swapped = jax.tree.map(lambda a: a[::-1], base_E)
  assert (np.asarray(train.update_norms(moved, swapped, 0.0)) > 10 * want).all()
  mcfg = _lora(demo12_model_config, rank=2)
  adapted = nnx.merge_state(train.init_adapters(mcfg, [0, 1]), base_E)
  np.testing.assert_array_equal(train.update_norms(adapted, base_E, mcfg.lora_scale), [0.0, 0.0])
  lora, rest = nnx.split_state(adapted, nnx.LoRAParam, ...)
  lora = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), a.dtype), lora)
  want = np.zeros(2)
  for path, a in nnx.to_flat_state(lora):
    if path[-1] == "lora_a":
      b = dict(nnx.to_flat_state(lora))[path[:-1] + ("lora_b",)]
      for e in range(2):
        delta = np.asarray(a.get_value()[e]) @ np.asarray(b.get_value()[e]) * mcfg.lora_scale
        want[e] += (delta**2).sum()
  np.testing.assert_allclose(
    train.update_norms(nnx.merge_state(lora, rest), base_E, mcfg.lora_scale),
    np.sqrt(want),
    rtol=1e-5,
  )


def _single_weight_loss(state, graphdef, batch, inputs):
  """The imitation loss as written before the replay weight existed: (1-λ)·L_base + λ·L_persona."""
  model = nnx.merge(graphdef, state)
  base = train.token_loss(
    model, batch["base"]["tokens"], batch["base"]["mask"], **train.packing_of(batch["base"])
  )
  persona = train.token_loss(
    model,
    *train.persona_rows(batch["persona"], inputs["rho"]),
    None,
    "token",
    **train.packing_of(batch["persona"]),
  )
  loss = (1.0 - inputs["lam"]) * base + inputs["lam"] * persona
  return loss, {"loss": loss, "base_loss": base, "persona_loss": persona}


def test_replay_weight_one_minus_lambda_is_the_single_weight_loss_bit_for_bit(
  demo12_corpus, demo12_model
):
  graphdef, state_E = demo12_model
  state = jax.tree.map(lambda a: a[0], state_E)
  cell = grid.Cell("nano", "finetune", "warm", 0.3, 0.0, 0)
  batch = _persona_batch(demo12_corpus, [cell])
  lam = np.float32(0.3)
  loss = jax.jit(train.imitation_loss)
  plain, parts = loss(state, graphdef, batch, {"lam": lam, "rho": 0.0})
  replayed, _ = loss(
    state, graphdef, batch, {"lam": lam, "rho": 0.0, "replay": np.float32(1) - lam}
  )
  assert np.asarray(plain).tobytes() == np.asarray(replayed).tobytes()
  before, _ = jax.jit(_single_weight_loss)(state, graphdef, batch, {"lam": lam, "rho": 0.0})
  assert np.asarray(plain).tobytes() == np.asarray(before).tobytes()
  # A replay weight independent of λ: w·L_base + λ·L_persona.
  w1, _ = loss(state, graphdef, batch, {"lam": lam, "rho": 0.0, "replay": np.float32(1)})
  np.testing.assert_allclose(w1, parts["base_loss"] + lam * parts["persona_loss"], rtol=1e-6)


def test_a_default_regime_adds_no_replay_input(make_demo12_config):
  regime = resolved_regimes(make_demo12_config())[0]
  assert regime.name == "default" and regime.inputs(3) == {}
  cells = [grid.Cell("nano", "finetune", "warm", 1.0, 0.0, 0)]
  st = stage.imitation("persona", "p", cells, 5, regime.train, None, None, 1e-3, regime=regime)
  assert set(st.inputs) == {"lam", "rho", "lr", "steer"} and st.update == "full"


def test_continuing_the_optimizer_keeps_adam_and_restarts_the_schedule(
  make_demo12_config, demo12_model
):
  config = _config(make_demo12_config, warmup_steps=4)
  _, state_E = demo12_model
  opt = train.make_optimizer(config.train, 10)
  opt_E = jax.vmap(opt.init)(state_E)
  grads = jax.tree.map(jnp.ones_like, state_E)
  for _ in range(3):
    _, opt_E = jax.vmap(opt.update)(grads, opt_E, state_E)
  carried = train.continue_from(opt_E)
  adam = lambda o: o[1]
  assert int(adam(carried).count[0]) == 3  # bias correction goes on from base training's steps
  for a, b in zip(jax.tree.leaves(adam(carried)), jax.tree.leaves(adam(opt_E))):
    np.testing.assert_array_equal(a, b)
  assert int(carried[-1].count[0]) == 0 and int(opt_E[-1].count[0]) == 3
