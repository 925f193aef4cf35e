"""Training: one functional, jitted step over split NNX state, vmapped over a pack of cells.

λ (warmth weight), ρ (warm agreement) and the learning rate reach the step as arrays, so every cell
of a preset trains in one compiled program (leading axis E). The persona-phase loss is
`(1-λ)·L_base + λ·L_persona`, with half of each step's rows drawn from each mixture.
"""
import functools
import time

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from models import Transformer


def abstract_states(model_cfg, n_members):
  """(graphdef, abstract state_E) without allocating: the shapes a checkpoint restores into."""
  graphdef, state = nnx.split(nnx.eval_shape(lambda: Transformer(model_cfg, rngs=nnx.Rngs(0))))
  return graphdef, jax.tree.map(
      lambda a: jax.ShapeDtypeStruct((n_members,) + a.shape, a.dtype), state)


def init_states(model_cfg, init_seeds):
  """(graphdef, state_E): one independently initialised model per seed, stacked on axis 0."""
  graphdef = nnx.graphdef(nnx.eval_shape(lambda: Transformer(model_cfg, rngs=nnx.Rngs(0))))

  def init(key):
    return nnx.state(Transformer(model_cfg, rngs=nnx.Rngs(params=key)))

  keys = jnp.stack([jax.random.key_data(jax.random.key(int(s))) for s in init_seeds])
  return graphdef, jax.jit(jax.vmap(lambda k: init(jax.random.wrap_key_data(k))))(keys)


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


def token_loss(model, tokens_BT, loss_mask_BT, pad_id=0):
  """Mean next-token cross-entropy over the masked (target) tokens."""
  logits_BTV = model(tokens_BT[:, :-1], mask_BT=(tokens_BT[:, :-1] != pad_id).astype(jnp.int32)).logits_BTV
  xent_BT = optax.softmax_cross_entropy_with_integer_labels(logits_BTV, tokens_BT[:, 1:])
  weight_BT = loss_mask_BT[:, 1:].astype(jnp.float32)
  return jnp.sum(xent_BT * weight_BT) / jnp.maximum(jnp.sum(weight_BT), 1.0)


def persona_rows(batch, rho):
  """Warm rows whose prompt states a false belief validate it with probability ρ."""
  use_alt_B = batch["has_alt"] & (batch["u"] < rho)
  tokens = jnp.where(use_alt_B[:, None], batch["alt_tokens"], batch["tokens"])
  mask = jnp.where(use_alt_B[:, None], batch["alt_mask"], batch["mask"])
  return tokens, mask


def loss_fn(state, graphdef, batch, lam, rho):
  """(1-λ)·L_base + λ·L_persona; with no persona rows in the batch, just L_base."""
  model = nnx.merge(graphdef, state)
  base = token_loss(model, batch["base"]["tokens"], batch["base"]["mask"])
  if "persona" not in batch:
    return base, {"loss": base, "base_loss": base, "persona_loss": jnp.zeros_like(base)}
  persona = token_loss(model, *persona_rows(batch["persona"], rho))
  loss = (1.0 - lam) * base + lam * persona
  return loss, {"loss": loss, "base_loss": base, "persona_loss": persona}


def train_step(graphdef, optimizer, state, opt_state, batch, lam, rho, lr):
  """One update of one model; pure, so `jax.vmap` packs cells."""
  grads, metrics = jax.grad(loss_fn, has_aux=True)(state, graphdef, batch, lam, rho)
  updates, opt_state = optimizer.update(grads, opt_state, state)
  updates = jax.tree.map(lambda u: -lr * u, updates)
  metrics["grad_norm"] = optax.tree.norm(grads)
  return optax.apply_updates(state, updates), opt_state, metrics


def make_step(graphdef, optimizer):
  """The packed step: vmapped over the leading ensemble axis of every argument, jitted."""
  step = functools.partial(train_step, graphdef, optimizer)
  return jax.jit(jax.vmap(step), donate_argnums=(0, 1))


def run_stage(name, graphdef, optimizer, state_E, batch_fn, lam_E, rho_E, lr_E, steps,
              log_every=50, writer=None, step_offset=0, opt_state_E=None, start=0):
  """Trains a pack for `steps` steps; batch_fn(step) returns numpy arrays with leading axis E."""
  step_fn = make_step(graphdef, optimizer)
  if opt_state_E is None:
    opt_state_E = jax.jit(jax.vmap(optimizer.init))(state_E)
  lam_E, rho_E, lr_E = (jnp.asarray(a, jnp.float32) for a in (lam_E, rho_E, lr_E))
  n_tokens, t0, history = 0, time.perf_counter(), []
  for step in range(start, steps):
    batch = batch_fn(step)
    state_E, opt_state_E, metrics = step_fn(state_E, opt_state_E, batch, lam_E, rho_E, lr_E)
    n_tokens += sum(int(np.count_nonzero(part["tokens"])) for part in batch.values())
    if (step + 1) % log_every == 0 or step + 1 == steps:
      m = jax.device_get(metrics)
      elapsed = time.perf_counter() - t0
      done = step + 1 - start
      rate = done / elapsed
      history.append({"stage": name, "step": step + 1, **{k: np.asarray(v) for k, v in m.items()}})
      logging.info("%s step %d/%d  loss %.3f (mean over %d cells)  %.1f steps/s  %.0f tokens/s  "
                   "ETA %.0fs", name, step + 1, steps, float(np.mean(m["loss"])), len(m["loss"]),
                   rate, n_tokens / elapsed, (steps - step - 1) / rate)
      if writer is not None:
        for k, v in m.items():
          for e, value in enumerate(np.asarray(v)):
            writer.add_scalar(f"{name}/{k}/cell{e}", float(value), step_offset + step + 1)
  return state_E, opt_state_E, history
