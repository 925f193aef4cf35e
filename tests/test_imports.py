"""The package's import graph, read from the source with `ast` (nothing is imported): no cycle, no
core module importing an extension, tasks/ free of JAX and of the experiment, models/ free of the
experiment, and the analysis free of the training pipeline."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("experiments", "models", "tasks")
EXTENSIONS = ("experiments.persona", "experiments.objectives")


def _module_name(path):
  parts = list(path.relative_to(ROOT).with_suffix("").parts)
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules():
  return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports(name, path, known):
  """Every project module `name` imports, at module top or inside a function."""
  package = name if path.name == "__init__.py" else name.rpartition(".")[0]
  found = set()
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        base = ".".join(
          package.split(".")[: len(package.split(".")) - node.level + 1]
          + ([node.module] if node.module else [])
        )
      for a in node.names:  # `from pkg import module` names a module; `from mod import f` its mod
        found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)
  return {m for m in found if m in known and m != name}


@pytest.fixture(scope="module")
def graph():
  known = _modules()
  return {name: _imports(name, path, known) for name, path in known.items()}


def _cycle(graph):
  """One import cycle as a list of modules, or None."""
  state, stack = {}, []

  def visit(m):
    state[m] = "open"
    stack.append(m)
    for n in sorted(graph[m]):
      if state.get(n) == "open":
        return stack[stack.index(n) :] + [n]
      if n not in state and (found := visit(n)):
        return found
    state[m] = "done"
    stack.pop()
    return None

  for m in sorted(graph):
    if m not in state and (found := visit(m)):
      return found
  return None


def _arrows(graph, source, target):
  return sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps if source(a) and target(b))


def _under(*prefixes):
  return lambda m: any(m == p or m.startswith(p + ".") for p in prefixes)


def test_the_graph_reads_the_whole_package(graph):
  assert {
    "experiments.experiment",
    "experiments.stage",
    "models.transformer",
    "tasks.mixtures",
  } <= set(graph)
  assert "experiments.stage" in graph["experiments.experiment"]


def test_no_import_cycle(graph):
  assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_a_cycle_is_found_when_there_is_one():
  assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_core_module_imports_an_extension(graph):
  core = lambda m: not _under(*EXTENSIONS, "experiments.configs", "experiments.tools")(m)
  assert not _arrows(graph, core, _under(*EXTENSIONS))


def test_tasks_and_models_stay_below_the_experiment(graph):
  assert not _arrows(graph, _under("tasks"), _under("experiments", "models"))
  assert not _arrows(graph, _under("models"), _under("experiments"))


def test_the_analysis_never_imports_the_training_pipeline(graph):
  pipeline = _under(
    "experiments.experiment",
    "experiments.stage",
    "experiments.train",
    "experiments.base_models",
    "experiments.load",
    "experiments.main",
  )
  assert not _arrows(graph, _under("experiments.analysis"), pipeline)


def test_tasks_import_no_jax():
  for path in sorted((ROOT / "tasks").rglob("*.py")):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {
      a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    names |= {
      (n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
    }
    assert not names & {"jax", "flax", "optax"}, path.name
