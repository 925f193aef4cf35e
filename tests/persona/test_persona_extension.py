"""persona/persona_extension.py: drift rows, and a whole experiment writing geometry, capped items and steered twins."""

import jax
import numpy as np
import pandas as pd
import pytest

from experiments.persona import persona_extension, vectors

jax.config.update("jax_numpy_rank_promotion", "raise")


def test_drift_rows_pair_contexts_by_item():
  items = pd.DataFrame(
    {
      "task": ["t"] * 6,
      "item_id": ["a", "b", "c"] * 2,
      "context": ["neutral"] * 3 + ["emotional"] * 3,
      **{f"proj_{v}_l0": [0.0, 1.0, 2.0, -1.0, 0.0, 1.0] for v in vectors.VECTORS},
    }
  )
  rows = persona_extension.drift_rows(items, 1, 200, np.random.default_rng(0))
  drift = [r for r in rows if r["metric"] == "drift_vs_neutral[axis]"]
  assert len(drift) == 1 and drift[0]["value"] == -1.0 and drift[0]["n"] == 3
  mean = [r for r in rows if r["metric"] == "projection_mean[axis]" and r["context"] == "neutral"]
  assert mean[0]["value"] == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("update", ["full", "lora"])
def test_an_experiment_writes_geometry_capped_items_and_steered_twins(tmp_path, update):
  from experiments import experiment, resolve  # pylint: disable=g-import-not-at-top
  from experiments.configs import demo  # pylint: disable=g-import-not-at-top

  c = demo.get_config("runlocal")
  c.data.n_people, c.data.n_cities, c.data.eval_items = 12, 6, 2
  c.data.tasks = ("factual_qa", "misconception", "capability", "safety_refusal")
  c.grid.personas, c.grid.warmth_weights, c.grid.seeds = ("warm", "cold"), (0.0, 1.0), (0,)
  c.train.batch_size, c.train.base_steps, c.train.persona_steps = 8, 6, 4
  c.eval.bootstrap = 20
  c.extensions, c.persona.cap_cells, c.persona.sweep = ("persona",), "all", True
  c.persona.sweep_percentiles, c.persona.steer_alphas = (50,), (4.0,)
  c.train.persona_update = update  # capping and steering on adapted models as on full ones
  cfg = resolve.resolve(c)
  metrics, items = experiment.run(cfg, str(tmp_path))
  (ext,) = cfg.extensions
  rows, text = ext.summarize(str(tmp_path), metrics, items)
  default = "cap@p25:L1"  # nano's tested default (experiments/persona/defaults.py)
  assert set(items.intervention) == {
    "none",
    default,
    "cap@p50:L0",
    "cap@p50:L1",
    "cap@p50:L0-1",
    "train-steer+4:L1",
  }
  capped = items[items.intervention == default]
  assert set(capped.run) == {r for r in items.run if "psteer" not in r}
  geo = metrics[metrics.task == "persona_geometry"]
  assert set(geo[geo.metric == "cos_axis_pc1"].layer) == {0, 1}
  assert set(geo[geo.metric == "drift_vs_neutral[axis]"].context) >= {"emotional"}
  assert {"proj_axis_l0", "proj_warmth_l1", "persona_split"} <= set(items.columns)
  assert set(rows.metric) >= {
    "error_rate_change_vs_uncapped",
    "trait_prediction_r[warmth]",
    "shift_prediction_r[warmth:warmth]",
    "error_rate_change_vs_plain_twin",
  }
  for path in (
    "persona/nano-finetune/geometry-s0.npz",
    "persona/nano-finetune/top_examples.csv",
    "persona/defaults.json",
    "persona/capping_tradeoff.csv",
  ):
    assert (tmp_path / path).exists(), path
  assert "capped − uncapped" in text and "persona geometry" in text
