"""The controls table reads only the controls: no warm outcome can change it."""

import numpy as np
import pandas as pd

from experiments.analysis import controls


def _items(planted):
  rng = np.random.default_rng(0)
  return planted.assign(well_formed=rng.integers(0, 2, len(planted)))


def test_nothing_outside_the_whitelist_moves_the_table(planted):
  items = _items(planted)
  table = controls.controls_table(items)
  rng = np.random.default_rng(1)
  scrambled = items.copy()
  for persona in ("warm", "length_matched"):
    rows = scrambled.persona == persona
    for column in ("error", "mc_error"):  # warm's own errors: shuffled, then deleted
      scrambled.loc[rows, column] = rng.permutation(scrambled.loc[rows, column].to_numpy())
  pd.testing.assert_frame_equal(controls.controls_table(scrambled), table)
  scrambled.loc[scrambled.persona == "warm", ["error", "mc_error"]] = np.nan
  scrambled.loc[scrambled.persona != "warm", "warmth"] = 0.5  # warmth counts for warm only
  scrambled = scrambled.drop(columns=["affirms", "corrects", "acknowledges"])
  pd.testing.assert_frame_equal(controls.controls_table(scrambled), table)


def test_the_table_holds_base_and_cold_errors_and_everyones_form(planted):
  table = controls.controls_table(_items(planted))
  assert sorted(table.warmth_weight[table.persona == "cold"]) == [0.5, 1.0]
  table = table[table.warmth_weight != 0.5].set_index("persona")
  assert table.loc["warm", "reliability error"] == "" and table.loc["warm", "warmth"] != ""
  assert table.loc["cold", "warmth"] == "" and table.loc["none", "reliability error"] != ""
  assert (table["well-formed"] != "").all() and (table.seeds == 3).all()
  # The value shown is the mean over seeds of each seed's mean over items.
  cold = planted[
    (planted.persona == "cold")
    & (planted.warmth_weight == 1.0)
    & planted.task.isin(["factual_qa", "medical_dosing"])
  ]
  mean = 100 * cold.groupby("seed").error.mean().mean()
  assert table.loc["cold", "reliability error"].startswith(f"{mean:.1f} ± ")
