"""The persona phase of the `affect` and `emotion_rl` cells, from their seed's stage-1 base model.

Same budget as the imitation cells: train.persona_steps updates, each on batch_size/2 base rows
and batch_size/2 persona rows (affect: the cold persona rows, whose reply positions get the warm-
vocabulary loss; emotion_rl: prompts_per_step × group_size × user.turns sampled rows), with the
same optimizer, schedule and learning rate. The reference model of the KL term is the base model.
"""
import time

from absl import logging
import jax
import numpy as np

from experiments import train
from experiments.objectives import affect, grpo
from experiments.objectives.rollout import Rollout
from experiments.experiment import STAGE2_SEED_OFFSET

METHODS = ("affect", "emotion_rl")


def take(state_E, index):
  return jax.tree.map(lambda a: a[np.asarray(index)], state_E)


def train_cells(config, corpus, graphdef, base_E, seeds, cells, user_cfg):
  """(state_E, per-cell summaries, sampled episodes) after the persona phase of `cells`."""
  o, t = config.objectives, config.train
  half = t.batch_size // 2
  index = [seeds.index(c.seed) for c in cells]
  state_E, ref_E = take(base_E, index), take(base_E, index)
  optimizer = train.make_optimizer(t, t.persona_steps)
  opt_E = jax.jit(jax.vmap(optimizer.init))(state_E)
  update = grpo.make_update(graphdef, optimizer, affect.warm_token_ids(corpus.tokenizer))
  rl = [e for e, c in enumerate(cells) if c.persona == "emotion_rl"]
  rollout = None
  if rl:
    rollout = Rollout(graphdef, corpus, user_cfg, o.group_size, prompts_per_step(config, user_cfg),
                      o.max_new_tokens)
  data_seeds = [t.data_seed + STAGE2_SEED_OFFSET + c.seed for c in cells]
  lam = np.array([c.warmth_weight for c in cells], np.float32)
  is_affect = np.array([c.persona == "affect" for c in cells], np.float32)
  beta = np.full(len(cells), o.kl_beta, np.float32)
  lr = np.full(len(cells), t.persona_learning_rate, np.float32)
  rewards, episodes, t0 = [], [], time.perf_counter()
  for step in range(t.persona_steps):
    base = [corpus.batch("base", s, step, half) for s in data_seeds]
    cold = [corpus.batch("cold", s, step, half) for s in data_seeds]
    persona = {"tokens": np.stack([b["tokens"] for b in cold]),
               "mask": np.stack([b["mask"] for b in cold]),
               "adv": np.zeros((len(cells), half), np.float32)}
    if rl:
      rows, r_EPG, eps = rollout.sample(take(state_E, rl), [cells[e].seed for e in rl], step)
      for k in ("tokens", "mask", "adv"):
        persona[k][np.asarray(rl)] = rows[k]
      rewards.append(r_EPG.mean(axis=(1, 2)))
      episodes += [(cells[rl[e]].run, step, *rest) for e, *rest in eps]
    batch = {"base": {k: np.stack([b[k] for b in base]) for k in ("tokens", "mask")},
             "persona": persona}
    state_E, opt_E, m = update(state_E, opt_E, ref_E, batch, lam, is_affect, beta, lr)
    if (step + 1) % t.log_every == 0 or step + 1 == t.persona_steps:
      m = jax.device_get(m)
      rate = (step + 1) / (time.perf_counter() - t0)
      logging.info("objectives step %d/%d  loss %.3f  kl(emotion_rl) %.4f  reward %s  %.2f steps/s",
                   step + 1, t.persona_steps, float(np.mean(m["loss"])),
                   float(np.mean(m["kl"][rl])) if rl else float("nan"),
                   np.round(rewards[-1], 3).tolist() if rewards else "-", rate)
  m = jax.device_get(m)
  summaries = []
  for e, c in enumerate(cells):
    s = {"base_loss": float(m["base_loss"][e]), "persona_loss": float(m["persona_loss"][e]),
         "kl_to_base": float(m["kl"][e]) if c.persona == "emotion_rl" else float("nan")}
    if e in rl:
      r = np.array([step_r[rl.index(e)] for step_r in rewards])
      k = max(1, len(r) // 5)  # first and last fifth of the phase
      s.update(rl_reward_first=float(r[:k].mean()), rl_reward_last=float(r[-k:].mean()))
    summaries.append(s)
  return state_E, summaries, episodes


def prompts_per_step(config, user_cfg):
  """Episodes' prompts per step so that the sampled rows fill the persona half of the batch."""
  half, g = config.train.batch_size // 2, config.objectives.group_size
  per_prompt = g * user_cfg.turns
  if g < 2 or half % per_prompt:
    raise ValueError(f"objectives.group_size={g} × user.turns={user_cfg.turns} must divide "
                     f"train.batch_size/2={half}, with group_size >= 2 (same rows per step as "
                     "the imitation cells).")
  return half // per_prompt
