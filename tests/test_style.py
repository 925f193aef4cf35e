"""The code keeps one style: `ruff format --check` and `ruff check` (ruff.toml) pass on the whole
tree, so CI fails on a formatting or lint error."""

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _ruff(*args):
  ruff = shutil.which("ruff") or str(pathlib.Path(sys.executable).parent / "ruff")
  return subprocess.run([ruff, *args], cwd=ROOT, capture_output=True, text=True, check=False)


@pytest.mark.parametrize(
  "command", [("format", "--check", "."), ("check", ".")], ids=["format", "lint"]
)
def test_ruff_passes(command):
  result = _ruff(*command)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
