"""flag_errors.py: a missing or broken config file and an unknown override as one sentence
(in process; tests/test_main.py checks the same messages through the command)."""

import pytest
from tiny_runs import DEMO

from experiments import flag_errors


def test_an_override_of_a_field_the_config_lacks_names_the_closest_ones():
  argv = ["main", f"--config={DEMO}", "--config.train.bach_size=4", "--config.eval.bootstrap=50"]
  message = flag_errors._unknown_field(argv)  # pylint: disable=protected-access
  assert message == "--config.train.bach_size is not a config field: did you mean batch_size?"
  fine = ["main", f"--config={DEMO}:runlocal", "--config.train.batch_size=4"]
  assert flag_errors._unknown_field(fine) is None  # pylint: disable=protected-access


def test_a_missing_or_broken_config_file_exits_with_one_sentence(tmp_path):
  with pytest.raises(SystemExit, match=r"--config file .*nope.py does not exist"):
    flag_errors._check_config_file(["main", f"--config={tmp_path}/nope.py"])  # pylint: disable=protected-access
  broken = tmp_path / "broken.py"
  broken.write_text("def get_config(:\n")
  with pytest.raises(SystemExit, match=r"broken.py has a syntax error at line 1"):
    flag_errors._check_config_file(["main", f"--config={broken}"])  # pylint: disable=protected-access
