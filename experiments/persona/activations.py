"""Residual-stream activations of a pack of models (leading axis E of the state).

Scripted dialogues are `<bos> prompt reply <eos>` rows (tasks.tokenizer.encode_examples); a
dialogue's activation is the mean over its reply's words (the eos is left out). Eval prompts are
left-padded, so their last column is the last prompt token, where the reply is decided.

Shape letters: E members, L layers, B/N rows, T tokens, D width, V vectors.
"""

import functools

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from experiments.evaluate import Progress
from experiments.runtime.members import over_members


def encode_dialogues(tokenizer, prompts, replies, seq_len):
  """(tokens_NT, reply_NT, real_NT): reply_NT marks the reply's words, real_NT every token."""
  tokens_NT, loss_NT = tokenizer.encode_examples(prompts, replies, seq_len)
  reply_NT = (loss_NT > 0) & (tokens_NT != tokenizer.eos)
  return tokens_NT, reply_NT, tokens_NT != tokenizer.pad


def _residuals(graphdef, state, tokens_BT, real_BT):
  model = nnx.merge(graphdef, state)
  return model(tokens_BT, mask_BT=real_BT.astype(jnp.int32), return_residuals=True).residuals_LBTD


@functools.partial(jax.jit, static_argnums=0)
def _masked_means_E(graphdef, state_E, tokens_BT, real_BT, select_BT):
  def one(state):
    res_LBTD = _residuals(graphdef, state, tokens_BT, real_BT)
    w_BT = select_BT.astype(jnp.float32)
    total_LBD = jnp.einsum("lbtd,bt->lbd", res_LBTD, w_BT)
    return total_LBD / jnp.maximum(w_BT.sum(axis=1), 1.0)[None, :, None]

  return over_members(one)(state_E)


@functools.partial(jax.jit, static_argnums=0)
def _projections_E(graphdef, state_E, tokens_BT, real_BT, unit_EVLD):
  def one(state, unit_VLD):
    res_LBTD = _residuals(graphdef, state, tokens_BT, real_BT)
    return jnp.einsum("lbtd,vld->vlbt", res_LBTD, unit_VLD)

  return over_members(one)(state_E, unit_EVLD)


@functools.partial(jax.jit, static_argnums=0)
def _last_E(graphdef, state_E, tokens_BT, real_BT):
  return over_members(lambda s: _residuals(graphdef, s, tokens_BT, real_BT)[:, :, -1])(state_E)


def balanced_chunk(n, batch_size):
  """The chunk size that splits n rows into as few equal chunks as batch_size allows."""
  n_chunks = max(1, -(-n // batch_size))
  return max(1, -(-n // n_chunks))


def _padded_chunks(arrays, batch_size):
  """Equal-sized chunks (the last one padded with zero rows): one compilation per shape."""
  n = len(arrays[0])
  size = balanced_chunk(n, batch_size)
  with Progress(
    f"activations of {n} rows", -(-n // size), stage="persona geometry", timed_only=True
  ) as progress:
    for k, i in enumerate(range(0, n, size)):
      if k:
        progress.done(k)  # also where a SIGTERM stops the run
      part = [a[i : i + size] for a in arrays]
      pad = size - len(part[0])
      if pad:
        part = [np.concatenate([p, np.zeros((pad,) + p.shape[1:], p.dtype)]) for p in part]
      yield part, size - pad


def masked_means(graphdef, state_E, tokens_NT, real_NT, select_NT, batch_size):
  """Mean activation over the selected tokens of every row: (E, L, N, D) float32."""
  outs = [
    np.asarray(_masked_means_E(graphdef, state_E, *part))[:, :, :n]
    for part, n in _padded_chunks((tokens_NT, real_NT, select_NT), batch_size)
  ]
  return np.concatenate(outs, axis=2)


def selected_projections(graphdef, state_E, tokens_NT, real_NT, select_NT, unit_EVLD, batch_size):
  """Projections of every selected token onto unit vectors: per member, (V, L, M) float32."""
  per_member = [[] for _ in range(unit_EVLD.shape[0])]
  for (tokens_BT, real_BT, select_BT), _ in _padded_chunks(
    (tokens_NT, real_NT, select_NT), batch_size
  ):
    p_EVLBT = np.asarray(
      _projections_E(graphdef, state_E, tokens_BT, real_BT, jnp.asarray(unit_EVLD, jnp.float32))
    )
    sel_BT = np.asarray(select_BT, bool)  # padding rows select nothing
    for e in range(len(per_member)):
      per_member[e].append(p_EVLBT[e][:, :, sel_BT])
  return [np.concatenate(parts, axis=-1) for parts in per_member]


def last_prompt(graphdef, state_E, prompts_NT, prompt_mask_NT, batch_size):
  """Activation at the last prompt token of left-padded prompts: (E, L, N, D) float32."""
  outs = [
    np.asarray(_last_E(graphdef, state_E, p_BT, m_BT > 0))[:, :, :n]
    for (p_BT, m_BT), n in _padded_chunks((prompts_NT, prompt_mask_NT), batch_size)
  ]
  return np.concatenate(outs, axis=2)
