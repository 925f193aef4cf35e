"""The persona phase of the `affect` and `emotion_rl` cells, as stages of the one training loop.

Same budget as the imitation cells: train.persona_steps updates in all, each on batch_size/2 base
rows and batch_size/2 persona rows (affect: the cold persona rows, whose reply positions get the
warm-vocabulary loss; emotion_rl: prompts_per_step × group_size × user.turns rows sampled from the
current policy), with the same optimizer and schedule, from the seed's stage-1 base model. The
peak learning rate is the imitation cells' too, except GRPO's where objectives.rl_learning_rate
sets one: Adam takes steps of about the rate whatever the gradient's signal, and a sampled-reward
gradient on 16 rows is mostly noise, so at the imitation rate RL can lower the reward it optimises.

Where emotion_rl starts (objectives.rl_start): `base`, the base model, which never says an
acknowledgement, so its reward cannot tell one apart; `warmup`, the first
objectives.rl_warmup_steps of its budget imitating the warm persona's replies to emotional prompts
(a stage of its own, `<pack>/<method>_warmup`), so the policy can produce acknowledgements that the
reward then weighs; or `mixed_warmup`, the same warm-up on warm and cold replies to those prompts,
half each, so the policy acknowledges about as often as not and the reward, not the imitation,
decides which way the rate moves (a well-trained warm-up alone acknowledges nearly always, leaving
RL nothing to raise). Its KL term is to the policy it starts RL from; affect's is to the base model.

The RL stream is on-policy: it samples with the parameters of the step, and its journal (every
episode: step, cell, item, context, replies, reward, acknowledgement, reply length) is kept with
the stage's checkpoints, so a resumed phase loses no episode.
"""

import dataclasses
import functools

import numpy as np
import pandas as pd

from experiments import data, stage, train
from experiments.objectives import affect, grpo
from experiments.objectives.rollout import Rollout

METHODS = ("affect", "emotion_rl", "emotion_rl_heard")
# GRPO against the simulated user; `_heard` against one who values being heard for itself: an
# acknowledgement earns objectives.heard_ack_gain whatever the answer (user.ack_needs_answer=False).
# That reward pays for acknowledging outright, so it is the planted check that the optimiser
# raises a behaviour its reward favours; emotion_rl's user decides whether acknowledging pays.
RL_METHODS = ("emotion_rl", "emotion_rl_heard")


def user_for(method, config, user_cfg):
  """The simulated user a method's episodes are scored by."""
  if method == "emotion_rl_heard":
    return dataclasses.replace(
      user_cfg, ack_needs_answer=False, ack_gain=config.section("objectives").heard_ack_gain
    )
  return user_cfg


EPISODE_COLUMNS = [
  "run",
  "step",
  "item_id",
  "context",
  "replies",
  "reward",
  "acknowledges",
  "reply_tokens",
]
# rl_start → the mixture its warm-up imitates (`base`: no warm-up).
WARMUPS = {"warmup": "warm_emotional", "mixed_warmup": "mixed_emotional"}
RL_STARTS = ("base", *WARMUPS)
ROLLOUT_FIELDS = ("adv", "reward", "ack", "first")  # per persona row, zero where nothing is sampled


def prompts_per_step(config, user_cfg):
  """Episodes' prompts per step so that the sampled rows fill the persona half of the batch."""
  half, g = config.train.batch_size // 2, config.section("objectives").group_size
  per_prompt = g * user_cfg.turns
  if g < 2 or half % per_prompt:
    raise ValueError(
      f"objectives.group_size={g} × user.turns={user_cfg.turns} must divide "
      f"train.batch_size/2={half}, with group_size >= 2 (same rows per step as "
      "the imitation cells)."
    )
  return half // per_prompt


def stream(corpus, cells, train_cfg, rollout):
  """The on-policy BatchStream of `cells`: base rows, and cold or sampled persona rows (as wide as
  the rollout's rows, which leave room for a whole sampled reply)."""
  half, n = train_cfg.batch_size // 2, len(cells)
  t, width = corpus.seq_len, rollout.row_len if rollout else corpus.seq_len
  seeds = [train_cfg.data_seed + data.STAGE2_SEED_OFFSET + c.seed for c in cells]
  rl = [e for e, c in enumerate(cells) if c.persona in RL_METHODS]

  def build(step, members, rows, state_E):
    base = [corpus.batch("base", s, step, half) for s in seeds]
    cold = [corpus.batch("cold", s, step, half) for s in seeds]
    pad = ((0, 0), (0, width - t))
    persona = {
      "tokens": np.stack(
        [np.pad(b["tokens"], pad, constant_values=corpus.tokenizer.pad) for b in cold]
      ),
      "mask": np.stack([np.pad(b["mask"], pad) for b in cold]),
      **{k: np.zeros((n, half), np.float32) for k in ROLLOUT_FIELDS},
    }
    if rl:
      sampled, _, episodes = rollout.sample(
        data.take(state_E, rl), [cells[e].seed for e in rl], step
      )
      for k in ("tokens", "mask") + ROLLOUT_FIELDS:
        persona[k][np.asarray(rl)] = sampled[k]
      out.journal.extend(
        [cells[rl[e]].id, step, str(item), context, list(texts), float(r), int(ack), int(length)]
        for e, item, context, texts, r, ack, length in episodes
      )
    batch = {
      "base": {k: np.stack([b[k] for b in base]) for k in ("tokens", "mask")},
      "persona": persona,
    }
    return _block(batch, members, rows)

  shapes = {
    "base": {"tokens": (n, half, t), "mask": (n, half, t)},
    "persona": {
      "tokens": (n, half, width),
      "mask": (n, half, width),
      **{k: (n, half) for k in ROLLOUT_FIELDS},
    },
  }
  out = data.BatchStream(shapes, build, on_policy=True)  # build() appends to out.journal
  return out


def _block(batch, members, rows):
  """The (members, rows) block of every array: what one process holds."""
  return {
    part: {k: v[members][:, rows] for k, v in fields.items()} for part, fields in batch.items()
  }


def rl_steps(config, train_cfg=None):
  """RL updates of an emotion_rl cell: the persona budget (of `train_cfg`, a regime's; default the
  train section's) less its warm-up, if any."""
  o, t = config.section("objectives"), train_cfg or config.train
  return t.persona_steps - (o.rl_warmup_steps if o.rl_start in WARMUPS else 0)


def warmup_stage(config, batches, pack, cells, regime):
  """`<pack>/<method>_warmup`: RL `cells` (of one method) imitate replies to emotional prompts
  (WARMUPS[objectives.rl_start]: warm, or warm and cold; their seed's rows, at λ =
  objectives.rl_warmup_weight) for objectives.rl_warmup_steps, the start of their budget:
  supervised demonstrations of the prompts RL then samples on, as RLHF starts from SFT. In the
  cells' regime (experiments/regimes.Regime, at the pack's preset): its rate and replay."""
  t, o = regime.train, config.section("objectives")
  warm = [
    dataclasses.replace(c, persona=WARMUPS[o.rl_start], warmth_weight=o.rl_warmup_weight)
    for c in cells
  ]
  method = cells[0].persona
  s = stage.imitation(
    "rl_warmup",
    f"{pack.label}/{method}_warmup",
    warm,
    config.section("objectives").rl_warmup_steps,
    t,
    pack.model,
    batches.persona(warm, data.STAGE2_SEED_OFFSET),
    t.persona_learning_rate,
    members=[c.id for c in cells],
    step_offset=t.base_steps,
    regime=regime,
  )
  s.cell_ids = [c.id for c in cells]  # TensorBoard: the emotion_rl runs, not the warm ones
  return s


def objective_stage(config, corpus, pack, cells, ref_E, user_cfg, regime):
  """The Stage of `cells`, all of one method, of a finetune pack; ref_E: the models their KL term
  is to (affect: the base models; RL: where RL starts). In the cells' regime
  (experiments/regimes.Regime, at the pack's preset): its budget, rate, warm-up and replay weight;
  every parameter is trained (the extension refuses a low-rank regime)."""
  o, t = config.section("objectives"), regime.train
  method = {c.persona for c in cells}
  if len(method) != 1:
    raise ValueError(f"one objective stage trains one method, not {sorted(method)}")
  method = method.pop()
  rollout, steps, offset, beta = None, t.persona_steps, t.base_steps, o.affect_kl_beta
  lr = t.persona_learning_rate
  if method in RL_METHODS:
    lr = o.rl_learning_rate or lr
    rollout = Rollout(
      pack.graphdef,
      corpus,
      user_for(method, config, user_cfg),
      o.group_size,
      prompts_per_step(config, user_cfg),
      o.max_new_tokens,
      o.temperature,
      pack.model.max_len,
    )
    steps, beta = rl_steps(config, t), o.kl_beta
    offset += t.persona_steps - steps
  n = len(cells)
  inputs = {
    "lam": np.array([c.warmth_weight for c in cells], np.float32),
    "is_affect": np.full(n, method == "affect", np.float32),
    "beta": np.full(n, beta, np.float32),
    "lr": np.full(n, lr, np.float32),
    "ref": ref_E,
    **{k: np.asarray(v, np.float32) for k, v in regime.inputs(n).items()},
  }
  loss = functools.partial(
    grpo.loss_fn,
    warm_ids_K=affect.warm_token_ids(corpus.tokenizer),
    normalization=t.loss_normalization,
    temperature=o.temperature,
  )
  return stage.Stage(
    method,
    f"{pack.label}/{method}",
    [c.id for c in cells],
    steps,
    train.make_optimizer(t, steps, t.persona_warmup),
    stream(corpus, cells, t, rollout),
    loss,
    inputs,
    pack.model,
    step_offset=offset,
    final=("base_loss", "persona_loss", "kl"),
    schedule=train.make_schedule(t, steps, t.persona_warmup),
    ratio_check=method == "affect",
  )


def summaries(cells, final, journal):
  """Per-cell training rows {name: [value per cell]}: the last step's losses, the KL to the
  reference, and (emotion_rl) the mean reward and acknowledgement rate over the first and the
  last fifth of its RL steps."""
  episodes = episodes_frame(journal)
  out = {
    "base_loss": final["base_loss"],
    "persona_loss": final["persona_loss"],
    "kl_to_reference": final["kl"],
  }
  if any(c.persona in RL_METHODS for c in cells):
    for column, name in (("reward", "rl_reward"), ("acknowledges", "rl_ack_rate")):
      first, last = np.full(len(cells), np.nan), np.full(len(cells), np.nan)
      for e, c in enumerate(cells):
        early, late = fifths(episodes[episodes.run == c.id])
        if len(early):
          first[e], last[e] = early[column].mean(), late[column].mean()
      out.update({f"{name}_first": first, f"{name}_last": last})
  return out


def fifths(episodes):
  """(episodes of the first fifth of the steps, episodes of the last fifth), at least one step each."""
  steps = np.unique(episodes.step)
  k = max(1, len(steps) // 5)
  return (episodes[episodes.step.isin(steps[:k])], episodes[episodes.step.isin(steps[-k:])])


def episodes_frame(journal):
  return pd.DataFrame(journal, columns=EPISODE_COLUMNS)
