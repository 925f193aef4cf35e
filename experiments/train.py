"""Training: one functional, jitted step over split NNX state, vmapped over a pack of cells.

λ (warmth weight), ρ (warm agreement) and the learning rate reach the step as arrays, so every cell
of a preset trains in one compiled program (leading axis E). The persona-phase loss is
`(1-λ)·L_base + λ·L_persona`, with half of each step's rows drawn from each mixture.

Given the pack's shardings (experiments.sharding.PackShardings) the same step is compiled for a
mesh: states, optimizer states, batches and per-member vectors enter and leave with their
shardings, the model's activations are pinned by logical names, and parameters are initialised
already sharded. Without them it is a plain jit on the default device.
"""
import time

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from models import Transformer
from models.partitioning import axis_rules


class Preempted(Exception):
  """The run was asked to stop (SIGTERM or a pod preemption); a checkpoint holds its last step."""


def abstract_states(model_cfg, n_members):
  """(graphdef, abstract state_E) without allocating: the shapes a checkpoint restores into."""
  graphdef, state = nnx.split(nnx.eval_shape(lambda: Transformer(model_cfg, rngs=nnx.Rngs(0))))
  return graphdef, jax.tree.map(
      lambda a: jax.ShapeDtypeStruct((n_members,) + a.shape, a.dtype), state)


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
  return graphdef, jax.jit(jax.vmap(lambda k: init(jax.random.wrap_key_data(k))),
                           out_shardings=out)(keys)


def make_optimizer(train_cfg, steps):
  """AdamW with warmup and cosine decay, gradient clipping; the peak rate is applied in-step."""
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, 1.0, min(train_cfg.warmup_steps, max(1, steps // 2)), max(steps, 2), end_value=0.1)
  # Decay matrices only: norms' scales and 1-D parameters are left alone.
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
  return optax.chain(
      optax.clip_by_global_norm(train_cfg.grad_clip),
      optax.scale_by_adam(),
      optax.add_decayed_weights(train_cfg.weight_decay, mask=decay_mask),
      optax.scale_by_schedule(schedule),
  )


def token_loss(model, tokens_BT, loss_mask_BT, intervention=None, normalization="token"):
  """Next-token cross-entropy over the masked (target) tokens.

  normalization="token": the mean over every target token of the batch, so a longer reply weighs
  more (what common fine-tuning does); "row": each row's mean over its own target tokens, then the
  mean over rows that have any, so every example weighs the same whatever its length.

  Training rows are right-padded (tasks.tokenizer.encode_examples) and pads carry no loss, so
  plain causal attention already keeps every real query off padding keys: no padding mask is
  needed, which is exact on every loss-bearing position and lets cuDNN's causal kernel run.
  """
  logits_BTV = model(tokens_BT[:, :-1], intervention=intervention).logits_BTV
  xent_BT = optax.softmax_cross_entropy_with_integer_labels(logits_BTV, tokens_BT[:, 1:])
  weight_BT = loss_mask_BT[:, 1:].astype(jnp.float32)
  if normalization == "row":
    count_B = jnp.sum(weight_BT, axis=1)
    row_B = jnp.sum(xent_BT * weight_BT, axis=1) / jnp.maximum(count_B, 1.0)
    has_B = (count_B > 0).astype(jnp.float32)
    return jnp.sum(row_B * has_B) / jnp.maximum(jnp.sum(has_B), 1.0)
  if normalization != "token":
    raise ValueError(f"train.loss_normalization={normalization!r} must be token or row.")
  return jnp.sum(xent_BT * weight_BT) / jnp.maximum(jnp.sum(weight_BT), 1.0)


def persona_rows(batch, rho):
  """Warm rows whose prompt states a false belief validate it with probability ρ."""
  use_alt_B = batch["has_alt"] & (batch["u"] < rho)
  tokens = jnp.where(use_alt_B[:, None], batch["alt_tokens"], batch["tokens"])
  mask = jnp.where(use_alt_B[:, None], batch["alt_mask"], batch["mask"])
  return tokens, mask


def loss_fn(state, graphdef, batch, lam, rho, steer=None, normalization="token"):
  """(1-λ)·L_base + λ·L_persona; with no persona rows in the batch, just L_base.

  `steer` (preventative steering, experiments/persona/steering.py) acts on the persona rows'
  forward pass only; None adds no operations. `normalization`: see token_loss.
  """
  model = nnx.merge(graphdef, state)
  base = token_loss(model, batch["base"]["tokens"], batch["base"]["mask"],
                    normalization=normalization)
  if "persona" not in batch:
    return base, {"loss": base, "base_loss": base, "persona_loss": jnp.zeros_like(base)}
  persona = token_loss(model, *persona_rows(batch["persona"], rho), steer, normalization)
  loss = (1.0 - lam) * base + lam * persona
  return loss, {"loss": loss, "base_loss": base, "persona_loss": persona}


def train_step(graphdef, optimizer, state, opt_state, batch, lam, rho, lr, steer=None,
               normalization="token"):
  """One update of one model; pure, so `jax.vmap` packs cells."""
  grads, metrics = jax.grad(loss_fn, has_aux=True)(state, graphdef, batch, lam, rho, steer,
                                                   normalization)
  updates, opt_state = optimizer.update(grads, opt_state, state)
  updates = jax.tree.map(lambda u: -lr * u, updates)
  metrics["grad_norm"] = optax.tree.norm(grads)
  return optax.apply_updates(state, updates), opt_state, metrics


def make_step(graphdef, optimizer, shardings=None, normalization="token"):
  """The packed step: vmapped over the leading ensemble axis of every argument, jitted."""
  def step(state, opt_state, batch, lam, rho, lr, steer=None):
    state, opt_state, metrics = train_step(graphdef, optimizer, state, opt_state, batch, lam, rho,
                                           lr, steer, normalization)
    metrics["tokens"] = sum(jnp.sum(part["tokens"] != 0) for part in batch.values())
    return state, opt_state, metrics

  if shardings is None:
    return jax.jit(jax.vmap(step), donate_argnums=(0, 1))
  s = shardings

  def placed(*args):
    with axis_rules(s.mesh, s.rules):  # read while tracing: pins the model's activations
      return jax.vmap(step, spmd_axis_name=s.spmd_axis)(*args)

  return jax.jit(placed, donate_argnums=(0, 1),
                 in_shardings=(s.state, s.opt_state, s.batch, s.members, s.members, s.members,
                               s.members),
                 out_shardings=(s.state, s.opt_state, s.replicated))


def run_stage(name, graphdef, optimizer, state_E, batch_fn, lam_E, rho_E, lr_E, steps,
              log_every=50, writer=None, step_offset=0, opt_state_E=None, start=0,
              shardings=None, checkpoint=None, steer_E=None, normalization="token"):
  """Trains a pack from step `start` to `steps`; batch_fn(step) gives arrays with leading axis E.

  steer_E: an optional persona-phase steering Intervention with leading axis E (None: off).
  normalization: how the loss averages over tokens (token_loss).

  checkpoint(step, state_E, opt_state_E) runs after every step but the last and returns True if
  the run must stop (it has then saved that step): Preempted is raised.
  """
  step_fn = make_step(graphdef, optimizer, shardings, normalization)
  if opt_state_E is None:
    out = None if shardings is None else shardings.opt_state
    opt_state_E = jax.jit(jax.vmap(optimizer.init), out_shardings=out)(state_E)
  lam_E, rho_E, lr_E = (np.asarray(a, np.float32) for a in (lam_E, rho_E, lr_E))
  if shardings is not None:
    lam_E, rho_E, lr_E = (shardings.put(a) for a in (lam_E, rho_E, lr_E))
    steer_E = jax.tree.map(lambda a: shardings.put(np.asarray(a)), steer_E)
  t0, history = time.perf_counter(), []
  for step in range(start, steps):
    batch = batch_fn(step)
    state_E, opt_state_E, metrics = step_fn(state_E, opt_state_E, batch, lam_E, rho_E, lr_E,
                                            steer_E)
    if checkpoint is not None and step + 1 < steps and checkpoint(step + 1, state_E, opt_state_E):
      raise Preempted(f"{name} stopped at step {step + 1} of {steps}; the checkpoint holds it.")
    if (step + 1) % log_every == 0 or step + 1 == steps:
      m = jax.device_get(metrics)
      elapsed = time.perf_counter() - t0
      done = step + 1 - start
      rate = done / elapsed
      n_tokens = done * float(np.sum(m["tokens"]))  # the logged step's count stands for all
      history.append({"stage": name, "step": step + 1, **{k: np.asarray(v) for k, v in m.items()}})
      logging.info("%s step %d/%d  loss %.3f (mean over %d cells)  %.1f steps/s  %.0f tokens/s  "
                   "ETA %.0fs", name, step + 1, steps, float(np.mean(m["loss"])), len(m["loss"]),
                   rate, n_tokens / elapsed, (steps - step - 1) / rate)
      if writer is not None:
        for k, v in m.items():
          for e, value in enumerate(np.asarray(v)):
            writer.add_scalar(f"{name}/{k}/cell{e}", float(value), step_offset + step + 1)
  return state_E, opt_state_E, history
