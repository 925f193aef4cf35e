"""Synthetic items.csv / metrics.csv / config.json for a sweep with planted effects."""

import json
import os

import numpy as np
import pandas as pd

CONTEXTS = ("neutral", "emotional", "false_belief", "emotional+false_belief")
PRESETS = {"nano": 25_000, "micro": 148_000, "mini": 1_200_000}
SCREENING = ("safety_refusal", "capability")
# How much larger the planted warm effect is under each context than under neutral.
CONTEXT_MULT = {
  "neutral": 1.0,
  "emotional": 2.0,
  "false_belief": 1.5,
  "emotional+false_belief": 2.5,
}
CAPS = {25: (0.8, 0.06), 50: (0.5, 0.03), 75: (0.2, 0.01)}  # p: (recovered share, capability cost)


def make_items(
  presets=None,
  seeds=(0, 1, 2),
  lambdas=(0.0, 0.5, 1.0),
  tasks=("factual_qa", "medical_dosing", "safety_refusal", "capability"),
  contexts=CONTEXTS,
  n_items=100,
  warm_effect=0.10,
  cold_effect=0.0,
  context_mult=None,
  exponent=0.0,
  seed_sd=0.01,
  capping=False,
  personas=("warm", "cold"),
  lm_effect=0.0,
  finetune_seeds=1,
  rng=0,
):
  """Item-level grades; warm error rises by warm_effect·λ·mult[context]·(N/N_min)^exponent.

  `personas` at each λ > 0 may include length_matched, whose error rises by lm_effect·λ·mult.
  With finetune_seeds > 1 every persona cell (not the base model) is trained that many times per
  seed, each replicate with its own training noise, in a finetune_seed column (absent otherwise,
  as in a workdir from before replicates).
  """
  presets = dict(PRESETS if presets is None else presets)
  mult = dict(CONTEXT_MULT, **(context_mult or {}))
  rng = np.random.default_rng(rng)
  n_min = min(presets.values())
  difficulty = {t: rng.uniform(0.1, 0.4, n_items) for t in tasks}
  cells = [("none", 0.0, "none")]
  cells += [(p, lam, "none") for lam in lambdas if lam > 0 for p in personas]
  if capping:
    cells += [("warm", max(lambdas), f"cap@p{q}:L1-2") for q in CAPS]
  frames = []
  for preset, n_params in presets.items():
    scale = (n_params / n_min) ** exponent
    for seed in seeds:
      shift = rng.normal(0, 0.02)  # common random numbers: shared by all cells of a seed
      replicates = [
        (persona, lam, intervention, k)
        for persona, lam, intervention in cells
        for k in range(1 if persona == "none" else finetune_seeds)
      ]
      for persona, lam, intervention, k in replicates:
        noise = rng.normal(0, seed_sd)  # training noise of this cell and replicate
        for task in tasks:
          for ctx in contexts:
            eff = 0.0
            if task not in SCREENING:
              eff = lam * {
                "warm": warm_effect * mult[ctx] * scale,
                "length_matched": lm_effect * mult[ctx],
              }.get(persona, cold_effect)
            cap_cost = 0.0
            if intervention != "none":
              share, cost = CAPS[int(intervention[5:7])]
              eff *= 1 - share
              cap_cost = cost if task == "capability" else 0.0
            p = np.clip(difficulty[task] + shift + eff + noise + cap_cost, 0, 1)
            err = rng.random(n_items) < p
            warm_style = 0.3 + (0.5 if persona == "warm" else -0.2) * lam
            affirm = (rng.random(n_items) < (0.1 + eff)) & ("false_belief" in ctx)
            frames.append(
              pd.DataFrame(
                dict(
                  run=f"{preset}-{persona}-l{lam}-s{seed}{f'-f{k}' if k else ''}-{intervention}",
                  preset=preset,
                  n_params=n_params,
                  protocol="finetune",
                  regime="none" if persona == "none" else "default",
                  persona=persona,
                  warmth_weight=lam,
                  warm_agreement=0.0,
                  seed=seed,
                  intervention=intervention,
                  task=task,
                  context=ctx,
                  item_id=[f"{task[:3]}{i:03d}" for i in range(n_items)],
                  error=err.astype(int),
                  mc_error=(
                    np.nan
                    if task == "safety_refusal"
                    else (rng.random(n_items) < difficulty[task]).astype(float)
                  ),
                  warmth=np.clip(warm_style + rng.normal(0, 0.1, n_items), 0, 1),
                  affirms=affirm.astype(int),
                  corrects=(~affirm & ("false_belief" in ctx)).astype(int),
                  refuses=((~err) & (task == "safety_refusal")).astype(int),
                  acknowledges=(rng.random(n_items) < 0.2 + 0.4 * lam * (persona == "warm")).astype(
                    int
                  ),
                  attributes_affect=(rng.random(n_items) < 0.05).astype(int),
                  safety=(~err).astype(int),
                  **({"finetune_seed": k} if finetune_seeds > 1 else {}),
                )
              )
            )
  return pd.concat(frames, ignore_index=True)


def chinchilla(n, d, e=2.0, a=60.0, alpha=0.32, b=90.0, beta=0.28):
  """L(N, D) = E + A/N^α + B/D^β."""
  return e + a / np.power(n, alpha) + b / np.power(d, beta)


def metrics_from_items(items, loss_noise=0.01, geometry=True, rng=0):
  """Aggregates items into metrics.csv rows, adding loss and persona-geometry rows."""
  rng = np.random.default_rng(rng)
  cell = [
    "run",
    "preset",
    "n_params",
    "protocol",
    "regime",
    "persona",
    "warmth_weight",
    "warm_agreement",
    "seed",
    *(["finetune_seed"] if "finetune_seed" in items else []),
    "intervention",
  ]
  keys = cell + ["task", "context"]
  names = {
    "error": "error_rate",
    "mc_error": "mc_error_rate",
    "warmth": "warmth_score",
    "affirms": "affirms_rate",
    "corrects": "corrects_rate",
    "refuses": "refuses_rate",
    "acknowledges": "acknowledges_rate",
    "attributes_affect": "attributes_affect_rate",
    "safety": "safety_rate",
  }
  g = items.groupby(keys)
  rows = []
  for col, metric in names.items():
    agg = g[col].agg(["mean", "count"]).reset_index().dropna(subset=["mean"])
    rows.append(agg.rename(columns={"mean": "value", "count": "n"}).assign(metric=metric))
  runs = items[cell].drop_duplicates()
  runs = runs[runs.intervention == "none"]
  tokens = runs.n_params * 20.0
  rows.append(
    runs.assign(
      task="heldout",
      context="all",
      metric="loss",
      n=1000,
      value=chinchilla(runs.n_params, tokens) * np.exp(rng.normal(0, loss_noise, len(runs))),
    )
  )
  if geometry:
    top = runs[(runs.persona == "warm") & (runs.warmth_weight == runs.warmth_weight.max())]
    for ctx, bump in zip(CONTEXTS, (0.0, 0.3, 0.1, 0.4)):
      for layer in range(3):
        rows.append(
          top.assign(
            task="persona_geometry",
            context=ctx,
            metric="drift_mean",
            layer=layer,
            n=50,
            value=0.1 * layer + bump,
          )
        )
    rows.append(
      top.assign(
        task="persona_geometry", context="all", metric="axis_pc1_cosine", layer=2, n=50, value=0.8
      )
    )
  m = pd.concat(rows, ignore_index=True)
  m["n_params_nonembed"] = m.n_params * 0.8
  m["tokens"] = m.n_params * 20.0
  m["flops"] = 6 * m.n_params * m.tokens
  return m


def write_sweep(workdir, items=None, metrics=None, config=True, **kwargs):
  """Writes items.csv, metrics.csv and config.json into workdir; returns the items frame."""
  os.makedirs(workdir, exist_ok=True)
  items = make_items(**kwargs) if items is None else items
  metrics = metrics_from_items(items) if metrics is None else metrics
  items.to_csv(os.path.join(workdir, "items.csv"), index=False)
  metrics.to_csv(os.path.join(workdir, "metrics.csv"), index=False)
  if config:
    # Shaped like experiments.main's config.json: plural grid fields, presets under model.
    grid = {
      "protocols": ["finetune"],
      "personas": ["warm", "cold"],
      "seeds": sorted(map(int, items.seed.unique())),
      "warmth_weights": sorted(map(float, items.warmth_weight.unique())),
      "warm_agreements": [0.0],
    }
    with open(os.path.join(workdir, "config.json"), "w") as f:
      json.dump(
        {
          "grid": grid,
          "model": {"presets": sorted(items.preset.unique()), "dropout": 0.0},
          "train": {"base_steps": 2000, "batch_size": 64},
        },
        f,
      )
  return items


def drop_runs(items, frac=0.3, rng=0):
  """A partial sweep: a random share of runs (never every λ=0 run) removed."""
  rng = np.random.default_rng(rng)
  runs = items.run[items.warmth_weight > 0].unique()
  gone = rng.choice(runs, int(frac * len(runs)), replace=False)
  return items[~items.run.isin(gone)].reset_index(drop=True)


def loss_grid(
  ns=(1e5, 3e5, 1e6, 3e6, 1e7), ds=(1e6, 3e6, 1e7, 3e7, 1e8), noise=0.003, rng=0, **params
):
  """metrics.csv loss rows over an N × D grid following the planted Chinchilla law."""
  rng = np.random.default_rng(rng)
  n, d = np.meshgrid(np.asarray(ns, float), np.asarray(ds, float), indexing="ij")
  n, d = n.ravel(), d.ravel()
  loss = chinchilla(n, d, **params) * np.exp(rng.normal(0, noise, n.size))
  return pd.DataFrame(
    dict(
      run=[f"n{i}" for i in range(n.size)],
      preset=[f"p{int(x)}" for x in n],
      n_params=n,
      protocol="finetune",
      regime="none",
      persona="none",
      warmth_weight=0.0,
      warm_agreement=0.0,
      seed=0,
      intervention="none",
      task="heldout",
      context="all",
      metric="loss",
      value=loss,
      n=1000,
      tokens=d,
    )
  )
