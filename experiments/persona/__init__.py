"""Persona geometry: persona vectors, the Assistant axis, drift, activation capping, steering.

  vectors.py      difference-of-means vectors, role-space PCA, the axis, projections (pure numpy)
  activations.py  residual-stream means over reply tokens and last-prompt activations of a pack
  geometry.py     per base model: vectors, axis, capping thresholds, persona-data projections
  capping.py      capping settings, their labels, one batched capped evaluation of a pack
  steering.py     preventative steering: steered cells and the training-time intervention
  defaults.py     each preset's tested capping / steering defaults (chosen by the sweep)
  options.py      the `persona` config section, checked once
  extension.py    the extension's hooks: steered twins, per-pack geometry, per-cell rows
  effects.py      cross-cell rows after the merge: drift vs λ, trait and shift prediction, trade-off
  tables.py       the capped vs uncapped table and the geometry lines the demo prints
"""
