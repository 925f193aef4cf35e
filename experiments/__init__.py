"""warmth-sim's experiments: `python -m experiments.main`, and `load_run` to pick up one model."""


def __getattr__(name):
  # Lazily, so `python -m experiments.main` reports flag errors before JAX is imported.
  if name == "load_run":
    from experiments.runs import load_run  # pylint: disable=g-import-not-at-top

    return load_run
  raise AttributeError(f"module 'experiments' has no attribute {name!r}")
