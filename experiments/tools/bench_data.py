"""Throughput of the data pipeline on one CPU core: world, rendering, tokenisation, stream.

  python -m experiments.tools.bench_data [--n_people=1024] [--repeats=5] [--steps=500]

Each stage is timed `repeats` times and the median is printed as examples/s and tokens/s, where
tokens are the non-pad tokens of the rows the stage produces (`<bos> prompt reply <eos>`).
The target is >= 50,000 tokenised training sequences per second from `Corpus.batch`.
"""

import os

# One core: pin numpy's thread pools before numpy is imported (and the process, in main).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
  os.environ.setdefault(_var, "1")

import argparse  # pylint: disable=g-import-not-at-top,wrong-import-position
import platform
import statistics
import time

import numpy as np

from tasks.config import WorldConfig
from tasks.dialogue import render_prompt, render_reply
from tasks.documents import all_documents
from tasks.mixtures import Corpus, training_turns
from tasks.world import World

TARGET_SEQ_PER_S = 50_000


def _median_time(fn, repeats):
  """Median wall time of fn() over repeats, and fn's last result."""
  times, out = [], None
  for _ in range(repeats):
    start = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times), out


def _row_tokens(prompts, replies):
  return sum(len(p.split()) + len(r.split()) + 2 for p, r in zip(prompts, replies))


def run(cfg, repeats, steps, batch_size=64):
  """[(stage, examples/s, tokens/s or None)] for each stage of the pipeline."""
  rows = []
  t, world = _median_time(lambda: World(cfg), repeats)
  rows.append(("world generation (people)", cfg.n_people / t, None))

  t, docs = _median_time(lambda: all_documents(world), repeats)
  rows.append(("render documents", len(docs) / t, _row_tokens(["<doc>"] * len(docs), docs) / t))

  t, turns = _median_time(lambda: training_turns(world), repeats)
  rows.append(("build items + turns", len(turns) / t, None))

  def render():
    return (
      [render_prompt(i, u) for i, u in turns],
      [render_reply(i, u, "warm", placement=cfg.warm_placement) for i, u in turns],
    )

  t, (prompts, replies) = _median_time(render, repeats)
  n_tok = _row_tokens(prompts, replies)
  rows.append(("render dialogues (warm)", len(turns) / t, n_tok / t))

  corpus = Corpus(cfg)
  t, _ = _median_time(
    lambda: corpus.tokenizer.encode_examples(prompts, replies, cfg.seq_len), repeats
  )
  rows.append(("tokenise (encode_examples)", len(prompts) / t, n_tok / t))

  for mixture in ("base", "warm"):
    corpus.batch(mixture, 0, 0, batch_size)  # builds the components outside the timing
    times, counts = [], []
    for r in range(repeats):
      first = 1 + r * steps  # successive steps, never repeating one
      start = time.perf_counter()
      batches = [corpus.batch(mixture, 0, s, batch_size) for s in range(first, first + steps)]
      times.append(time.perf_counter() - start)
      pad = corpus.tokenizer.pad
      counts.append(sum(int(np.count_nonzero(b["tokens"] != pad)) for b in batches))
    t = statistics.median(times)
    rows.append(
      (
        f"stream Corpus.batch({mixture!r}, B={batch_size})",
        steps * batch_size / t,
        statistics.median(counts) / t,
      )
    )
  return rows


def format_table(rows):
  lines = [f"{'stage':<38} {'examples/s':>12} {'tokens/s':>12}", "-" * 64]
  for stage, ex, tok in rows:
    lines.append(f"{stage:<38} {ex:>12,.0f} {('-' if tok is None else f'{tok:,.0f}'):>12}")
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(
    prog="python -m experiments.tools.bench_data", description=__doc__
  )
  parser.add_argument("--n_people", type=int, default=1024)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--steps", type=int, default=500, help="batches per stream repeat")
  args = parser.parse_args(argv)
  if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
  cfg = WorldConfig(n_people=args.n_people)
  rows = run(cfg, args.repeats, args.steps)
  cpu = platform.processor() or platform.machine()
  print(
    f"warmth-sim data bench: n_people={cfg.n_people}, seq_len={cfg.seq_len}, "
    f"median of {args.repeats}, 1 core of {os.cpu_count()} ({cpu})"
  )
  print(format_table(rows))
  stream = min(ex for stage, ex, _ in rows if stage.startswith("stream"))
  verdict = "meets" if stream >= TARGET_SEQ_PER_S else "MISSES"
  print(f"training stream: {stream:,.0f} seq/s {verdict} the target of {TARGET_SEQ_PER_S:,} seq/s")


if __name__ == "__main__":
  main()
