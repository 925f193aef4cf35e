"""experiments/tools/bench_gpu.sh, the device-side GPU check: clean, and refuses bad input first."""

import os
from pathlib import Path
import subprocess

import pytest
import shell_checks
import tiny_runs

SCRIPT = Path(tiny_runs.ROOT) / "experiments" / "tools" / "bench_gpu.sh"


def test_shellcheck_clean():
  shell_checks.assert_clean(SCRIPT)


@pytest.mark.parametrize(
  "args, anchor, message",
  [
    ([], False, ".bench/plain_jax_anchor.py is missing"),
    (["gpt2s", "gpt3"], True, "part 'gpt3' must be one of anchor, gpt2s, packed, demo, study."),
  ],
)
def test_refuses_before_it_starts(tmp_path, args, anchor, message):
  if anchor:
    (tmp_path / ".bench").mkdir()
    (tmp_path / ".bench" / "plain_jax_anchor.py").write_text("raise SystemExit(3)\n")
  out = tmp_path / "out"
  result = subprocess.run(
    ["bash", str(SCRIPT), *args],
    cwd=tmp_path,
    capture_output=True,
    text=True,
    env=dict(os.environ, OUT=str(out)),
  )
  assert result.returncode == 2 and message in result.stderr
  assert not out.exists()  # nothing ran, nothing written
