"""The tree keeps one style: `ruff format --check` and `ruff check` (ruff.toml) pass everywhere, so
CI fails on a formatting or lint error; and tests/ mirrors the code, one test file per module."""

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


# Where the code of each tests/ folder lives.
MIRRORS = {
  "": "experiments",
  "analysis": "experiments/analysis",
  "configs": "experiments/configs",
  "objectives": "experiments/objectives",
  "persona": "experiments/persona",
  "runtime": "experiments/runtime",
  "tools": "experiments/tools",
  "models": "models",
  "tasks": "tasks",
}
# Checks of the project as a whole, named for what they check.
PROJECT_CHECKS = {
  "test_docs.py": "every command, config and link the docs name",
  "test_imports.py": "the import graph: no cycle, no upward arrow",
  "test_style.py": "formatting, lint and this layout",
  "configs/test_configs.py": "every config of experiments/configs",
}


def test_each_test_file_is_named_after_the_module_or_script_it_tests():
  """tests/<folder>/test_<name>.py tests <package>/<name>.py (or a script <name>.sh there, or
  launch_tpu.sh at the top), so a module's tests are found by its name."""
  stray = []
  for path in sorted((ROOT / "tests").rglob("test_*.py")):
    rel = path.relative_to(ROOT / "tests")
    folder = "/".join(rel.parts[:-1])
    if str(rel) in PROJECT_CHECKS:
      continue
    name = path.stem[len("test_") :]
    code = ROOT / MIRRORS.get(folder, f"<no package for tests/{folder}>")
    scripts = [code / f"{name}.sh"] + ([ROOT / f"{name}.sh"] if not folder else [])
    if not (code / f"{name}.py").is_file() and not any(s.is_file() for s in scripts):
      stray.append(str(rel))
  assert not stray, f"test files named after no module: {stray}"
