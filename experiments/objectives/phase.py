"""The persona phase of the `affect` and `emotion_rl` cells, as a stage of the one training loop.

Same budget as the imitation cells: train.persona_steps updates, each on batch_size/2 base rows
and batch_size/2 persona rows (affect: the cold persona rows, whose reply positions get the warm-
vocabulary loss; emotion_rl: prompts_per_step × group_size × user.turns rows sampled from the
current policy), with the same optimizer, schedule and learning rate, from the seed's stage-1 base
model, which is also the reference model of the KL term. The stream is on-policy: it samples with
the parameters of the step, and its journal (every episode: step, cell, item, context, replies,
reward) is kept with the stage's checkpoints, so a resumed phase loses no episode.
"""
import functools

import numpy as np
import pandas as pd

from experiments import data, stage, train
from experiments.objectives import affect, grpo
from experiments.objectives.rollout import Rollout

METHODS = ("affect", "emotion_rl")
EPISODE_COLUMNS = ["run", "step", "item_id", "context", "replies", "reward"]


def prompts_per_step(config, user_cfg):
  """Episodes' prompts per step so that the sampled rows fill the persona half of the batch."""
  half, g = config.train.batch_size // 2, config.objectives.group_size
  per_prompt = g * user_cfg.turns
  if g < 2 or half % per_prompt:
    raise ValueError(f"objectives.group_size={g} × user.turns={user_cfg.turns} must divide "
                     f"train.batch_size/2={half}, with group_size >= 2 (same rows per step as "
                     "the imitation cells).")
  return half // per_prompt


def stream(corpus, cells, train_cfg, rollout):
  """The on-policy BatchStream of `cells`: base rows, and cold or sampled persona rows."""
  half, n = train_cfg.batch_size // 2, len(cells)
  seeds = [train_cfg.data_seed + data.STAGE2_SEED_OFFSET + c.seed for c in cells]
  rl = [e for e, c in enumerate(cells) if c.persona == "emotion_rl"]

  def build(step, members, rows, state_E):
    base = [corpus.batch("base", s, step, half) for s in seeds]
    cold = [corpus.batch("cold", s, step, half) for s in seeds]
    persona = {"tokens": np.stack([b["tokens"] for b in cold]),
               "mask": np.stack([b["mask"] for b in cold]),
               "adv": np.zeros((n, half), np.float32)}
    if rl:
      sampled, _, episodes = rollout.sample(data.take(state_E, rl), [cells[e].seed for e in rl],
                                            step)
      for k in ("tokens", "mask", "adv"):
        persona[k][np.asarray(rl)] = sampled[k]
      out.journal.extend([cells[rl[e]].run, step, str(item), context, list(texts), float(r)]
                         for e, item, context, texts, r in episodes)
    batch = {"base": {k: np.stack([b[k] for b in base]) for k in ("tokens", "mask")},
             "persona": persona}
    return _block(batch, members, rows)

  t = corpus.seq_len
  shapes = {"base": {"tokens": (n, half, t), "mask": (n, half, t)},
            "persona": {"tokens": (n, half, t), "mask": (n, half, t), "adv": (n, half)}}
  out = data.BatchStream(shapes, build, on_policy=True)  # build() appends to out.journal
  return out


def _block(batch, members, rows):
  """The (members, rows) block of every array: what one process holds."""
  return {part: {k: v[members][:, rows] for k, v in fields.items()}
          for part, fields in batch.items()}


def objective_stage(config, corpus, pack, cells, ref_E, user_cfg):
  """The Stage of `cells` (affect and emotion_rl) of a finetune pack; ref_E: their base models."""
  o, t = config.objectives, config.train
  rollout = None
  if any(c.persona == "emotion_rl" for c in cells):
    rollout = Rollout(pack.graphdef, corpus, user_cfg, o.group_size,
                      prompts_per_step(config, user_cfg), o.max_new_tokens)
  n = len(cells)
  inputs = {"lam": np.array([c.warmth_weight for c in cells], np.float32),
            "is_affect": np.array([c.persona == "affect" for c in cells], np.float32),
            "beta": np.full(n, o.kl_beta, np.float32),
            "lr": np.full(n, t.persona_learning_rate, np.float32), "ref": ref_E}
  loss = functools.partial(grpo.loss_fn, warm_ids_K=affect.warm_token_ids(corpus.tokenizer),
                           normalization=t.loss_normalization)
  return stage.Stage("objectives", f"{pack.label}/objectives", [c.run for c in cells],
                     t.persona_steps, train.make_optimizer(t, t.persona_steps),
                     stream(corpus, cells, t, rollout), loss, inputs, pack.model,
                     step_offset=t.base_steps, final=("base_loss", "persona_loss", "kl"),
                     schedule=train.make_schedule(t, t.persona_steps))


def summaries(cells, final, journal):
  """Per-cell training rows {name: [value per cell]}: the last step's losses, the KL to the base
  model (emotion_rl), and the mean reward over the first and the last fifth of the phase."""
  episodes = episodes_frame(journal)
  rl = np.array([c.persona == "emotion_rl" for c in cells])
  out = {"base_loss": final["base_loss"], "persona_loss": final["persona_loss"],
         "kl_to_base": np.where(rl, final["kl"], np.nan)}
  first, last = np.full(len(cells), np.nan), np.full(len(cells), np.nan)
  for e, c in enumerate(cells):
    r = episodes[episodes.run == c.run].groupby("step").reward.mean().to_numpy()
    if len(r):
      k = max(1, len(r) // 5)
      first[e], last[e] = r[:k].mean(), r[-k:].mean()
  if rl.any():
    out.update(rl_reward_first=first, rl_reward_last=last)
  return out


def episodes_frame(journal):
  return pd.DataFrame(journal, columns=EPISODE_COLUMNS)
