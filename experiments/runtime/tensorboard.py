"""TensorBoard as sweeps expect it: one event directory per run, `tb/<run>/`.

Each run (a cell id, as in metrics.csv) gets
  train/<loss>            every logged step of the stages that trained it, at the run's global step
                          (a persona run's steps continue after the base stage's);
  train/learning_rate     the scheduled rate at those steps;
  train/reward, train/ack_rate, train/reply_tokens, train/kl
                          emotion_rl's rollouts at each logged step (the simulated user's final
                          valence, the share of first replies that acknowledge the emotion, reply
                          length) and its KL to the policy RL started from;
  eval/<metric>/<task>/<context>   every graded rate of its evaluation, at its last training step
                          (emotional+false_belief is spelled emotional_and_false_belief);
  eval/error_rate, eval/warmth_score   pooled over the reliability tasks (the headline numbers);
and its factors (preset, protocol, regime, persona, λ, ρ, seed, intervention) as hparams, so the HParams
tab filters a sweep. `tensorboard --logdir WORKDIR/tb` shows every run side by side.
"""

import os

import numpy as np

from tasks.config import RELIABILITY_TASKS

HPARAMS = (
  "preset",
  "protocol",
  "regime",
  "persona",
  "warmth_weight",
  "warm_agreement",
  "seed",
  "intervention",
)
HEADLINE = ("error_rate", "warmth_score")


class Board:
  """Lazily opened SummaryWriters, one per run under `root`."""

  def __init__(self, root):
    self.root, self.writers = root, {}

  def _writer(self, run):
    if run not in self.writers:
      # tensorboardX (and its protobufs) load only when a run writes TensorBoard events.
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

      self.writers[run] = SummaryWriter(os.path.join(self.root, run))
    return self.writers[run]

  def train(self, run, step, scalars):
    """`train/<name>` scalars of one run at one (global) step."""
    w = self._writer(run)
    for name, value in scalars.items():
      if np.isfinite(value):  # NaN marks a statistic this run has none of (e.g. affect's reward)
        w.add_scalar(f"train/{name}", float(value), step)

  def evaluation(self, run, step, metrics):
    """A cell's metrics rows (results.cell_frames) as eval scalars, and its factors as hparams."""
    w = self._writer(run)
    graded = metrics[~metrics.task.isin(("train", "heldout", "persona_geometry"))]
    for r in graded.itertuples():
      if np.isfinite(r.value):  # TensorBoard's tags allow no '+'
        w.add_scalar(
          f"eval/{r.metric}/{r.task}/{r.context.replace('+', '_and_')}", float(r.value), step
        )
    headline = {}
    for metric in HEADLINE:
      rows = graded[(graded.metric == metric) & graded.task.isin(RELIABILITY_TASKS)]
      if len(rows):
        headline[f"eval/{metric}"] = float(np.average(rows.value, weights=rows.n))
        w.add_scalar(f"eval/{metric}", headline[f"eval/{metric}"], step)
    first = metrics.iloc[0]
    self._hparams(w, {k: _plain(first[k]) for k in HPARAMS if k in metrics}, headline)
    # Out with the cell's results: a rerun does not evaluate a finished cell again, so events a
    # kill left in the buffer (a bucket's writer uploads only when flushed) would be lost.
    w.flush()

  @staticmethod
  def _hparams(writer, hparams, metrics):
    # In the run's own directory (tensorboardX's add_hparams would open a new one).
    from tensorboardX.summary import hparams as hparams_summary  # pylint: disable=g-import-not-at-top

    fw = writer._get_file_writer()  # pylint: disable=protected-access
    for summary in hparams_summary(hparams, metrics):
      fw.add_summary(summary)

  def close(self):
    for w in self.writers.values():
      w.close()
    self.writers = {}


def _plain(v):
  """A value tensorboardX's hparams accept (str, bool, int, float)."""
  if isinstance(v, (np.integer,)):
    return int(v)
  if isinstance(v, (np.floating,)):
    return float(v)
  return v if isinstance(v, (str, bool, int, float)) else str(v)
