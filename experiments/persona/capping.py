"""Activation capping at inference: settings, labels, and one batched capped evaluation.

A setting clamps the projection on a unit vector at a percentile of the default assistant's
per-token projections (geometry.thresholds_VLQ), at a set of layers:

  axis              floor at the p-th percentile (stay at least that assistant-like)
  warmth/sycophancy ceiling at the (100-p)-th percentile (no warmer than that)

so p=25 clamps, in both cases, whatever lies beyond the default assistant's outer quartile on the
persona side. Every setting of one vector runs in a single batched pass: the eval prompts are tiled
once per setting and the bounds are per example and per layer, with ±inf (an exact identity)
outside a setting's layers. Labels: `cap@p25:L1-2` (axis), `cap[warmth]@p25:L1`.
"""

import dataclasses
import functools
import itertools

from absl import logging
import jax
import numpy as np

from experiments import evaluate
from experiments.persona import activations
from experiments.persona.vectors import VECTORS
from experiments.runtime.members import over_members
from models.decode import score_fn
from models.interventions import Intervention
from tasks.mixtures import EvalSet


def layers_label(layers):
  """`L3`, `L1-2` (a contiguous range) or `L0,2`."""
  layers = sorted(layers)
  if len(layers) > 1 and layers == list(range(layers[0], layers[-1] + 1)):
    return f"L{layers[0]}-{layers[-1]}"
  return "L" + ",".join(str(l) for l in layers)


def parse_layers(spec, n_layers, field="persona.cap_layers"):
  """Layer indices from `all`, `back` (the back half), `3`, `1-2` or `0,2`; raises ValueError."""
  spec = str(spec).strip()
  if spec == "all":
    return tuple(range(n_layers))
  if spec == "back":
    return tuple(range(n_layers // 2, n_layers))
  try:
    layers = set()
    for part in spec.split(","):
      lo, _, hi = part.partition("-")
      layers.update(range(int(lo), int(hi or lo) + 1))
  except ValueError:
    raise ValueError(
      f"{field}={spec!r} is not a layer spec: use all, back, auto, 3, 1-2 or 0,2."
    ) from None
  if not layers or min(layers) < 0 or max(layers) >= n_layers:
    raise ValueError(
      f"{field}={spec!r} names layers outside 0..{n_layers - 1} of this {n_layers}-layer model."
    )
  return tuple(sorted(layers))


@dataclasses.dataclass(frozen=True)
class CapSetting:
  """Which vector, at which percentile of the default assistant's projections, at which layers."""

  vector: str
  percentile: int
  layers: tuple

  def __post_init__(self):
    if self.vector not in VECTORS:
      raise ValueError(f"persona.cap_vector={self.vector!r} must be one of {', '.join(VECTORS)}.")
    if not (isinstance(self.percentile, (int, np.integer)) and 0 <= self.percentile <= 100):
      raise ValueError(f"persona cap percentile {self.percentile!r} must be an integer in 0..100.")

  @property
  def label(self):
    name = "cap" if self.vector == "axis" else f"cap[{self.vector}]"
    return f"{name}@p{self.percentile}:{layers_label(self.layers)}"


def sweep_settings(vector, percentiles, layer_specs, n_layers):
  """Every percentile × layer range; no specs means each single layer, the back half and all."""
  specs = list(layer_specs) or [str(l) for l in range(n_layers)] + ["back", "all"]
  ranges = list(dict.fromkeys(parse_layers(s, n_layers, "persona.sweep_layers") for s in specs))
  return [CapSetting(vector, int(p), r) for r, p in itertools.product(ranges, percentiles)]


def bounds_L(geom, setting):
  """(lo_L, hi_L) of one setting for one base model; ±inf at the layers it leaves alone."""
  v = VECTORS.index(setting.vector)
  n_layers = geom.thresholds_VLQ.shape[1]
  lo_L, hi_L = np.full(n_layers, -np.inf), np.full(n_layers, np.inf)
  on = list(setting.layers)
  if setting.vector == "axis":
    lo_L[on] = geom.thresholds_VLQ[v, on, setting.percentile]
  else:
    hi_L[on] = geom.thresholds_VLQ[v, on, 100 - setting.percentile]
  return lo_L, hi_L


def batched_intervention(geoms_E, settings, n_rows, n_total=None):
  """An Intervention (leading axis E) for the eval set tiled once per setting, one vector.

  Rows past n_rows * len(settings) (padding up to n_total) are left alone (±inf bounds).
  """
  vector = settings[0].vector
  assert all(s.vector == vector for s in settings), "one pass caps one vector"
  v = VECTORS.index(vector)
  direction_ELD = np.nan_to_num(np.stack([g.vectors_VLD[v] for g in geoms_E])).astype(np.float32)
  n_members, n_layers = direction_ELD.shape[:2]
  n_total = n_total or n_rows * len(settings)
  lo_ELB = np.full((n_members, n_layers, n_total), -np.inf, np.float32)
  hi_ELB = np.full_like(lo_ELB, np.inf)
  for e, g in enumerate(geoms_E):
    for s, setting in enumerate(settings):
      lo_L, hi_L = bounds_L(g, setting)
      lo_ELB[e, :, s * n_rows : (s + 1) * n_rows] = lo_L[:, None]
      hi_ELB[e, :, s * n_rows : (s + 1) * n_rows] = hi_L[:, None]
  return Intervention(
    direction_ELD,
    np.ones((n_members, n_layers), np.float32),
    np.zeros((n_members, 1), np.float32),
    lo_ELB,
    hi_ELB,
    None,
  )


def _sliced(iv):
  """The callable evaluate.generate_replies wants: rows `sl` of the per-example bounds."""
  return lambda sl: iv._replace(lo_B=iv.lo_B[:, :, sl], hi_B=iv.hi_B[:, :, sl])


def tile(evalset, k, n_total=None):
  """The eval set repeated k times (setting-major), padded with copies of row 0 to n_total."""
  rows = np.arange(len(evalset.items) * k) % len(evalset.items)
  if n_total:
    rows = np.concatenate([rows, np.zeros(n_total - len(rows), int)])
  return EvalSet(
    [evalset.items[r] for r in rows],
    [evalset.turns[r] for r in rows],
    evalset.prompts[rows],
    evalset.prompt_mask[rows],
  )


@functools.lru_cache(maxsize=8)
def _score_E(graphdef):
  return jax.jit(
    over_members(functools.partial(score_fn, graphdef), in_axes=(0, None, None, None, 0))
  )


def mc_errors(graphdef, state_E, evalset, tokenizer, batch_size, iv, intervention_on):
  """[E, N] multiple-choice error of the tiled eval set under a per-row intervention, each member
  scored in its own style (evaluate.mc_pass)."""
  n_members = iv.direction_LD.shape[0]

  def score_rows(members, tokens, mask, target, owners):
    take = lambda a: a if len(members) == n_members else a[members]
    state, member_iv = jax.tree.map(take, state_E), jax.tree.map(take, iv)
    on = {"both": mask, "response": target, "prompt": mask * (1 - target)}[intervention_on]
    n_rows, size = len(tokens), activations.balanced_chunk(len(tokens), batch_size)
    pad = -n_rows % size  # equal chunks: one compilation; padding rows are scored and dropped
    tokens, mask, target, on = (
      np.concatenate([a, np.zeros((pad,) + a.shape[1:], a.dtype)])
      for a in (tokens, mask, target, on)
    )
    rows_owner = np.concatenate([owners, np.zeros(pad, int)])
    scores = []
    for sl in (slice(i, i + size) for i in range(0, len(tokens), size)):
      rows_iv = member_iv._replace(
        lo_B=member_iv.lo_B[:, :, rows_owner[sl]],
        hi_B=member_iv.hi_B[:, :, rows_owner[sl]],
        token_mask_BT=np.broadcast_to(on[sl], (len(members),) + on[sl].shape),
      )
      scores.append(
        np.asarray(_score_E(graphdef)(state, tokens[sl], mask[sl], target[sl], rows_iv))
      )
    return np.concatenate(scores, axis=1)[:, :n_rows]

  return evaluate.mc_pass(score_rows, evalset, tokenizer, n_members)[0]


def evaluate_settings(
  graphdef, state_E, geoms_E, evalset, tokenizer, eval_cfg, settings, intervention_on
):
  """Per member: graded items of every setting, with its label in the `intervention` column."""
  frames = [[] for _ in geoms_E]
  n = len(evalset.items)
  for vector in dict.fromkeys(s.vector for s in settings):
    group = [s for s in settings if s.vector == vector]
    logging.info(
      "capping: %d setting(s) on %s for %d model(s) in one pass of %d prompts",
      len(group),
      vector,
      len(geoms_E),
      n * len(group),
    )
    # Equal chunks (copies of row 0 pad the last): the decoder compiles once per pass.
    size = activations.balanced_chunk(n * len(group), eval_cfg.batch_size)
    n_total = -(-n * len(group) // size) * size
    iv = batched_intervention(geoms_E, group, n, n_total)
    replies = evaluate.generate_replies(
      graphdef,
      state_E,
      tile(evalset, len(group), n_total),
      tokenizer,
      eval_cfg.max_new_tokens,
      size,
      intervention=_sliced(iv),
      intervention_on=intervention_on,
    )
    mc_EN = mc_errors(
      graphdef,
      state_E,
      tile(evalset, len(group)),
      tokenizer,
      eval_cfg.batch_size,
      iv,
      intervention_on,
    )
    for e in range(len(geoms_E)):
      for s, setting in enumerate(group):
        rows = slice(s * n, (s + 1) * n)
        frames[e].append(
          evaluate.grade_replies(evalset, replies[e][rows], mc_EN[e, rows]).assign(
            intervention=setting.label
          )
        )
  return frames
