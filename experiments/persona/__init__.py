"""Persona geometry: persona vectors, the Assistant axis, drift, activation capping, steering.

persona_extension.py  the extension's hooks: steered twins, per-pack geometry, per-cell rows
options.py            the `persona` config section, checked once
vectors.py            difference-of-means vectors, role-space PCA, the axis, projections (numpy)
activations.py        residual-stream means over reply tokens, last-prompt activations of a pack
geometry.py           per base model: vectors, axis, capping thresholds, data projections
capping.py            capping settings, their labels, one batched capped evaluation of a pack
steering.py           preventative steering: steered cells, the training-time intervention
defaults.py           each preset's tested capping / steering defaults (chosen by the sweep)
effects.py            cross-cell rows after the merge: drift vs λ, trait and shift prediction
tables.py             the capped vs uncapped table and the geometry lines the demo prints
tradeoff.py           capping and steering trade-offs, and the defaults they choose
"""
