"""configs/sweep.py: every factor expanded into stable cells and few packs."""

from tiny_runs import expand

from experiments import grid
from experiments.configs import sweep


def test_sweep_config_expands_every_factor_into_few_packs():
  c = sweep.get_config()
  cells = expand(c)
  assert len({x.id for x in cells}) == len(cells) == 860
  assert {x.protocol for x in cells} == {"finetune", "mixture"}
  assert {x.warm_agreement for x in cells} == {0.0, 0.5, 1.0}
  packs = grid.packs(cells, c.grid.max_pack_size)
  assert len(packs) == 8 and max(map(len, packs.values())) <= c.grid.max_pack_size
  local = sweep.get_config("runlocal")
  assert len(grid.packs(expand(local), local.grid.max_pack_size)) == 2


def test_chunked_packs_do_not_depend_on_what_is_finished():
  cells = expand(sweep.get_config("runlocal"))
  chunks = grid.packs(cells, 3)
  assert [len(v) for v in chunks.values()] == [3, 3, 3, 1, 3, 3, 2]
  assert list(chunks)[0] == ("nano", "finetune", 0)
