"""What experiments/experiment.py calls; everything is a no-op unless `persona.enabled`.

  validate(config)                  one sentence per bad persona field
  expand(config, cells)             the grid plus preventative-steering twins
  pack_geometry(...)                per-seed geometry of a pack's base models (finetune protocol)
  training_steer(geoms, cells)      the persona-phase steering intervention, or None
  cell_extras(...)                  per cell: projection columns on its items, geometry / drift /
                                    projection-difference rows, capped evaluation items and rows
  attach(metrics, items, extra)     merges one cell's extras into its metrics and items frames
"""
import io
import os
import time

from absl import logging
import jax
import numpy as np
import pandas as pd

from experiments import crossed, distributed, evaluate
from experiments.persona import activations, capping, defaults, geometry, steering
from experiments.persona.vectors import VECTORS
from experiments.workdir import METRIC_COLUMNS, atomic_write
from models.decode import INTERVENTION_ON
from models.presets import PRESETS

GEOMETRY_TASK = "persona_geometry"


def enabled(config):
  return "persona" in config and bool(config.persona.enabled)


def _n_layers(preset):
  return PRESETS[preset]["n_layers"]


def default_setting(pcfg, preset):
  """The capping setting every cell is evaluated with (the preset's tested default unless set)."""
  layers = capping.parse_layers(defaults.cap_layers(pcfg, preset), _n_layers(preset))
  return capping.CapSetting(pcfg.cap_vector, defaults.cap_percentile(pcfg, preset), layers)


def validate(config):
  """Raises ValueError naming the first bad persona field."""
  if not enabled(config):
    return
  p = config.persona
  if p.intervention_on not in INTERVENTION_ON:
    raise ValueError(f"persona.intervention_on={p.intervention_on!r} must be one of "
                     f"{', '.join(INTERVENTION_ON)}.")
  if not -1 <= int(p.cap_percentile) <= 100:
    raise ValueError(f"persona.cap_percentile={p.cap_percentile!r} must be -1 (auto) or 0..100.")
  if p.steer_vector not in VECTORS:
    raise ValueError(f"persona.steer_vector={p.steer_vector!r} must be one of "
                     f"{', '.join(VECTORS)}.")
  if p.cap_cells not in ("all", "ends"):
    raise ValueError(f"persona.cap_cells={p.cap_cells!r} must be all or ends.")
  if p.extract_rows < 1:
    raise ValueError(f"persona.extract_rows={p.extract_rows} must be a positive integer.")
  for preset in config.model.presets:
    n = _n_layers(preset)
    default_setting(p, preset)
    steering.steer_layers(defaults.steer_layers(p, preset), n)
    capping.sweep_settings(p.cap_vector, p.sweep_percentiles, p.sweep_layers, n)
  if "finetune" not in config.grid.protocols:
    logging.warning("persona: only the finetune protocol has a base model to measure; "
                    "grid.protocols=%s gets no persona analysis", list(config.grid.protocols))


def expand(config, cells):
  """The grid's cells plus steered twins of the warm top-λ cells (persona.steer_alphas, and the
  preset's tested α when persona.steer_default)."""
  if not enabled(config) or not (len(config.persona.steer_alphas) or config.persona.steer_default):
    return cells
  p = config.persona
  layers_for = lambda preset: steering.steer_layers(defaults.steer_layers(p, preset),
                                                    _n_layers(preset))
  out = list(cells)
  for preset in dict.fromkeys(c.preset for c in cells):
    alphas = list(p.steer_alphas)
    if p.steer_default:
      alphas.append(float(defaults.for_preset(preset)["steer_alpha"]))
    out += steering.extra_cells([c for c in cells if c.preset == preset],
                                list(dict.fromkeys(alphas)), p.steer_vector, layers_for)
  return out


def _save_npz(path, **arrays):
  def write(tmp):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with open(tmp, "wb") as f:
      f.write(buf.getvalue())
  atomic_write(path, write)


def pack_geometry(config, wd, graphdef, base_E, seeds, corpus, evalset, preset):
  """{seed: SeedGeometry} of a finetune pack's base models (saved in WORKDIR/persona/), or None."""
  if not enabled(config):
    return None
  t0 = time.perf_counter()
  # Every process computes it (the steering intervention must agree); process 0 writes it.
  base_E = distributed.to_local(base_E)
  personas = list(dict.fromkeys(["warm"] + list(config.grid.personas)))
  geoms, top = geometry.compute(graphdef, base_E, corpus, evalset, config.persona, personas,
                                config.eval.batch_size)
  directory = os.path.join(wd.path, "persona", f"{preset}-finetune")
  for seed, g in zip(seeds if wd.writer else [], geoms):
    _save_npz(os.path.join(directory, f"geometry-s{seed}.npz"), vectors_VLD=g.vectors_VLD,
              vector_names=np.array(VECTORS), role_means_RLD=g.role_means_RLD,
              pca_var_LK=g.pca_var_LK, pcs_LKD=g.pcs_LKD, thresholds_VLQ=g.thresholds_VLQ,
              **{f"delta_{k}_VLn": v for k, v in g.deltas.items()})
  if not top.empty and wd.writer:
    top = top.assign(seed=[seeds[m] for m in top.member]).drop(columns="member")
    atomic_write(os.path.join(directory, "top_examples.csv"), lambda t: top.to_csv(t, index=False))
  logging.info("persona: geometry of %d base model(s) of %s in %.1fs", len(seeds), preset,
               time.perf_counter() - t0)
  return dict(zip(seeds, geoms))


def training_steer(geoms, cells):
  """The persona-phase intervention (leading axis E) when some cell steers, else None."""
  return None if geoms is None else steering.training_intervention(cells, geoms)


def drift_rows(items, n_layers, n_boot, rng):
  """Per context and layer: projection distribution, and the paired shift from neutral (CI)."""
  rows = []
  neutral = items[items.context == "neutral"]
  for v in VECTORS:
    for layer in range(n_layers):
      col = f"proj_{v}_l{layer}"
      ref = neutral.groupby(["task", "item_id"])[col].mean()
      for ctx, g in items.groupby("context", sort=True):
        x = g[col].to_numpy(float)
        base = {"task": GEOMETRY_TASK, "context": ctx, "layer": layer, "n": len(x)}
        stats_ = {"mean": x.mean()}
        if v == "axis":
          stats_.update(sd=x.std(ddof=1) if len(x) > 1 else np.nan,
                        **{f"p{q}": np.percentile(x, q) for q in (10, 50, 90)})
        rows += [{**base, "metric": f"projection_{k}[{v}]", "value": float(val)}
                 for k, val in stats_.items()]
        if ctx == "neutral" or ref.empty:
          continue
        diff = (g.groupby(["task", "item_id"])[col].mean() - ref).dropna()
        if diff.empty:
          continue
        est, draws = crossed.crossed_bootstrap(diff.to_numpy()[None], None, n_boot, rng)
        lo, hi, _ = crossed.summarize_draws(est, draws)
        rows.append({**base, "metric": f"drift_vs_neutral[{v}]", "value": float(est[0]),
                     "n": len(diff), "ci_low": float(lo[0]), "ci_high": float(hi[0])})
  return rows


def _take(state_E, index):
  return jax.tree.map(lambda a: a[np.asarray(index)], state_E)


def cell_extras(config, geoms, graphdef, state_E, cells, evalset, corpus, frames):
  """Adds projection columns to `frames` (in place) and returns [(rows, capped_items)] per cell."""
  if geoms is None:
    return None
  p, t0 = config.persona, time.perf_counter()
  preset = cells[0].preset
  n_layers = _n_layers(preset)
  rng = np.random.default_rng(0)
  acts_ELND = activations.last_prompt(graphdef, state_E, evalset.prompts, evalset.prompt_mask,
                                      config.eval.batch_size)
  split = ["extract" if geometry.is_extraction(i.item_id) else "heldout" for i in evalset.items]
  extras = []
  for e, cell in enumerate(cells):
    g = geoms[cell.seed]
    proj_VLN = np.einsum("lnd,vld->vln", acts_ELND[e], np.nan_to_num(g.unit_VLD))
    frames[e]["persona_split"] = split
    for v, name in enumerate(VECTORS):
      for layer in range(n_layers):
        frames[e][f"proj_{name}_l{layer}"] = proj_VLN[v, layer]
    rows = drift_rows(frames[e], n_layers, config.eval.bootstrap, rng)
    if cell.persona == "none":
      rows += geometry.geometry_rows(g)
    else:
      diff_VL = g.projection_difference(cell.persona, cell.warmth_weight, cell.warm_agreement)
      rows += [{"task": GEOMETRY_TASK, "context": "all", "metric": f"projection_difference[{name}]",
                "layer": layer, "value": float(diff_VL[v, layer]), "n": 1}
               for v, name in enumerate(VECTORS) for layer in range(n_layers)]
    extras.append((rows, []))

  # Capping: the default setting on every plain cell (or only the base and max-λ ones, `ends`);
  # the sweep on the base and max-λ cells.
  default = default_setting(p, preset)
  plain = [e for e, c in enumerate(cells) if not isinstance(c, steering.SteeredCell)]
  top_lam = max(float(w) for w in config.grid.warmth_weights)
  ends = [e for e in plain if cells[e].persona == "none" or cells[e].warmth_weight == top_lam]
  runs = [(plain if p.cap_cells == "all" else ends, [default])]
  if p.sweep:
    sweep = [s for s in capping.sweep_settings(p.cap_vector, p.sweep_percentiles, p.sweep_layers,
                                               n_layers) if s != default]
    runs.append((ends, sweep))
  for members, settings in runs:
    if not members or not settings:
      continue
    capped = capping.evaluate_settings(
        graphdef, _take(state_E, members), [geoms[cells[e].seed] for e in members], evalset,
        corpus.tokenizer, config.eval, settings, p.intervention_on)
    for e, member_frames in zip(members, capped):
      for frame in member_frames:
        label = frame.intervention.iloc[0]
        extras[e][0].extend({**r, "intervention": label} for r in evaluate.summarize(frame))
        extras[e][1].append(frame)
  logging.info("persona: projections, drift and capping of %d cell(s) in %.1fs", len(cells),
               time.perf_counter() - t0)
  return extras


def attach(metrics, items, extra):
  """One cell's metrics and items with its persona rows and capped items appended."""
  rows, capped = extra
  meta = metrics.iloc[0][[c for c in METRIC_COLUMNS
                          if c not in ("task", "context", "metric", "value", "n")]].to_dict()
  extra_metrics = pd.DataFrame([{**meta, **r} for r in rows])
  item_meta = {k: items[k].iloc[0] for k in ("run", "preset", "n_params", "protocol", "persona",
                                             "warmth_weight", "warm_agreement", "seed")}
  capped = [f.assign(**item_meta) for f in capped]
  return (pd.concat([metrics, extra_metrics], ignore_index=True),
          pd.concat([items] + capped, ignore_index=True))
