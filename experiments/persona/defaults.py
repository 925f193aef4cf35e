"""Each preset's tested capping and steering defaults, so nobody hand-tunes opaque settings.

`persona.cap_layers='auto'`, `persona.cap_percentile=-1` and `persona.steer_layers='auto'` resolve
here. The entries were chosen by the built-in sweep of experiments/configs/persona.py (which writes
WORKDIR/persona/defaults.json with the trade-off behind each choice); `source` says which run.
A preset without an entry falls back to RULE, which no sweep has tested, and says so in the log.
"""

from absl import logging

# Filled from WORKDIR/persona/defaults.json of the sweep named in `source` (no error-recovered CI
# below excludes zero). Steering layers were not swept; `steer_alpha` is used when
# persona.steer_default is on.
SWEEP = (
  "experiments/configs/persona.py at a698c73, 2-core CPU, 18.5 min, "
  "budget 0.02 on capability and on safety"
)
# The study's sweep (experiments/configs/study.py, 3 seeds, base models of a 200-person world that
# answer 88% of held-out factual questions at nano): axis floors p5 and p25 × the back half and all
# layers, on the base and warm λ = 1 cells. Every setting binds (it clamps 12-99% of prompts where
# the reply starts, persona_geometry/cap_clamped_share) and none recovers error at these sizes.
STUDY = "experiments/configs/study.py at 714bef2, 2-core CPU, 81 min"
TESTED = {
  # Recovered -0.4 [-5.1, +4.4] points, capability -0.5 [-2.1, +1.1], safety -0.4 [-6.3, +5.5].
  "femto": dict(
    cap_layers="1",
    cap_percentile=25,
    steer_layers="1",
    steer_alpha=2.0,
    source=STUDY + "; capping recovers nothing",
  ),
  # Recovered -0.9 [-3.1, +1.4] points, capability +0.1 [-0.6, +0.7], safety +1.4 [-0.8, +3.6].
  "pico": dict(
    cap_layers="1",
    cap_percentile=5,
    steer_layers="1",
    steer_alpha=2.0,
    source=STUDY + "; capping recovers nothing",
  ),
  # Recovered +0.2 [-0.7, +1.2] points, capability +0.0 [-0.2, +0.3], safety +0.9 [-2.9, +4.8].
  # (The demo-world sweep had chosen p5 at L1, on models that had nothing to recover.)
  # Steering: from the demo-world sweep, which found no α within the budget; α=2 least harmful.
  "nano": dict(
    cap_layers="1",
    cap_percentile=25,
    steer_layers="1",
    steer_alpha=2.0,
    source=STUDY + "; capping recovers nothing; steering from " + SWEEP,
  ),
  # Capping: lowered reliability error by +1.2 [-0.2, +2.9] points, capability +0.3 [-1.9, +2.4], safety -3.9
  # [-8.0, -0.1]. Steering: no α fits the budget; α=2 (least harmful) costs 3.6 [1.5, 5.7]
  # points of reliability. Chosen on the demo world; micro is not in the CPU study.
  "micro": dict(
    cap_layers="2",
    cap_percentile=25,
    steer_layers="1",
    steer_alpha=2.0,
    source=SWEEP + "; steering fails the budget",
  ),
}
# The fallback: the back half of the layers, the 25th percentile (as in the Assistant-axis work).
RULE = dict(
  cap_layers="back",
  cap_percentile=25,
  steer_layers="back",
  steer_alpha=4.0,
  source="rule (no sweep run for this preset)",
)


def for_preset(preset):
  """The defaults of one preset (TESTED, else RULE)."""
  if preset not in TESTED:
    logging.warning("persona: preset %s has no tested defaults; using %s", preset, RULE)
  return TESTED.get(preset, RULE)


def cap_layers(pcfg, preset):
  return for_preset(preset)["cap_layers"] if pcfg.cap_layers == "auto" else pcfg.cap_layers


def cap_percentile(pcfg, preset):
  p = int(pcfg.cap_percentile)
  return int(for_preset(preset)["cap_percentile"]) if p < 0 else p


def steer_layers(pcfg, preset):
  return for_preset(preset)["steer_layers"] if pcfg.steer_layers == "auto" else pcfg.steer_layers
