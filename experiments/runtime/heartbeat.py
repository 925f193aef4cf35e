"""A line at least every ~10 s while a phase runs, even inside one long call.

Progress lines come between units of work (training steps, evaluation batches); a single unit can
take longer than that (the first step compiles the program; a batch of a large pack), and a silent
console then looks like a hang. A Heartbeat is a daemon thread that logs `what()` whenever
`seconds` pass without a `touch()`; the loop touches it each time it logs a line of its own, and
may say what now runs (`touch("summary: persona")`).
"""

import threading
import time

from absl import logging

SECONDS = 12.0  # a little over the loops' own 10 s, so it only speaks where they cannot


class Heartbeat:
  """with Heartbeat(lambda: "base step 1/3000 running") as beat: ... beat.touch() ..."""

  def __init__(self, what, seconds=SECONDS):
    self.what, self.seconds = what, seconds
    self._last = self._t0 = time.perf_counter()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)

  def touch(self, what=None):
    """Resets the clock; `what`, if given, is the text later lines say is running."""
    if what is not None:
      self.what = lambda: what
    self._last = time.perf_counter()

  def _run(self):
    while not self._stop.wait(min(1.0, self.seconds)):
      now = time.perf_counter()
      if now - self._last >= self.seconds:
        logging.info("%s (%.0fs so far)", self.what(), now - self._t0)
        self._last = now

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
    return False
