"""Persona geometry as an extension: vectors, the Assistant axis, drift, capping, steering.

`config.extensions = ("persona",)` turns it on; the `persona` section configures it
(persona/options.py). Its hooks (experiments/extensions.py):
  cells         preventative-steering twins of the warm top-λ cells
  after_base    per-seed geometry of a finetune pack's base models, saved in WORKDIR/persona/
  intervention  the persona-phase steering of the twins
  evaluate      per cell: projection columns on its items, geometry / drift / projection-difference
                rows, capped evaluation items and rows
  summarize     cross-cell rows after the merge (drift vs λ, trait and shift prediction, capping
                and steering trade-offs) and the text the run prints
"""

import io
import os
import time

from absl import logging
import numpy as np

from experiments import data, extensions
from experiments.analysis import crossed
from experiments.persona import activations, capping, geometry, report_section, steering, tables
from experiments.persona.options import PersonaConfig
from experiments.persona.vectors import VECTORS
from experiments.runtime import distributed, results
from experiments.runtime.workdir import atomic_write
from models.presets import PRESETS

GEOMETRY_TASK = "persona_geometry"


def _save_npz(path, **arrays):
  def write(tmp):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with open(tmp, "wb") as f:
      f.write(buf.getvalue())

  atomic_write(path, write)


def pack_geometry(config, options, workdir, graphdef, base_E, seeds, corpus, evalset, preset):
  """{seed: SeedGeometry} of a finetune pack's base models, saved in WORKDIR/persona/."""
  t0 = time.perf_counter()
  # Every process computes it (the steering intervention must agree); process 0 writes it.
  base_E = distributed.to_local(base_E)
  personas = list(dict.fromkeys(["warm"] + list(config.grid.personas)))
  geoms, top = geometry.compute(
    graphdef, base_E, corpus, evalset, options, personas, config.eval.batch_size
  )
  directory = os.path.join(workdir.path, "persona", f"{preset}-finetune")
  for seed, g in zip(seeds if workdir.writer else [], geoms):
    _save_npz(
      os.path.join(directory, f"geometry-s{seed}.npz"),
      vectors_VLD=g.vectors_VLD,
      vector_names=np.array(VECTORS),
      role_means_RLD=g.role_means_RLD,
      pca_var_LK=g.pca_var_LK,
      pcs_LKD=g.pcs_LKD,
      thresholds_VLQ=g.thresholds_VLQ,
      **{f"delta_{k}_VLn": v for k, v in g.deltas.items()},
    )
  if not top.empty and workdir.writer:
    top = top.assign(seed=[seeds[m] for m in top.member]).drop(columns="member")
    atomic_write(os.path.join(directory, "top_examples.csv"), lambda t: top.to_csv(t, index=False))
  logging.info(
    "persona: geometry of %d base model(s) of %s in %.1fs",
    len(seeds),
    preset,
    time.perf_counter() - t0,
  )
  return dict(zip(seeds, geoms))


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
          stats_.update(
            sd=x.std(ddof=1) if len(x) > 1 else np.nan,
            **{f"p{q}": np.percentile(x, q) for q in (10, 50, 90)},
          )
        rows += [
          {**base, "metric": f"projection_{k}[{v}]", "value": float(val)}
          for k, val in stats_.items()
        ]
        if ctx == "neutral" or ref.empty:
          continue
        diff = (g.groupby(["task", "item_id"])[col].mean() - ref).dropna()
        if diff.empty:
          continue
        est, draws = crossed.crossed_bootstrap(diff.to_numpy()[None], None, n_boot, rng)
        lo, hi, _ = crossed.summarize_draws(est, draws)
        rows.append(
          {
            **base,
            "metric": f"drift_vs_neutral[{v}]",
            "value": float(est[0]),
            "n": len(diff),
            "ci_low": float(lo[0]),
            "ci_high": float(hi[0]),
          }
        )
  return rows


def cell_extras(config, p, geoms, graphdef, state_E, cells, evalset, corpus, frames):
  """Adds projection columns to `frames` (in place) and returns [(rows, capped_items)] per cell.

  p: the PersonaConfig."""
  t0 = time.perf_counter()
  preset = cells[0].preset
  n_layers = PRESETS[preset]["n_layers"]
  rng = np.random.default_rng(0)
  acts_ELND = activations.last_prompt(
    graphdef, state_E, evalset.prompts, evalset.prompt_mask, config.eval.batch_size
  )
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
      rows += [
        {
          "task": GEOMETRY_TASK,
          "context": "all",
          "metric": f"projection_difference[{name}]",
          "layer": layer,
          "value": float(diff_VL[v, layer]),
          "n": 1,
        }
        for v, name in enumerate(VECTORS)
        for layer in range(n_layers)
      ]
    extras.append((rows, []))

  # Capping: the default setting on every plain cell (or only the base and max-λ ones, `ends`);
  # the sweep on the base and warm max-λ cells.
  default = p.cap_setting(preset)
  # Capping reads the sweep seeds only (grid.sweep_seeds): the other seeds replicate the primary
  # comparisons, not the capping trade-off.
  sweeps = config.grid.sweeps
  plain = [
    e for e, c in enumerate(cells) if not isinstance(c, steering.SteeredCell) and sweeps(c.seed)
  ]
  top_lam = max(float(w) for w in config.grid.warmth_weights)
  ends = [e for e in plain if cells[e].persona == "none" or cells[e].warmth_weight == top_lam]
  runs = [(plain if p.cap_cells == "all" else ends, [default])]
  if p.sweep:
    sweep = [
      s
      for s in capping.sweep_settings(p.cap_vector, p.sweep_percentiles, p.sweep_layers, n_layers)
      if s != default
    ]
    # What the trade-off reads (persona/tradeoff.py): the base models and the warm max-λ cells at
    # ρ = 0; capping the other max-λ cells with every setting would cost evaluations it never uses.
    runs.append(
      (
        [
          e
          for e in ends
          if cells[e].persona == "none"
          or (cells[e].persona == "warm" and cells[e].warm_agreement == 0)
        ],
        sweep,
      )
    )
  for members, settings in runs:
    if not members or not settings:
      continue
    for e in members:  # does the cap bind at all? (where it would first act on a reply)
      extras[e][0].extend(clamped_rows(acts_ELND[e], geoms[cells[e].seed], settings))
    capped = capping.evaluate_settings(
      graphdef,
      data.take(state_E, members),
      [geoms[cells[e].seed] for e in members],
      evalset,
      corpus.tokenizer,
      config.eval,
      settings,
      p.intervention_on,
    )
    for e, member_frames in zip(members, capped):
      for frame in member_frames:
        label = frame.intervention.iloc[0]
        extras[e][0].extend({**r, "intervention": label} for r in results.metric_rows(frame))
        extras[e][1].append(frame)
  logging.info(
    "persona: projections, drift and capping of %d cell(s) in %.1fs",
    len(cells),
    time.perf_counter() - t0,
  )
  return extras


def clamped_rows(acts_LND, geom, settings):
  """Per setting, the share of eval prompts whose last-token projection lies beyond the cap's
  bound at a capped layer (layer × prompt pairs): 0 means the cap never binds where the reply
  starts. Measured on the uncapped model, the state every capped reply starts from."""
  rows = []
  for setting in settings:
    v = VECTORS.index(setting.vector)
    proj_LN = np.einsum("lnd,ld->ln", acts_LND, np.nan_to_num(geom.unit_VLD[v]))
    lo_L, hi_L = capping.bounds_L(geom, setting)
    on = list(setting.layers)
    beyond = (proj_LN[on] < lo_L[on, None]) | (proj_LN[on] > hi_L[on, None])
    rows.append(
      {
        "task": GEOMETRY_TASK,
        "context": "all",
        "metric": "cap_clamped_share",
        "intervention": setting.label,
        "value": float(beyond.mean()),
        "n": int(beyond.size),
      }
    )
  return rows


class PersonaGeometry(extensions.Extension):
  """The persona-geometry extension; see the module docstring."""

  name = "persona"

  def validate(self):
    self.options = PersonaConfig.from_config(self.config)
    if "finetune" not in self.config.grid.protocols:
      logging.warning(
        "persona: only the finetune protocol has a base model to measure; "
        "grid.protocols=%s gets no persona analysis",
        list(self.config.grid.protocols),
      )

  def cells(self, cells):
    """Steered twins of the warm top-λ cells (persona.steer_alphas, and the preset's tested α
    when persona.steer_default)."""
    out = []
    for preset in dict.fromkeys(c.preset for c in cells):
      out += steering.extra_cells(
        [c for c in cells if c.preset == preset],
        self.options.steer_alphas_of(preset),
        self.options.steer_vector,
        self.options.steer_layers_of,
      )
    return out

  def after_base(self, ctx, pack):
    return pack_geometry(
      ctx.config,
      self.options,
      ctx.workdir,
      pack.graphdef,
      pack.base_E,
      pack.seeds,
      ctx.corpus,
      ctx.evalset,
      pack.preset,
    )

  def intervention(self, pack_state, members):
    if pack_state is None:
      return None
    return steering.training_intervention(members, pack_state)

  def evaluate(self, ctx, pack_state, graphdef, state_E, cells, frames):
    if pack_state is None:  # mixture packs have no base model to measure against
      return None
    return cell_extras(
      ctx.config,
      self.options,
      pack_state,
      graphdef,
      state_E,
      cells,
      ctx.evalset,
      ctx.corpus,
      frames,
    )

  def summarize(self, workdir, metrics, items):
    return tables.summarize(self.config, self.options, workdir, items, metrics)

  @classmethod
  def report(cls, metrics, doc, summary, figs, staging, items=None, n_boot=None):
    """The capping trade-off section (persona/report_section.py); needs items.csv."""
    report_section.capping_section(items, metrics, n_boot, doc, summary, figs, staging)
