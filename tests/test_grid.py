"""The factor grid: which cells a config trains."""

import pytest
from tiny_runs import expand

from experiments import grid
from experiments.configs import common


def _config(**fields):
  c = common.base_config()
  c.grid.personas = ("warm", "cold", "length_matched", "warm_after")
  c.grid.warmth_weights = (0.0, 0.5, 1.0)
  c.grid.warm_agreements = (0.0, 0.5, 1.0)
  c.grid.update(fields)
  return c


def _levels(cells):
  return sorted((c.persona, c.warmth_weight, c.warm_agreement) for c in cells if c.seed == 0)


def test_mechanism_cells_only_at_the_named_weights():
  cells = expand(_config(mechanism_weights=(1.0,)))
  assert _levels(cells) == sorted(
    [
      ("none", 0.0, 0.0),
      ("warm", 0.0, 0.0),
      ("warm", 0.5, 0.0),
      ("cold", 0.5, 0.0),
      ("length_matched", 0.5, 0.0),
      ("warm", 1.0, 0.0),
      ("warm", 1.0, 0.5),
      ("warm", 1.0, 1.0),
      ("cold", 1.0, 0.0),
      ("length_matched", 1.0, 0.0),
      ("warm_after", 1.0, 0.0),
    ]
  )


def test_without_mechanism_weights_every_lambda_gets_them():
  levels = _levels(expand(_config()))
  assert ("warm", 0.5, 1.0) in levels and ("warm_after", 0.5, 0.0) in levels
  assert len(levels) == 2 + 2 * (3 + 1 + 1 + 1)


@pytest.mark.parametrize("weights", [(0.75,), (0.0,)])
def test_mechanism_weights_must_be_positive_grid_weights(weights):
  with pytest.raises(ValueError, match=r"grid.mechanism_weights contains .* must be a λ > 0"):
    expand(_config(mechanism_weights=weights))


def test_seeds_outside_the_sweep_train_only_the_primary_cells():
  cells = expand(_config(mechanism_weights=(1.0,), seeds=(0, 1, 2), sweep_seeds=(0,)))
  full = {(c.persona, c.warmth_weight, c.warm_agreement) for c in cells if c.seed == 0}
  assert len(full) == 11  # the whole grid, as without sweep_seeds
  for seed in (1, 2):
    assert sorted(
      (c.persona, c.warmth_weight, c.warm_agreement) for c in cells if c.seed == seed
    ) == sorted(
      [("none", 0.0, 0.0), ("warm", 1.0, 0.0), ("cold", 1.0, 0.0), ("length_matched", 1.0, 0.0)]
    )
  # The sweep seeds' cells are exactly those of a grid without the option: ids do not move.
  plain = expand(_config(mechanism_weights=(1.0,), seeds=(0, 1, 2)))
  assert {c.id for c in cells if c.seed == 0} == {c.id for c in plain if c.seed == 0}


@pytest.mark.parametrize("sweep", [(3,), (0, 0)])
def test_sweep_seeds_must_be_distinct_grid_seeds(sweep):
  with pytest.raises(ValueError, match=r"grid.sweep_seeds=.* must be distinct seeds of grid.seeds"):
    expand(_config(seeds=(0, 1), sweep_seeds=sweep))


def test_finetune_seeds_replicate_every_persona_cell_and_keep_replicate_zero_ids():
  one = expand(_config(seeds=(0, 1), protocols=("finetune", "mixture")))
  three = expand(_config(seeds=(0, 1), protocols=("finetune", "mixture"), finetune_seeds=3))
  persona = [c for c in one if c.protocol == "finetune" and c.persona != "none"]
  assert len(three) == len(one) + 2 * len(persona)  # base and mixture cells are not replicated
  assert {c.id for c in three if c.finetune_seed == 0} == {c.id for c in one}
  replicas = [c for c in three if c.finetune_seed == 2]
  assert len(replicas) == len(persona) and all(c.id.endswith(f"-s{c.seed}-f2") for c in replicas)
  assert len({c.id for c in three}) == len(three)


@pytest.mark.parametrize(
  "fields, words",
  [
    (dict(finetune_seeds=0), "grid.finetune_seeds=0 must be an integer >= 1"),
    (dict(finetune_seeds=True), "grid.finetune_seeds=True must be an integer >= 1"),
    (dict(finetune_seeds=2, seeds=(0, 1_000_000)), r"grid.seeds=\[0, 1000000\] must lie in"),
  ],
)
def test_bad_finetune_seeds_are_one_sentence(fields, words):
  with pytest.raises(ValueError, match=words):
    expand(_config(**fields))


def test_a_preset_trains_only_its_seeds_and_a_regime_only_its_own():
  c = _config(
    seeds=(0, 1, 2), mechanism_weights=(1.0,), regimes={"gentle": {}, "forgetting": {"seeds": (0,)}}
  )
  c.grid.preset_seeds = {"micro": (2,)}
  c.model.presets = ("nano", "micro")
  cells = expand(c)
  by = lambda preset, regime: sorted(
    {x.seed for x in cells if x.preset == preset and x.regime == regime}
  )
  assert by("nano", "none") == [0, 1, 2] and by("micro", "none") == [2]
  assert by("nano", "gentle") == [0, 1, 2] and by("nano", "forgetting") == [0]
  assert by("micro", "gentle") == [2] and by("micro", "forgetting") == []
  # A regime restricted in seeds trains the full design on the seeds it keeps.
  one = lambda regime: _levels([x for x in cells if x.preset == "nano" and x.regime == regime])
  assert one("forgetting") == one("gentle")
  assert grid.GridConfig.from_config(c).seeds_of("micro") == [2]


@pytest.mark.parametrize(
  "preset_seeds", [{"micro": (5,)}, {"micro": ()}, {"giga": (0,)}, {"micro": (0, 0)}]
)
def test_bad_preset_seeds_are_one_sentence(preset_seeds):
  c = _config(seeds=(0, 1))
  c.grid.preset_seeds = preset_seeds
  with pytest.raises(
    ValueError,
    match=r"^grid.preset_seeds.\w+=.* must name a preset and a "
    r"non-empty list of distinct seeds of grid.seeds \[0, 1\]",
  ):
    expand(c)
