"""Heartbeat: a line while one long call runs, none while the loop logs on its own."""

import time

from absl import logging

from experiments.runtime import heartbeat


def _lines(monkeypatch):
  lines = []
  monkeypatch.setattr(logging, "info", lambda fmt, *args: lines.append(fmt % args))
  return lines


def test_a_silent_call_gets_a_line_every_period(monkeypatch):
  lines = _lines(monkeypatch)
  with heartbeat.Heartbeat(lambda: "base step 1/10 running", seconds=0.2):
    time.sleep(0.9)
  assert 2 <= len(lines) <= 5, lines  # one per 0.2 s of 0.9, give or take a busy machine
  assert all(l.startswith("base step 1/10 running (") and l.endswith("s so far)") for l in lines)


def test_touching_it_keeps_it_quiet_and_it_stops_on_exit(monkeypatch):
  lines = _lines(monkeypatch)
  with heartbeat.Heartbeat(lambda: "busy", seconds=0.3) as beat:
    for _ in range(8):
      time.sleep(0.1)
      beat.touch()
  time.sleep(0.5)
  assert lines == []


def test_a_touch_may_say_what_runs_now(monkeypatch):
  lines = _lines(monkeypatch)
  with heartbeat.Heartbeat(lambda: "summary: paired changes running", seconds=0.2) as beat:
    beat.touch("summary: persona running")
    time.sleep(0.5)
  assert lines and all(l.startswith("summary: persona running (") for l in lines), lines
