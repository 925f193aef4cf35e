"""The README and docs/ name only things that exist: every `python -m` module, every config file
(with its `:sizing`), every relative link and figure; the README stays a front door; the
Quickstart's test command is the one CI runs."""

import importlib
import importlib.util
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _text(page):
  return page.read_text(encoding="utf-8")


def _modules(text):
  return set(re.findall(r"python3? -m ([A-Za-z_][\w.]*)", text))


def _configs(text):
  return set(re.findall(r"--config=(experiments/configs/\w+\.py)(?::([\w=,]+))?", text))


def test_the_pages_are_found():
  assert len(PAGES) >= 15 and (ROOT / "docs" / "index.md") in PAGES


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_module_a_page_runs_exists(page):
  missing = [
    m
    for m in _modules(_text(page))
    if m not in ("venv", "pytest", "pip") and importlib.util.find_spec(m) is None
  ]
  assert not missing, f"{page.name} runs modules that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_config_a_page_names_exists_with_its_sizing(page):
  for path, arg in _configs(_text(page)):
    assert (ROOT / path).is_file(), f"{page.name}: {path} does not exist"
    if arg:
      module = importlib.import_module("experiments.configs." + pathlib.Path(path).stem)
      module.get_config(arg)  # an unknown sizing is refused


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_figure_exists(page):
  targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", _text(page))
  missing = [t for t in targets if "://" not in t and not (page.parent / t).exists()]
  assert not missing, f"{page.name} links to missing files: {missing}"


def test_every_docs_page_is_in_the_index():
  index = _text(ROOT / "docs" / "index.md")
  unlisted = [
    p.name
    for p in PAGES
    if p.parent.name == "docs" and p.name != "index.md" and f"({p.name})" not in index
  ]
  assert not unlisted, f"docs/index.md does not list {unlisted}"


def test_the_readme_is_a_front_door():
  lines = _text(ROOT / "README.md").splitlines()
  assert len(lines) <= 300
  first_command = next(i for i, l in enumerate(lines) if "python -m experiments.main" in l)
  layout = next(i for i, l in enumerate(lines) if l == "## How the code is laid out")
  assert first_command < 30 and layout < 200


def test_ci_runs_the_quickstarts_test_command():
  readme = _text(ROOT / "README.md")
  ci = _text(ROOT / ".ci" / "run").strip().splitlines()[-1]
  assert ci in readme and "pytest" in ci
