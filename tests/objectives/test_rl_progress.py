"""objectives/rl_progress.py: the rise of the acknowledgement rate over RL, with its interval."""

import numpy as np
import pandas as pd
import pytest

from experiments.objectives import (
  rl_progress,
)


def test_rl_progress_gives_the_rise_of_the_acknowledgement_rate_with_an_interval():
  steps = np.repeat(np.arange(10), 20)
  ack = np.where(steps < 2, np.arange(200) % 4 == 0, np.arange(200) % 4 != 0).astype(int)
  episodes = pd.DataFrame(
    {
      "preset": "nano",
      "method": "emotion_rl",
      "run": "r0",
      "step": steps,
      "acknowledges": ack,
      "reward": ack.astype(float),
    }
  )
  prog = rl_progress.table(episodes).set_index("run")
  assert prog.ack_first["r0"] == pytest.approx(0.25) and prog.ack_last["r0"] == pytest.approx(0.75)
  assert (
    prog.ack_rise["r0"] == pytest.approx(0.5) and 0 < prog.ci_low["r0"] < 0.5 < prog.ci_high["r0"]
  )
  assert prog.episodes["r0"] == 80  # the first and the last fifth: 2 steps of 20 each
  rows = rl_progress.rows(prog.reset_index())
  rise = rows[rows.metric == "rl_ack_rate_rise"]
  assert set(rise.run) == {"r0", "cmp-nano-emotion_rl"} and rise.ci_low.notna().all()
  flat = episodes.assign(acknowledges=1)
  p = rl_progress.table(flat).set_index("run")
  assert p.ack_rise["r0"] == 0 and p.ci_low["r0"] < 0 < p.ci_high["r0"]
