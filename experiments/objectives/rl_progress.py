"""What emotion_rl learned while it trained: acknowledgement rate and reward, early against late.

From the RL journal (WORKDIR/objectives/<pack>-episodes.csv, one row per training episode): per
run and pooled over a preset's runs, the rate at which the first reply acknowledged the user's
emotion and the mean final valence over the first and the last fifth of the RL steps, and the
rise of the acknowledgement rate with a Newcombe 95% interval (statsmodels). The episodes are the
policy's own samples (at objectives.temperature) on training prompts; this says whether the optimiser moved
the policy, not how the model does on held-out items (the comparison table says that).
"""

from etils import epath
import numpy as np
import pandas as pd
from statsmodels.stats.proportion import confint_proportions_2indep

from experiments.objectives.phase import fifths
from experiments.runtime.results import METRIC_COLUMNS, UNTAGGED_REGIMES
from experiments.runtime.workdir import read_csv

TASK = "objectives_rl"
COLUMNS = [
  "preset",
  "regime",
  "method",
  "run",
  "ack_first",
  "ack_last",
  "ack_rise",
  "ci_low",
  "ci_high",
  "reward_first",
  "reward_last",
  "episodes",
]


def read_episodes(workdir):
  """Every pack's episodes, with the preset and method of each run; empty if the run trained no
  RL. (A cell id is preset-protocol-method-...; results.cell_id.)"""
  directory = epath.Path(workdir, "objectives")
  paths = sorted(directory.glob("*-episodes.csv")) if directory.is_dir() else []
  frames = [read_csv(p) for p in paths]
  if not frames:
    return pd.DataFrame()
  out = pd.concat(frames, ignore_index=True)
  parts = out.run.str.split("-")
  regime = parts.str[1].str.extract(r"@(\w+)$")[0].fillna("default")  # finetune@<regime>
  return out.assign(preset=parts.str[0], regime=regime, method=parts.str[2])


def _row(preset, regime, method, run, early, late):
  a, b = int(early.acknowledges.sum()), int(late.acknowledges.sum())
  lo, hi = confint_proportions_2indep(b, len(late), a, len(early), method="newcomb")
  return {
    "preset": preset,
    "regime": regime,
    "method": method,
    "run": run,
    "ack_first": a / len(early),
    "ack_last": b / len(late),
    "ack_rise": b / len(late) - a / len(early),
    "ci_low": lo,
    "ci_high": hi,
    "reward_first": early.reward.mean(),
    "reward_last": late.reward.mean(),
    "episodes": len(early) + len(late),
  }


def table(episodes):
  """Per run, and per preset × regime × method pooled over its runs (run `all`)."""
  if episodes.empty:
    return pd.DataFrame(columns=COLUMNS)
  rows = []
  if "regime" not in episodes:
    episodes = episodes.assign(regime="default")
  for (preset, regime, method), g in episodes.groupby(["preset", "regime", "method"]):
    parts = {run: fifths(e) for run, e in g.groupby("run")}
    rows += [_row(preset, regime, method, run, *p) for run, p in parts.items()]
    rows.append(
      _row(
        preset,
        regime,
        method,
        "all",
        pd.concat([p[0] for p in parts.values()]),
        pd.concat([p[1] for p in parts.values()]),
      )
    )
  return pd.DataFrame(rows, columns=COLUMNS)


def rows(progress):
  """metrics.csv rows (task `objectives_rl`): rl_ack_rate_first/last/rise (the rise with its
  interval), rl_reward_first/last; run `cmp-<preset>-<method>` for the pooled row."""
  if progress.empty:
    return pd.DataFrame(columns=list(METRIC_COLUMNS) + ["method", "ci_low", "ci_high"])
  out = []
  for r in progress.itertuples():
    tag = "" if r.regime in UNTAGGED_REGIMES else f"@{r.regime}"
    run = f"cmp-{r.preset}{tag}-{r.method}" if r.run == "all" else r.run
    for metric, value, lo, hi in (
      ("rl_ack_rate_first", r.ack_first, np.nan, np.nan),
      ("rl_ack_rate_last", r.ack_last, np.nan, np.nan),
      ("rl_ack_rate_rise", r.ack_rise, r.ci_low, r.ci_high),
      ("rl_reward_first", r.reward_first, np.nan, np.nan),
      ("rl_reward_last", r.reward_last, np.nan, np.nan),
    ):
      out.append(
        {
          "run": run,
          "preset": r.preset,
          "regime": r.regime,
          "persona": r.method,
          "task": TASK,
          "context": "training",
          "metric": metric,
          "value": value,
          "n": r.episodes,
          "method": r.method,
          "ci_low": lo,
          "ci_high": hi,
          "seed": -1,
        }
      )
  return pd.DataFrame(out).reindex(columns=list(METRIC_COLUMNS) + ["method", "ci_low", "ci_high"])


def from_rows(metrics):
  """The progress table for the report (rates and the rise in points), from metrics.csv."""
  m = metrics[metrics.task == TASK]
  if m.empty:
    return pd.DataFrame()
  w = m.pivot_table(
    index=["preset", "method", "run"], columns="metric", values="value"
  ).reset_index()
  rise = m[m.metric == "rl_ack_rate_rise"].set_index(["preset", "method", "run"])
  ci = [
    f"[{100 * rise.ci_low[k]:+.1f}, {100 * rise.ci_high[k]:+.1f}]"
    for k in zip(w.preset, w.method, w.run)
  ]
  return pd.DataFrame(
    {
      "preset": w.preset,
      "method": w.method,
      "run": w.run,
      "ack rate, first fifth (%)": (100 * w.rl_ack_rate_first).round(1),
      "ack rate, last fifth (%)": (100 * w.rl_ack_rate_last).round(1),
      "rise (points)": (100 * w.rl_ack_rate_rise).round(1),
      "95% CI": ci,
      "reward, first fifth": w.rl_reward_first.round(3),
      "reward, last fifth": w.rl_reward_last.round(3),
    }
  )
