"""warmth-sim's experiments: `python -m experiments.main`, and `load_cell` to pick up one model."""


def __getattr__(name):
  # Lazily, so `python -m experiments.main` reports flag errors before JAX is imported.
  if name == "load_cell":
    from experiments.load import load_cell  # pylint: disable=g-import-not-at-top

    return load_cell
  raise AttributeError(f"module 'experiments' has no attribute {name!r}")
