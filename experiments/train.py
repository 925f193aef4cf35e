"""Training: one functional, jitted step over split NNX state, mapped over a pack of cells.

A stage's loss takes (state, graphdef, batch, inputs): `inputs` are each cell's own values (λ, ρ,
the learning rate; a reference model or a steering intervention), arrays with leading axis E, so
every cell of a preset trains in one compiled program. The imitation loss is
`(1-λ)·L_base + λ·L_persona`, with half of each step's rows drawn from each mixture; the other
objectives (experiments/objectives/) bring their own loss and run through the same loop,
`train_stage`.

Given the pack's shardings (runtime/sharding.PackShardings) the same step is compiled for a mesh:
states, optimizer states, batches and inputs enter and leave with their shardings, the model's
activations are pinned by logical names, and parameters are initialised already sharded. Without
them it is a plain jit on the default device.
"""

import dataclasses
import time

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.runtime import heartbeat
from experiments.runtime.distributed import Preempted  # pylint: disable=unused-import
from experiments.runtime.members import over_members
from experiments.train_config import LOSS_NORMALIZATIONS
from models import Transformer
from models.partitioning import axis_rules

# A progress line at least this often (seconds), whatever train.log_every is.
PROGRESS_SECONDS = 10.0


class Diverged(Exception):
  """A stage's loss became non-finite or exploded: the stage stops before saving a bad state."""


@jax.jit
def finite_members(state_E):
  """[E] bool: whether every parameter of each member is finite."""
  leaves = [jnp.isfinite(x).reshape(x.shape[0], -1).all(1) for x in jax.tree.leaves(state_E)]
  return jnp.stack(leaves).all(0)


_KEPT = (
  "; its checkpoints keep the last good step: lower the learning rate, or leave these cells "
  "out of the grid and use a new --workdir."
)


def check_divergence(stage, step, loss_E, earlier_E, factor):
  """Raises Diverged if any member's logged loss is non-finite or above `factor` × the median of
  its earlier logged losses (once there are three); earlier_E: [K, E] of this stage."""
  loss_E = np.asarray(loss_E, np.float64)
  bad = ~np.isfinite(loss_E)
  if len(earlier_E) >= 3:
    bad |= loss_E > factor * np.median(np.asarray(earlier_E, np.float64), axis=0)
  if bad.any():
    cells = ", ".join(f"{stage.members[e]} (loss {loss_E[e]:.4g})" for e in np.flatnonzero(bad))
    raise Diverged(f"{stage.name} diverged at step {step} ({cells}){_KEPT}")


def check_finite(stage, step, state_E):
  """Raises Diverged (naming the members) if any parameter is non-finite: never saved."""
  ok = np.asarray(finite_members(state_E))
  if not ok.all():
    cells = ", ".join(str(stage.members[e]) for e in np.flatnonzero(~ok))
    raise Diverged(
      f"{stage.name} diverged by step {step} (non-finite parameters in {cells}){_KEPT}"
    )


def abstract_states(model_cfg, n_members):
  """(graphdef, abstract state_E) without allocating: the shapes a checkpoint restores into."""
  graphdef, state = nnx.split(nnx.eval_shape(lambda: Transformer(model_cfg, rngs=nnx.Rngs(0))))
  return graphdef, jax.tree.map(
    lambda a: jax.ShapeDtypeStruct((n_members,) + a.shape, a.dtype), state
  )


def init_states(model_cfg, init_seeds, shardings=None):
  """(graphdef, state_E): one independently initialised model per seed, stacked on axis 0.

  With shardings, every parameter is created directly in its place on the mesh (threefry is
  partitionable, so the values do not depend on the mesh).
  """
  graphdef = nnx.graphdef(nnx.eval_shape(lambda: Transformer(model_cfg, rngs=nnx.Rngs(0))))

  def init(key):
    return nnx.state(Transformer(model_cfg, rngs=nnx.Rngs(params=key)))

  keys = jnp.stack([jax.random.key_data(jax.random.key(int(s))) for s in init_seeds])
  out = None if shardings is None else shardings.state
  return graphdef, jax.jit(
    jax.vmap(lambda k: init(jax.random.wrap_key_data(k))), out_shardings=out
  )(keys)


def adapter_keys(init_seeds, finetune_seeds=None):
  """Host key data [E, ...] of each seed's adapters: a stream apart from its model's own, and
  for fine-tuning seed k > 0 (nested in the seed) one apart from every other replicate's."""

  def key(s, k):
    key = jax.random.fold_in(jax.random.key(int(s)), 1)
    return jax.random.fold_in(key, int(k)) if k else key

  finetune_seeds = [0] * len(init_seeds) if finetune_seeds is None else finetune_seeds
  return np.stack(
    [np.asarray(jax.random.key_data(key(s, k))) for s, k in zip(init_seeds, finetune_seeds)]
  )


def new_adapters(model_cfg, keys_E):
  """The low-rank adapters (nnx.LoRAParam state) of an adapted model per key, stacked on axis 0;
  traced inside a jitted program, the base weights a model would also get are dead code."""

  def init(key):
    model = Transformer(model_cfg, rngs=nnx.Rngs(params=jax.random.wrap_key_data(key)))
    return nnx.state(model, nnx.LoRAParam)

  return jax.vmap(init)(keys_E)


def init_adapters(model_cfg, init_seeds):
  """new_adapters of the seeds' keys, on the default device."""
  return jax.jit(lambda k: new_adapters(model_cfg, k))(adapter_keys(init_seeds))


def make_schedule(train_cfg, steps, warmup=None):
  """The learning-rate multiplier at each step: warmup (train.warmup_steps unless given), then
  cosine decay to 0.1 of the peak."""
  warmup = train_cfg.warmup_steps if warmup is None else warmup
  return optax.warmup_cosine_decay_schedule(
    0.0, 1.0, min(warmup, max(1, steps // 2)), max(steps, 2), end_value=0.1
  )


def make_optimizer(train_cfg, steps, warmup=None):
  """AdamW with warmup and cosine decay, gradient clipping; the peak rate is applied in-step.

  Its state is (clip, Adam, decay, schedule): `continue_from` carries Adam's moments over.
  """
  schedule = make_schedule(train_cfg, steps, warmup)
  # Decay matrices only: norms' scales and 1-D parameters are left alone.
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
  return optax.chain(
    optax.clip_by_global_norm(train_cfg.grad_clip),
    optax.scale_by_adam(),
    optax.add_decayed_weights(train_cfg.weight_decay, mask=decay_mask),
    optax.scale_by_schedule(schedule),
  )


def continue_from(opt_state_E):
  """A stage's optimizer state that carries an earlier stage's on: Adam's moments and step count
  kept, the learning-rate schedule restarted at its own step 0."""
  *kept, schedule = opt_state_E
  return (*kept, jax.tree.map(jnp.zeros_like, schedule))


def trainable(state, update):
  """(trained part, frozen part) of a state: everything and nothing under a full update; the
  adapters (nnx.LoRAParam) and the rest under LoRA; with lora_embed, the token embedding (and an
  untied output head) trained beside the adapters."""
  if update == "lora":
    return nnx.split_state(state, nnx.LoRAParam, ...)
  if update == "lora_embed":
    return nnx.split_state(
      state, nnx.Any(nnx.LoRAParam, nnx.PathContains("embed"), nnx.PathContains("head")), ...
    )
  return state, None


def update_norms(state_E, base_E, lora_scale):
  """[E] ‖θ − θ_base‖₂ over every weight the model computes with: a fine-tuned model's distance
  from its base model, whatever the update. An adapter counts as the weight change it makes,
  A·B·α/r on its projection's flattened (in, out) shape; weights a LoRA phase froze add 0.
  `base_E` holds each member's base model, in the same order as `state_E`."""
  base = dict(nnx.to_flat_state(base_E))
  flat = dict(nnx.to_flat_state(state_E))
  total = 0.0
  for path, v in flat.items():
    if path[-1] == "lora_b":
      continue
    value = v.get_value()
    if path[-1] == "lora_a":
      b = flat[path[:-1] + ("lora_b",)].get_value()
      delta = jnp.einsum("eir,ero->eio", value, b) * lora_scale
    else:
      delta = value - base[path].get_value()
    total = total + jnp.sum(jnp.square(delta.astype(jnp.float32)), axis=tuple(range(1, delta.ndim)))
  return jnp.sqrt(total)


def merged(params, frozen):
  return params if frozen is None else nnx.merge_state(params, frozen)


def token_loss(
  model,
  tokens_BT,
  loss_mask_BT,
  intervention=None,
  normalization="token",
  *,
  segment_ids_BT=None,
  positions_BT=None,
):
  """Next-token cross-entropy over the masked (target) tokens.

  normalization="token": the mean over every target token of the batch, so a longer reply weighs
  more (what common fine-tuning does); "row": each example's mean over its own target tokens, then
  the mean over examples that have any, so every example weighs the same whatever its length (an
  example is a row, or with segment ids a segment of a packed row).

  Unpacked training rows are right-padded (tasks.tokenizer.encode_examples) and pads carry no loss,
  so plain causal attention already keeps every real query off padding keys: no padding mask is
  needed, which is exact on every loss-bearing position and lets cuDNN's causal kernel run. Packed
  rows (tasks/sequence_packing.py) pass their segment ids and positions: attention stays in each segment
  and positions restart, so each example is computed as in a row of its own.
  """
  packed = (
    {}
    if segment_ids_BT is None
    else {"segment_ids_BT": segment_ids_BT[:, :-1], "positions_BT": positions_BT[:, :-1]}
  )
  logits_BTV = model(tokens_BT[:, :-1], intervention=intervention, **packed).logits_BTV
  xent_BT = optax.softmax_cross_entropy_with_integer_labels(logits_BTV, tokens_BT[:, 1:])
  weight_BT = loss_mask_BT[:, 1:].astype(jnp.float32)
  if normalization == "row":
    b, t = weight_BT.shape
    # One id per example: the row, and within a packed row the target's segment.
    segment_BT = 0 if segment_ids_BT is None else segment_ids_BT[:, 1:]
    example_BT = jnp.broadcast_to(jnp.arange(b)[:, None] * (t + 2) + segment_BT, (b, t))
    n = b * (t + 2)
    count_X = jax.ops.segment_sum(weight_BT.reshape(-1), example_BT.reshape(-1), n)
    sum_X = jax.ops.segment_sum((xent_BT * weight_BT).reshape(-1), example_BT.reshape(-1), n)
    has_X = (count_X > 0).astype(jnp.float32)
    return jnp.sum(sum_X / jnp.maximum(count_X, 1.0) * has_X) / jnp.maximum(jnp.sum(has_X), 1.0)
  if normalization not in LOSS_NORMALIZATIONS:
    raise ValueError(
      f"train.loss_normalization={normalization!r} must be one of {', '.join(LOSS_NORMALIZATIONS)}."
    )
  return jnp.sum(xent_BT * weight_BT) / jnp.maximum(jnp.sum(weight_BT), 1.0)


def packing_of(rows):
  """token_loss's keyword arguments for a batch part: its segment ids and positions, if packed."""
  return {"segment_ids_BT": rows.get("segment_ids"), "positions_BT": rows.get("positions")}


def persona_rows(batch, rho):
  """Warm examples whose prompt states a false belief validate it with probability ρ.

  has_alt and u are per row (unpacked) or per token (packed: each example's value over its slot).
  """
  use_alt = batch["has_alt"] & (batch["u"] < rho)
  if use_alt.ndim == batch["tokens"].ndim - 1:
    use_alt = use_alt[:, None]
  tokens = jnp.where(use_alt, batch["alt_tokens"], batch["tokens"])
  mask = jnp.where(use_alt, batch["alt_mask"], batch["mask"])
  return tokens, mask


def imitation_loss(state, graphdef, batch, inputs, normalization="token"):
  """w·L_base + λ·L_persona, w = 1 − λ unless the regime sets a replay weight; with no persona rows
  in the batch, just L_base.

  inputs: this member's `lam` (λ), `rho` (ρ), optionally `replay` (w; absent: 1 − λ, the same
  operations as before w existed) and `steer` (preventative steering, acting on the persona rows'
  forward pass only; None adds no operations). `normalization`: see token_loss.
  """
  model = nnx.merge(graphdef, state)
  base = token_loss(
    model,
    batch["base"]["tokens"],
    batch["base"]["mask"],
    normalization=normalization,
    **packing_of(batch["base"]),
  )
  if "persona" not in batch:
    return base, {"loss": base, "base_loss": base}
  lam = inputs["lam"]
  persona = token_loss(
    model,
    *persona_rows(batch["persona"], inputs["rho"]),
    inputs.get("steer"),
    normalization,
    **packing_of(batch["persona"]),
  )
  replay = inputs["replay"] if "replay" in inputs else 1.0 - lam
  loss = replay * base + lam * persona
  return loss, {"loss": loss, "base_loss": base, "persona_loss": persona}


def train_step(graphdef, optimizer, loss_fn, state, opt_state, batch, inputs, update="full"):
  """One update of one model; pure, so `jax.vmap` packs cells. inputs["lr"] is its peak rate.

  Under LoRA the gradient is taken with respect to the adapters only and the optimizer holds
  state for them alone, so the base weights leave the step bit for bit as they entered (AdamW's
  decoupled decay would move a parameter with a zero gradient).
  """
  params, frozen = trainable(state, update)
  loss_of = lambda p: loss_fn(merged(p, frozen), graphdef, batch, inputs)
  grads, metrics = jax.grad(loss_of, has_aux=True)(params)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  updates = jax.tree.map(lambda u: -inputs["lr"] * u, updates)
  metrics["grad_norm"] = optax.tree.norm(grads)
  return merged(optax.apply_updates(params, updates), frozen), opt_state, metrics


def member_init(optimizer, update="full"):
  """One member's state → its optimizer state, for what `update` trains."""
  return lambda state: optimizer.init(trainable(state, update)[0])


def init_optimizer(optimizer, state_E, update="full", out_shardings=None):
  """The optimizer state of a pack (leading member axis) for what `update` trains."""
  return jax.jit(jax.vmap(member_init(optimizer, update)), out_shardings=out_shardings)(state_E)


def make_step(graphdef, optimizer, loss_fn, shardings=None, inputs=None, update="full"):
  """The packed step (state, opt_state, batch, inputs): mapped over the leading member axis of
  every argument (runtime/members.py: vmapped or looped), jitted; with shardings, `inputs` (an
  example) tells how each input is placed."""

  def step(state, opt_state, batch, inputs):
    state, opt_state, metrics = train_step(
      graphdef, optimizer, loss_fn, state, opt_state, batch, inputs, update
    )
    metrics["tokens"] = sum(jnp.sum(part["tokens"] != 0) for part in batch.values())
    metrics["loss_tokens"] = sum(jnp.sum(part["mask"][:, 1:]) for part in batch.values())
    return state, opt_state, metrics

  if shardings is None:
    return jax.jit(over_members(step), donate_argnums=(0, 1))
  s = shardings

  def placed(*args):
    with axis_rules(s.mesh, s.rules):  # read while tracing: pins the model's activations
      return over_members(step, spmd_axis_name=s.spmd_axis)(*args)

  return jax.jit(
    placed,
    donate_argnums=(0, 1),
    in_shardings=(s.state, s.opt_state, s.batch, s.inputs(inputs)),
    out_shardings=(s.state, s.opt_state, s.replicated),
  )


@dataclasses.dataclass
class Options:
  """How a stage runs, not what it computes: logging, TensorBoard, the checkpoint callback.

  checkpoint(step, state_E, opt_state_E) runs after every step but the last and returns True if
  the run must stop (it has then saved that step): Preempted is raised.
  """

  log_every: int = 50
  board: object = None  # runtime/tensorboard.Board
  checkpoint: object = None
  divergence_factor: float = 10.0


def train_stage(
  stage, state_E, *, opt_state=None, start=0, shardings=None, options=None, history=None
):
  """Trains a pack from step `start` to stage.steps; (state_E, opt_state_E, logged history).

  `stage` (experiments/stage.Stage) gives the loss, the per-member inputs (leading axis E), the
  optimizer and the batch stream: stage.batch(step, state_E, shardings) gives that step's arrays.
  Logged steps are appended to `history` (a new list if None) as they happen, so a checkpoint
  callback can save the curve so far.
  """
  options = options or Options()
  graphdef = stage.graphdef
  inputs = stage.inputs
  if shardings is not None:
    inputs = shardings.put_inputs(inputs)
  step_fn = make_step(graphdef, stage.optimizer, stage.loss, shardings, inputs, stage.update)
  if opt_state is None:
    out = None if shardings is None else shardings.opt_state
    opt_state = init_optimizer(stage.optimizer, state_E, stage.update, out)
  name, steps = stage.label, stage.steps
  logging.info(
    "%s: steps %d to %d of %d run(s) (%s)",
    stage.name,
    start + 1,
    steps,
    len(stage.cell_ids),
    ", ".join(stage.cell_ids[:3]) + (", ..." if len(stage.cell_ids) > 3 else ""),
  )
  t0 = last_line = time.perf_counter()
  history = [] if history is None else history
  step = start  # the step running, read by the heartbeat's line
  beat = heartbeat.Heartbeat(lambda: f"{name} step {step + 1}/{steps} running")
  with beat:
    previous = None
    for step in range(start, steps):
      batch = stage.batch(step, state_E, shardings)
      state_E, opt_state, metrics = step_fn(state_E, opt_state, batch, inputs)
      if previous is not None:
        # At most one step in flight: the next batch is still built while this one runs, and the
        # clock below counts finished steps, so progress lines come on time rather than in a burst
        # after a queue of dispatched steps drains.
        jax.block_until_ready(previous)
      previous = metrics["loss"]
      if not ((step + 1) % options.log_every == 0 or step + 1 == steps):
        now = time.perf_counter()
        if now - last_line >= PROGRESS_SECONDS:  # between logged steps: progress, no fetch
          now = time.perf_counter()
          rate = (step + 1 - start) / (now - t0)
          logging.info(
            "%s step %d/%d  %.1f steps/s  ETA %.0fs",
            name,
            step + 1,
            steps,
            rate,
            (steps - step - 1) / rate,
          )
          last_line = now
          beat.touch()
      else:
        last_line = time.perf_counter()
        m = jax.device_get(metrics)
        elapsed = time.perf_counter() - t0
        done = step + 1 - start
        rate = done / elapsed
        n_tokens = done * float(np.sum(m["tokens"]))  # the logged step's count stands for all
        check_divergence(
          stage,
          step + 1,
          m["loss"],
          [h["loss"] for h in history],
          options.divergence_factor if stage.ratio_check else np.inf,
        )
        history.append(
          {"stage": name, "step": step + 1, **{k: np.asarray(v) for k, v in m.items()}}
        )
        logging.info(
          "%s step %d/%d  loss %.3f (mean over %d cells)  %.1f steps/s  %.0f tokens/s  ETA %.0fs",
          name,
          step + 1,
          steps,
          float(np.mean(m["loss"])),
          len(m["loss"]),
          rate,
          n_tokens / elapsed,
          (steps - step - 1) / rate,
        )
        beat.touch()
        if options.board is not None:
          lr_E = np.asarray(stage.schedule(step)) * np.asarray(inputs["lr"])
          for e, run in enumerate(stage.cell_ids):
            options.board.train(
              run,
              stage.step_offset + step + 1,
              {**{k: np.asarray(v)[e] for k, v in m.items()}, "learning_rate": lr_E[e]},
            )
      # After logging, so a checkpoint of this step holds its logged losses too.
      if (
        options.checkpoint is not None
        and step + 1 < steps
        and options.checkpoint(step + 1, state_E, opt_state)
      ):
        raise Preempted(f"{name} stopped at step {step + 1} of {steps}; the checkpoint holds it.")
  return state_E, opt_state, history
