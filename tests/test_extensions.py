"""The experiment and the report reach extensions only through experiments/extensions.py."""

import subprocess
import sys

import tiny_runs

from experiments import extensions


def test_core_modules_do_not_import_any_extension():
  code = (
    "import sys\n"
    "import experiments.main, experiments.experiment, experiments.analysis.report\n"
    "print(sorted(m for m in sys.modules if m.startswith(('experiments.persona', "
    "'experiments.objectives'))))"
  )
  out = subprocess.run(
    [sys.executable, "-c", code],
    cwd=tiny_runs.ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    check=True,
  ).stdout
  assert out.strip() == "[]"


def test_every_registered_extension_implements_the_interface():
  for name in extensions.REGISTRY:
    cls = extensions.extension_class(name)
    assert issubclass(cls, extensions.Extension) and cls.name == name
