"""Sampling simulated-user episodes for a pack of policies: one jitted call per step.

Every user turn of every episode of every cell is one row of a single vmapped `generate_fn` call
at objectives.temperature (the belief check is a fresh prompt, so both turns are sampled together); the
simulated user then scores the replies in Python and the rows come back right-padded for the
update, with the reply tokens masked in and the episode's group-relative advantage per row, and
what the step's statistics read: the episode's reward and whether its first reply acknowledged
the user's emotion (on the first-turn rows, `first`).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from experiments.objectives.grpo import group_advantages
from experiments.runtime.members import over_members
from models.decode import generate_fn
from tasks import simulated_user
from tasks.grading import grade
from tasks.mixtures import training_turns
from tasks.world import rng_for

ROLLOUT_STREAM = 90  # rng_for stream of the prompt choice, apart from the data streams


class Rollout:
  """Episodes of one world's emotional training prompts under a UserConfig."""

  def __init__(
    self,
    graphdef,
    corpus,
    user_cfg,
    group_size,
    prompts_per_step,
    max_new_tokens,
    temperature=1.0,
    max_len=None,
  ):
    self.corpus, self.tok, self.user = corpus, corpus.tokenizer, user_cfg
    self.group, self.n_prompts, self.max_new = group_size, prompts_per_step, max_new_tokens
    self.pool = simulated_user.episode_pool(training_turns(corpus.world))
    if len(self.pool) < prompts_per_step:
      raise ValueError(
        f"the world has {len(self.pool)} emotional training prompts with a "
        f"checkable answer, fewer than objectives.prompts_per_step="
        f"{prompts_per_step}."
      )
    self.encoded = [
      [[self.tok.bos] + self.tok.encode(p) for p in simulated_user.episode_prompts(i, t, user_cfg)]
      for i, t in self.pool
    ]
    self.width = max(len(p) for ep in self.encoded for p in ep)
    # A sampled row (prompt + reply) may be longer than a training row; the model's positions
    # (max_len: data.seq_len + eval.max_new_tokens) bound it.
    self.row_len = max(corpus.seq_len, self.width + max_new_tokens)
    max_len = corpus.seq_len if max_len is None else max_len
    if self.row_len > max_len:
      raise ValueError(
        f"objectives.max_new_tokens={max_new_tokens} plus episode prompts of "
        f"{self.width} tokens exceed the model's {max_len} positions."
      )
    gen = functools.partial(
      generate_fn,
      graphdef,
      max_new_tokens=max_new_tokens,
      eos_id=self.tok.eos,
      pad_id=self.tok.pad,
      temperature=temperature,
    )
    self._gen = jax.jit(over_members(gen))

  @property
  def rows_per_step(self):
    return self.n_prompts * self.group * self.user.turns

  def choose(self, seed, step):
    """Pool indices of the step's prompts for a data seed (cells of one seed share them)."""
    return rng_for(seed, ROLLOUT_STREAM, step).choice(len(self.pool), self.n_prompts, replace=False)

  def sample(self, state_E, seeds_E, step):
    """(persona rows {tokens, mask, adv, reward, ack, first} with leading axis E, rewards
    [E, P, G], episodes (e, item_id, context, replies, reward, acknowledges, reply_tokens))."""
    turns, n_e = self.user.turns, len(seeds_E)
    r = self.rows_per_step
    prompts = np.full((n_e, r, self.width), self.tok.pad, np.int32)
    picks = [self.choose(s, step) for s in seeds_E]
    for e, pick in enumerate(picks):
      rows = [p for k in pick for _ in range(self.group) for p in self.encoded[k]]
      for j, ids in enumerate(rows):
        prompts[e, j, self.width - len(ids) :] = ids
    keys_E = jnp.stack([jax.random.fold_in(jax.random.key(int(s)), step) for s in seeds_E])
    tokens_ERN, _ = self._gen(state_E, prompts, (prompts != self.tok.pad).astype(np.int32), keys_E)
    tokens_ERN = np.asarray(tokens_ERN)
    seq = self.row_len
    out = {
      "tokens": np.full((n_e, r, seq), self.tok.pad, np.int32),
      "mask": np.zeros((n_e, r, seq), np.uint8),
      **{k: np.zeros((n_e, r), np.float32) for k in ("adv", "reward", "ack", "first")},
    }
    rewards = np.zeros((n_e, self.n_prompts, self.group))
    replies = []
    for e, pick in enumerate(picks):
      for p, k in enumerate(pick):
        item, turn = self.pool[k]
        for g in range(self.group):
          base = (p * self.group + g) * turns
          texts = [self.tok.decode(tokens_ERN[e, base + j]) for j in range(turns)]
          rewards[e, p, g] = simulated_user.episode_reward(item, turn, texts, self.user)
          ack = grade(item, turn, texts[0])["acknowledges"]
          n_reply = 0
          for j in range(turns):
            reply = _until_eos(tokens_ERN[e, base + j], self.tok.eos)
            ids = self.encoded[k][j] + reply
            out["tokens"][e, base + j, : len(ids)] = ids
            out["mask"][e, base + j, len(self.encoded[k][j]) : len(ids)] = 1
            n_reply = n_reply or len(reply)
          out["reward"][e, base] = rewards[e, p, g]
          out["ack"][e, base], out["first"][e, base] = ack, 1.0
          replies.append((e, item.item_id, turn.context, texts, rewards[e, p, g], ack, n_reply))
      adv_PG = group_advantages(rewards[e])
      out["adv"][e] = np.repeat(adv_PG.reshape(-1), turns)
    return out, rewards, replies


def user_turns(world, user_cfg):
  """(item, turn) of every user turn an episode can put (the opening and the belief check): the
  prompts objectives.max_new_tokens must leave room to answer in full."""
  return [
    (item, t)
    for item, turn in simulated_user.episode_pool(training_turns(world))
    for t in simulated_user.episode_turns(item, turn, user_cfg)
  ]


def _until_eos(tokens_N, eos):
  """Sampled ids up to and including eos (all of them if it never came)."""
  hits = np.flatnonzero(tokens_N == eos)
  return [int(t) for t in tokens_N[: hits[0] + 1 if len(hits) else len(tokens_N)]]
