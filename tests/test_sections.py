"""sections.py: a ConfigDict section read into its frozen dataclass, with one sentence per bad field."""

import dataclasses

import ml_collections
import pytest

from experiments.sections import EvalSection, MeshSection, from_section


def _eval(**fields):
  section = ml_collections.ConfigDict(
    {"max_new_tokens": 0, "batch_size": 256, "bootstrap": 1000, "blind": False}
  )
  with section.unlocked():
    section.update(fields)
  return section


def test_a_section_becomes_its_frozen_dataclass_with_lists_as_tuples():
  mesh = ml_collections.ConfigDict(
    {
      "ensemble": 1,
      "data": -1,
      "fsdp": 1,
      "tensor": 1,
      "rules": [["batch", "data"]],
      "members": "auto",
    }
  )
  got = from_section(MeshSection, mesh, "mesh")
  assert got.rules == (["batch", "data"],) and got.data == -1
  with pytest.raises(dataclasses.FrozenInstanceError):
    got.data = 2


def test_a_field_the_section_lacks_is_named_with_the_allowed_ones():
  with pytest.raises(
    ValueError,
    match="eval.batchsize is not a field of the eval section: allowed are max_new_tokens",
  ):
    from_section(EvalSection, _eval(batchsize=3), "eval")


def test_a_missing_field_points_at_the_base_config():
  section = _eval()
  del section["bootstrap"]
  with pytest.raises(ValueError, match="eval.bootstrap is missing from the config"):
    from_section(EvalSection, section, "eval")
