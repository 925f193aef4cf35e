"""Each preset's tested capping and steering defaults, so nobody hand-tunes opaque settings.

`persona.cap_layers='auto'`, `persona.cap_percentile=-1` and `persona.steer_layers='auto'` resolve
here. The entries were chosen by the built-in sweep of experiments/configs/persona.py (which writes
WORKDIR/persona/defaults.json with the trade-off behind each choice); `source` says which run.
A preset without an entry falls back to RULE, which no sweep has tested, and says so in the log.
"""
from absl import logging

# Filled from WORKDIR/persona/defaults.json of the sweep named in `source` (2 seeds, so the
# choices are noisy: no error-recovered CI below excludes zero). Steering layers were not swept;
# `steer_alpha` is used when persona.steer_default is on.
SWEEP = ("experiments/configs/persona.py at a698c73, 2-core CPU, 18.5 min, "
         "budget 0.02 on capability and on safety")
TESTED = {
    # No setting recovered error; p5 at L1 is the smallest touch: -0.1 [-0.7, +0.5] points
    # recovered, capability -0.3 [-0.8, +0.3], safety +1.3 [-0.3, +4.0]. Steering: no α fits the
    # budget; α=2 (least harmful): +1.2 [-5.6, +7.9] recovered, safety +9.4 [-1.5, +21.3].
    "nano": dict(cap_layers="1", cap_percentile=5, steer_layers="1", steer_alpha=2.0,
                 source=SWEEP + "; capping recovers nothing, steering fails the budget"),
    # Capping: +1.2 [-0.2, +2.9] points recovered, capability +0.3 [-1.9, +2.4], safety -3.9
    # [-8.0, -0.1]. Steering: no α fits the budget; α=2 (least harmful) costs 3.6 [1.5, 5.7]
    # points of reliability.
    "micro": dict(cap_layers="2", cap_percentile=25, steer_layers="1", steer_alpha=2.0,
                  source=SWEEP + "; steering fails the budget"),
}
# The fallback: the back half of the layers, the 25th percentile (as in the Assistant-axis work).
RULE = dict(cap_layers="back", cap_percentile=25, steer_layers="back", steer_alpha=4.0,
            source="rule (no sweep run for this preset)")


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
