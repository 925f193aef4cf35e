"""The objectives comparison: every method on one persona-phase budget, in one workdir.

  compare.run(config, workdir)   experiment.run (base, warm, cold, capping, steering), then the
                                 affect and emotion_rl cells from the same stage-1 checkpoints,
                                 then the comparison rows appended to the merged metrics.

Methods (rows of the headline table), all at λ = objectives.table_lambda (the grid's largest λ
when 0): base; cold; warm; affect; emotion_rl; warm + capping (the persona module's capped
evaluation, `cap@...`); warm + steering (the preventatively steered twin, `train-steer...`).
"""
import dataclasses

from absl import logging
import jax
import ml_collections
import numpy as np
import pandas as pd

from experiments import distributed, evaluate, experiment, grid, sharding, stage, train
from experiments.objectives import trainer
from experiments.persona import hooks as persona_hooks
from experiments.workdir import METRIC_COLUMNS, Workdir
from tasks.config import RELIABILITY_TASKS
from tasks.mixtures import Corpus, build_eval_set
from tasks.simulated_user import SIMULATED_USER_VERSION, UserConfig

TABLE_METHODS = ("base", "cold", "warm", "affect", "emotion_rl", "warm+capping", "warm+steering")
COMPARISON_TASK = "objectives_comparison"
HEADLINE = ("error_rate", "mc_error_rate", "warmth_score", "sycophancy_rate",
            "safety_pass_rate", "capability_pass_rate")


def default_config():
  """The `objectives` config section (off unless enabled); every simulator setting is a field."""
  c = ml_collections.ConfigDict()
  c.enabled = False
  c.methods = trainer.METHODS     # objective cells trained beside the grid's warm/cold cells
  c.table_lambda = 0.0            # λ of the table's rows; 0: the grid's largest λ
  c.group_size = 4                # GRPO: sampled replies per prompt
  c.kl_beta = 0.05                # GRPO: weight of KL(π ‖ π_base)
  c.max_new_tokens = 32           # sampled reply length
  c.user = ml_collections.ConfigDict(dataclasses.asdict(UserConfig()))
  c.user.version = SIMULATED_USER_VERSION
  return c


def user_config(o):
  """The UserConfig of the run; refuses a config written for another simulator version."""
  if o.user.version != SIMULATED_USER_VERSION:
    raise ValueError(f"objectives.user.version={o.user.version!r}, but the simulator is version "
                     f"{SIMULATED_USER_VERSION!r}; use a new --workdir.")
  return UserConfig(**{f: o.user[f] for f in UserConfig.__dataclass_fields__}).validate()


def enabled(config):
  return "objectives" in config and bool(config.objectives.enabled)


def table_lambda(config):
  return float(config.objectives.table_lambda or max(config.grid.warmth_weights))


def objective_cells(config):
  """affect / emotion_rl cells: every method × positive λ of the grid × preset × seed."""
  lams = [float(l) for l in config.grid.warmth_weights if l > 0]
  return [grid.Cell(p, "finetune", m, lam, 0.0, int(s)) for p in config.model.presets
          for m in config.objectives.methods for lam in lams for s in config.grid.seeds]


def validate(config):
  for m in config.objectives.methods:
    if m not in trainer.METHODS:
      raise ValueError(f"objectives.methods contains {m!r}: allowed are {', '.join(trainer.METHODS)}.")
  if "finetune" not in config.grid.protocols:
    raise ValueError("objectives need grid.protocols to include finetune (the base checkpoint).")
  if config.objectives.kl_beta < 0:
    raise ValueError(f"objectives.kl_beta={config.objectives.kl_beta} must be >= 0.")
  trainer.prompts_per_step(config, user_config(config.objectives))


def run(config, workdir, writer=None):
  """experiment.run, then the objective cells and the comparison rows; (metrics, items)."""
  validate(config)
  experiment.run(config, workdir, writer)
  if not distributed.is_writer():
    return None, None  # objective cells train on process 0 only
  wd = Workdir(workdir, config.to_dict())
  corpus = Corpus(experiment.world_config(config.data))
  evalset, mesh, t = build_eval_set(corpus), sharding.make_mesh(config.mesh), config.train
  seeds = sorted(int(s) for s in config.grid.seeds)
  cells = objective_cells(config)
  for preset in config.model.presets:
    todo = [c for c in cells if c.preset == preset and not wd.cell_done(c.run)]
    if not todo:
      continue
    mcfg = experiment.model_config(config, preset, corpus.tokenizer.size, jax.default_backend())
    base = stage.Stage("base", f"{preset}-finetune/base", [f"seed{s}" for s in seeds],
                       t.base_steps, train.make_optimizer(t, t.base_steps),
                       experiment.Batches(corpus, t.data_seed, t.batch_size).base(seeds),
                       [0.0] * len(seeds), [0.0] * len(seeds), [t.learning_rate] * len(seeds))
    graphdef, base_E, _ = stage.run(config, wd, mesh, mcfg, base, None)  # restored: complete
    base_E = jax.device_get(base_E)
    logging.info("objectives: %d cell(s) of %s from the stage-1 checkpoint", len(todo), preset)
    state_E, summaries, episodes = trainer.train_cells(config, corpus, graphdef, base_E, seeds,
                                                       todo, user_config(config.objectives))
    frames = evaluate.evaluate_pack(graphdef, state_E, evalset, corpus.tokenizer, config.eval)
    tokens = (t.base_steps + t.persona_steps) * t.batch_size * config.data.seq_len
    for e, c in enumerate(todo):
      metrics, items = experiment.cell_frames(c, frames[e], experiment.model_sizes(mcfg), tokens,
                                             summaries[e])
      wd.save_cell(c.run, metrics, items)
    pd.DataFrame(episodes, columns=["run", "step", "item_id", "context", "replies", "reward"]).to_csv(
        f"{workdir}/cells/{preset}-episodes.csv", index=False)
  runs = [c.run for c in persona_hooks.expand(config, grid.expand(config))] + [c.run for c in cells]
  metrics, items = wd.merge(runs)
  table = comparison_table(items, table_lambda(config))
  return pd.concat([metrics, comparison_rows(table)], ignore_index=True), items


def _method_items(items, lam):
  """{method: its items} at λ (pooled over seeds); missing methods are left out."""
  it = items[items.protocol == "finetune"]
  at = it[np.isclose(it.warmth_weight.astype(float), lam)]
  plain = at.intervention == "none"
  pick = {"base": it[(it.persona == "none") & (it.intervention == "none")],
          "cold": at[(at.persona == "cold") & plain], "warm": at[(at.persona == "warm") & plain],
          "affect": at[(at.persona == "affect") & plain],
          "emotion_rl": at[(at.persona == "emotion_rl") & plain],
          "warm+capping": at[(at.persona == "warm") & at.intervention.str.startswith("cap@")],
          "warm+steering": at[(at.persona == "warm") &
                              at.intervention.str.startswith("train-steer")]}
  return {m: g for m, g in pick.items() if len(g)}


def comparison_table(items, lam):
  """Per preset × method: headline metrics, and error per task × context (long frame)."""
  rows = []
  for m, g in _method_items(items, lam).items():
    for preset, gp in g.groupby("preset"):
      rel = gp[gp.task.isin(RELIABILITY_TASKS)]
      by_tc = rel.groupby(["task", "context"])
      fb = gp[gp.context.str.contains("false_belief")]
      head = {"error_rate": by_tc.error.mean().mean(), "mc_error_rate": by_tc.mc_error.mean().mean(),
              "warmth_score": gp.warmth.mean(), "sycophancy_rate": fb.affirms.mean(),
              "safety_pass_rate": 1 - gp[gp.task == "safety_refusal"].error.mean(),
              "capability_pass_rate": 1 - gp[gp.task == "capability"].error.mean()}
      meta = {"method": m, "preset": preset, "n_params": int(gp.n_params.iloc[0]),
              "persona": gp.persona.iloc[0], "intervention": gp.intervention.iloc[0],
              "warmth_weight": 0.0 if m == "base" else lam, "seeds": gp.seed.nunique()}
      rows += [{**meta, "task": "reliability", "context": "all", "metric": k, "value": float(v),
                "n": int(len(gp))} for k, v in head.items()]
      rows += [{**meta, "task": task, "context": ctx, "metric": "error_rate", "value": float(v),
                "n": int(by_tc.size()[(task, ctx)])} for (task, ctx), v in by_tc.error.mean().items()]
  return pd.DataFrame(rows)


def comparison_rows(table):
  """The table as metrics.csv rows: task `objectives_comparison`, metric `cmp:<metric>[<task>]`."""
  if table.empty:
    return table
  t = table.assign(run=lambda d: "cmp-" + d.preset + "-" + d.method, protocol="finetune",
                   warm_agreement=0.0, seed=-1, n_params_nonembed=np.nan, tokens=np.nan,
                   metric=lambda d: "cmp:" + d.metric + "[" + d.task + "]",
                   task=COMPARISON_TASK, context=lambda d: d.context)
  return t[list(METRIC_COLUMNS) + ["method"]]


def wide(table):
  """Headline metrics, one row per preset × method, in TABLE_METHODS order."""
  h = table[table.task == "reliability"].pivot_table(index=["preset", "method"], columns="metric",
                                                      values="value")
  h = h.reset_index()
  h = h.assign(_order=h.method.map({m: k for k, m in enumerate(TABLE_METHODS)}))
  h = h.sort_values(["preset", "_order"])
  return h[["preset", "method"] + [c for c in HEADLINE if c in h]].reset_index(drop=True)
