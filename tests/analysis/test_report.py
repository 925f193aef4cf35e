"""Tests for experiments.analysis.report: rendering complete/partial sweeps and refusing bad input."""

import base64
import html.parser
import io
import os
import re
import subprocess
import sys
import types

from absl import flags
import numpy as np
import pandas as pd
from PIL import Image
import pytest
import synthetic_metrics
import tiny_runs

from experiments.analysis import plots, report, stats
from experiments.persona import tables as persona_tables
from experiments.persona import tradeoff
from tasks.config import RELIABILITY_TASKS

OUTPUTS = ("report.html", "report.md", "paired_deltas.csv", "plots")
TINY = dict(presets={"nano": 25_000}, n_items=10, tasks=("factual_qa", "capability"))
SMALL = dict(
  presets={"nano": 25_000, "micro": 148_000, "mini": 1_200_000},
  n_items=40,
  tasks=("factual_qa", "medical_dosing", "safety_refusal", "capability"),
)


class _Page(html.parser.HTMLParser):
  """Collects headings, tables (as lists of rows), list items per section (`items`: the Summary's;
  `sections`: every h2's, in order), contents links and image sources."""

  def __init__(self):
    super().__init__()
    self.headings, self.tables, self.images, self.links = [], [], [], []
    self.sections = {}
    self._text = None

  @property
  def items(self):
    return self.sections.get("Summary", [])

  def handle_starttag(self, tag, attrs):
    if tag == "table":
      self.tables.append([])
    elif tag == "tr":
      self.tables[-1].append([])
    elif tag in ("h1", "h2", "h3", "li", "td", "th"):
      self._text = ""
    elif tag == "img":
      self.images.append(dict(attrs)["src"])
    elif tag == "a":
      self.links.append(dict(attrs)["href"])

  def handle_data(self, data):
    if self._text is not None:
      self._text += data

  def handle_endtag(self, tag):
    if tag in ("td", "th"):
      self.tables[-1][-1].append(self._text)
    elif tag in ("h1", "h2", "h3"):
      self.headings.append(self._text)
      if tag == "h2":
        self.sections[self._text] = []
    elif tag == "li" and self.sections:
      self.sections[list(self.sections)[-1]].append(self._text)
    if tag in ("h1", "h2", "h3", "li", "td", "th"):
      self._text = None


def _parse(workdir):
  page = _Page()
  with open(os.path.join(workdir, "report.html"), encoding="utf-8") as f:
    page.feed(f.read())
  return page


def _assert_images_are_png(page):
  assert page.images
  for src in page.images:
    assert src.startswith("data:image/png;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    img.verify()
    assert img.format == "PNG"


_FIGURES = {}  # {name: matplotlib Figure} of every figure the `complete` report saved


@pytest.fixture(scope="module")
def complete(tmp_path_factory):
  """(workdir, items, paths) of a report on a complete sweep with capping, its figures kept in
  _FIGURES as plots.save received them."""
  workdir = str(tmp_path_factory.mktemp("complete"))
  items = synthetic_metrics.write_sweep(workdir, capping=True, **SMALL)
  original = plots.save

  def keep(fig, out_dir, name, caption):
    _FIGURES[name] = fig
    return original(fig, out_dir, name, caption)

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(plots, "save", keep)
    return workdir, items, report.write_report(workdir, n_boot=100)


def test_complete_sweep_renders_every_section(complete):
  workdir, _, paths = complete
  page = _parse(workdir)
  for heading in (
    "Summary",
    "Design",
    "Reliability: error-rate changes by task and context",
    "Scaling",
    "Persona geometry (deepest layer, mean over runs)",
    "Figures",
  ):
    assert heading in page.headings
  main = next(t for t in page.tables if t[0][:2] == ["task", "context"] and "q (primary)" in t[0])
  assert {"warm vs λ=0", "cold vs λ=0", "warm − cold"} <= set(main[0])
  assert len(main) == 1 + 4 * 4  # header + tasks × contexts
  assert any(
    t[0][0] == "task" and "reliability tasks (pooled)" in [r[0] for r in t[1:]] for t in page.tables
  )  # screening checks next to reliability
  _assert_images_are_png(page)
  for name in (
    "error_rate_vs_lambda",
    "frontier",
    "effect_vs_n_params",
    "capping_tradeoff",
    "persona_drift",
    "loss_scaling",
  ):
    for ext in ("png", "svg"):
      assert os.path.join(workdir, "plots", f"{name}.{ext}") in paths["plots"]
      assert os.path.getsize(os.path.join(workdir, "plots", f"{name}.{ext}")) > 0
  with open(paths["md"], encoding="utf-8") as f:
    md = f.read()
  assert "## Summary" in md and "| task | context |" in md
  assert not [f for f in os.listdir(workdir) if f.startswith(".")]  # no staging left


def _first_screen(workdir):
  """(first screen, the rest) of report.html: what comes before the first <details>, and after."""
  with open(os.path.join(workdir, "report.html"), encoding="utf-8") as f:
    text = f.read()
  first, rest = text.split("<details", 1)
  return first, "<details" + rest


def test_the_first_screen_holds_the_bottom_line_one_figure_and_few_bullets(complete):
  workdir, items, _ = complete
  page = _parse(workdir)
  first, rest = _first_screen(workdir)
  assert page.headings[:2] == [page.headings[0], "Bottom line"] and "Bottom line" in first
  # The bottom line: one paragraph, a line per preset (smallest first), then the note.
  answer = re.search(r'<p class="answer">(.*?)</p>', first).group(1).split("<br>")
  presets = list(items.groupby("preset").n_params.first().sort_values().index)
  assert [re.sub(r"<b>([^<]*)</b>.*", r"\1", a) for a in answer] == presets
  assert "warm − cold error at λ=1" in answer[0] and "Terms:" in first
  # The one figure that answers the question: warm − cold by context against size.
  assert re.findall(r'<img alt="([^"]+)"', first) == ["mechanism_scaling"]
  assert '<img alt="mechanism_scaling"' not in rest  # not repeated under Figures
  # At most eight key points, each a sentence of the full summary below.
  bullets = page.sections["Bottom line"]
  assert 3 <= len(bullets) <= 8 and first.count("<li") == len(bullets)
  assert set(bullets) <= set(page.items) and bullets[0].startswith("The workdir holds")
  assert any(b.startswith("Across measurable reliability tasks (pooled") for b in bullets)
  assert any(b.startswith("Primary family: ") for b in bullets)
  assert all(len(b) < 400 for b in bullets)  # the primary family's list stays below
  # The contents: an inline line of links, each to a heading folded below.
  assert page.links[:2] == ["#summary", "#design"]
  assert page.links == [f"#{report.render.anchor(h)}" for h in page.sections if h != "Bottom line"]
  for link in page.links:
    assert f'<summary><h2 id="{link[1:]}">' in rest, link
  # Every h2 below is the summary of its own closed <details>.
  h2s = re.findall(r"(.{0,40})<h2 ", rest)
  assert len(h2s) == len(page.sections) - 1
  assert all(h.endswith('<details class="section"><summary>') for h in h2s), h2s
  assert rest.count('<details class="section">') == len(h2s)
  assert '<details class="section" open' not in rest
  # The design table's metric list is folded in its cell.
  assert re.search(r"<td>metric</td><td><details><summary>\d+ entries: ", rest)


def test_the_markdown_has_the_first_screens_order(complete):
  workdir, _, paths = complete
  with open(paths["md"], encoding="utf-8") as f:
    md = f.read()
  order = ["## Bottom line", "![", "### Key points", "**Contents:**", "## Summary", "## Design"]
  at = [md.index(s) for s in order]
  assert at == sorted(at), at
  assert md.count("](plots/mechanism_scaling.png)") == 1


def test_summary_numbers_are_computed_from_the_statistics(complete):
  workdir, items, _ = complete
  page = _parse(workdir)
  headline = next(
    s for s in page.items if s.startswith("Across measurable reliability tasks (pooled, secondary)")
  )
  rel = items[
    (items.preset == "mini")
    & items.task.isin(RELIABILITY_TASKS)
    & items.warmth_weight.isin([0.0, 1.0])
    & (items.intervention == "none")
  ]
  d = stats.paired_deltas(rel, "error", (), 100, primary=())
  r = d[
    (d.persona == "warm")
    & (d.comparison == "vs_cold")
    & (d.warmth_weight == 1.0)
    & (d.intervention == "none")
  ].iloc[0]
  expected = (
    f"by {100 * r.estimate:+.1f} points (95% CI {100 * r.ci_low:+.1f} to "
    f"{100 * r.ci_high:+.1f}) relative to cold"
  )
  assert expected in headline
  assert "λ = 1 (preset mini)" in headline
  assert ("not significant" in headline) == (r.p_value >= 0.05)
  assert any(s.startswith("Every cell has the same seeds") for s in page.items)
  assert any(s.startswith("On the capability screening check") for s in page.items)
  assert any(s.startswith("Primary family:") for s in page.items)
  # The planted warm effect is positive: the mixed model's warm − cold log-odds slope too.
  mixed = next(s for s in page.items if s.startswith("A logistic mixed model") and "mini" in s)
  assert re.search(r"warm − cold at \+\d", mixed), mixed


def _numbers(cell):
  """The point-valued numbers of a '+1.2 [-0.2, +2.9]' or '+1.2 [-0.2 to +2.9]' cell."""
  return [float(x) for x in re.findall(r"[+-]?\d+\.\d+", cell)]


def test_report_and_console_show_the_same_capping_numbers(tmp_path, monkeypatch):
  n_boot = 60
  items = synthetic_metrics.make_items(
    presets={"nano": 25_000, "micro": 148_000},
    n_items=30,
    lambdas=(0.0, 1.0),
    capping=True,
    tasks=("factual_qa", "safety_refusal", "capability"),
  )
  metrics = synthetic_metrics.metrics_from_items(items)
  synthetic_metrics.write_sweep(str(tmp_path), items=items, metrics=metrics)
  # The console: what the persona extension prints at the end of the run.
  config = types.SimpleNamespace(eval=types.SimpleNamespace(bootstrap=n_boot))
  options = types.SimpleNamespace(max_capability_loss=0.05, intervention_on="both")
  _, text = persona_tables.summarize(config, options, str(tmp_path / "console"), items, metrics)
  lines = text.split("capping trade-off", 1)[1].split("preventative steering")[0].splitlines()
  console = {}
  for line in lines:
    f = line.split()
    if len(f) > 2 and f[0] in ("nano", "micro") and f[1].startswith("cap"):
      cells = re.findall(r"[+-]\d+\.\d \[[^]]*\]|—", line)
      console[f[0], f[1]] = [_numbers(c) for c in cells[:3]]
  assert len(console) == 2 * len(synthetic_metrics.CAPS)
  # The report, from items.csv and metrics.csv, with the same bootstrap draws.
  plotted = {}
  original = plots.capping_tradeoff

  def keep(table, out_dir):
    plotted["t"] = table
    return original(table, out_dir)

  monkeypatch.setattr(plots, "capping_tradeoff", keep)
  report.write_report(str(tmp_path), n_boot=n_boot)
  page = _parse(str(tmp_path))
  assert "Activation capping trade-off (warm cells at the largest λ)" in page.headings
  table = next(t for t in page.tables if "error recovered, pts" in t[0])
  head = table[0]
  col = {
    k: head.index(k)
    for k in (
      "preset",
      "intervention",
      "error recovered, pts",
      "capability lost, pts",
      "safety lost, pts",
    )
  }
  shown = {
    (r[col["preset"]], r[col["intervention"]]): [
      _numbers(r[col[k]])
      for k in ("error recovered, pts", "capability lost, pts", "safety lost, pts")
    ]
    for r in table[1:]
  }
  assert shown == console
  # The figure plots those very rows, and so does the csv the run wrote.
  key = ["preset", "intervention"]
  expected = tradeoff.capping_table(items, n_boot, metrics=metrics).sort_values(key)
  got = plotted["t"].sort_values(key)
  saved = pd.read_csv(tmp_path / "console" / "persona" / "capping_tradeoff.csv").sort_values(key)
  for frame in (got, saved):
    for c in (
      "error_recovered",
      "error_recovered_ci_low",
      "error_recovered_ci_high",
      "capability_lost",
      "safety_lost",
      "recovery_share",
    ):
      np.testing.assert_allclose(frame[c].to_numpy(float), expected[c].to_numpy(float))
  # The summary says each setting of the largest preset in words whose signs are explicit.
  for r in expected[expected.preset == "micro"].itertuples():
    assert any(
      s.startswith(f"{r.intervention} (preset micro, λ = 1) ")
      and tradeoff.tradeoff_in_words(r) in s
      for s in page.items
    ), r.intervention
  assert not re.search(r"recovered [-−]", " ".join(page.items))


def test_partial_sweep_renders_and_says_so(tmp_path):
  items = synthetic_metrics.make_items(
    **dict(SMALL, n_items=20, tasks=SMALL["tasks"][::2]), capping=True
  )
  synthetic_metrics.write_sweep(str(tmp_path), items=synthetic_metrics.drop_runs(items, 0.4))
  paths = report.write_report(str(tmp_path), n_boot=50)
  page = _parse(str(tmp_path))
  partial = next(s for s in page.items if s.startswith("The sweep is partial"))
  assert "missing seeds" in partial
  assert len(page.tables) >= 3
  _assert_images_are_png(page)
  assert os.path.exists(paths["deltas"])


def test_null_sweep_reports_a_null(tmp_path):
  synthetic_metrics.write_sweep(
    str(tmp_path),
    warm_effect=0.0,
    rng=5,
    **dict(SMALL, n_items=20, presets={"nano": 25_000, "micro": 148_000}),
  )
  report.write_report(str(tmp_path), n_boot=100)
  page = _parse(str(tmp_path))
  headline = next(
    s for s in page.items if s.startswith("Across measurable reliability tasks (pooled, secondary)")
  )
  assert "not significant" in headline
  assert not any("× its neutral" in s for s in page.items)
  assert any("No power law" in s for s in page.items)


def test_thin_workdirs_render(tmp_path):
  items = synthetic_metrics.make_items(
    presets={"nano": 25_000}, seeds=(0,), n_items=20, tasks=("factual_qa",)
  )
  lam0 = str(tmp_path / "lam0")
  synthetic_metrics.write_sweep(lam0, items=items[items.warmth_weight == 0], config=False)
  report.write_report(lam0, n_boot=50)
  page = _parse(lam0)
  assert any("no warmth effects are reported" in s for s in page.items)
  assert any("config.json is absent" in s for s in page.items)
  no_items = str(tmp_path / "no_items")
  synthetic_metrics.write_sweep(no_items, items=items)
  os.remove(os.path.join(no_items, "items.csv"))
  paths = report.write_report(no_items, n_boot=50)
  assert "deltas" not in paths
  assert any("items.csv is absent" in s for s in _parse(no_items).items)


def test_derived_rows_in_metrics_are_not_counted_as_runs(tmp_path):
  items = synthetic_metrics.write_sweep(str(tmp_path), **TINY)
  metrics = synthetic_metrics.metrics_from_items(items)
  changes = metrics[metrics.metric == "error_rate"].assign(
    seed=-1, metric="error_rate_change_vs_cold", run=lambda d: d.run + "-pooled"
  )
  pd.concat([metrics, changes]).to_csv(tmp_path / "metrics.csv", index=False)
  report.write_report(str(tmp_path), n_boot=20)
  summary = _parse(str(tmp_path)).items
  assert summary[0].startswith(f"The workdir holds {items.run.nunique()} cells")
  assert any(f"{len(changes)} derived rows" in s for s in summary)


def test_persona_geometry_in_the_persona_modules_format(tmp_path):
  items = synthetic_metrics.write_sweep(str(tmp_path), **TINY)
  metrics = synthetic_metrics.metrics_from_items(items)
  geo = metrics.metric == "drift_mean"
  metrics.loc[geo, "metric"] = "drift_vs_neutral[axis]"
  metrics = metrics[~(geo & (metrics.context == "neutral"))]
  metrics.to_csv(tmp_path / "metrics.csv", index=False)
  paths = report.write_report(str(tmp_path), n_boot=20)
  assert str(tmp_path / "plots" / "persona_drift.png") in paths["plots"]
  assert any(
    s.startswith("drift_vs_neutral[axis], averaged over layers")
    for s in _parse(str(tmp_path)).items
  )


def test_importing_report_defines_no_flags():
  # experiments.main imports this module and owns --workdir; flags exist only under __main__.
  assert "n_boot" not in flags.FLAGS and not hasattr(report, "FLAGS")


def test_failure_midway_leaves_nothing_behind(tmp_path, monkeypatch):
  synthetic_metrics.write_sweep(str(tmp_path), **TINY)

  def boom(*args):
    raise RuntimeError("simulated crash")

  monkeypatch.setattr(plots, "loss_scaling", boom)
  with pytest.raises(RuntimeError):
    report.write_report(str(tmp_path), n_boot=20)
  assert sorted(os.listdir(tmp_path)) == ["config.json", "items.csv", "metrics.csv"]


def _cli(workdir):
  """Starts `python -m experiments.analysis.report` on workdir; .communicate() collects it."""
  return subprocess.Popen(
    [sys.executable, "-m", "experiments.analysis.report", f"--workdir={workdir}", "--n_boot=20"],
    cwd=tiny_runs.ROOT,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def _bad_workdirs(root):
  """Yields (workdir, expected message fragment) for each kind of unusable input."""
  yield os.path.join(root, "does_not_exist"), "does not exist"
  empty = os.path.join(root, "empty")
  os.makedirs(empty)
  yield empty, "metrics.csv not found"
  cols = os.path.join(root, "missing_columns")
  items = synthetic_metrics.write_sweep(cols, presets={"nano": 1}, seeds=(0,), n_items=5)
  metrics = synthetic_metrics.metrics_from_items(items).drop(columns=["seed", "value"])
  metrics.to_csv(os.path.join(cols, "metrics.csv"), index=False)
  yield cols, "lacks required column(s) seed, value"
  bad_items = os.path.join(root, "bad_items")
  synthetic_metrics.write_sweep(bad_items, items=items.drop(columns=["item_id"]))
  yield bad_items, "items.csv lacks required column(s) item_id"
  text = os.path.join(root, "text_in_numbers")
  metrics = synthetic_metrics.metrics_from_items(items).astype({"value": object})
  metrics.loc[3, "value"] = "n/a (crashed)"
  synthetic_metrics.write_sweep(text, items=items)
  metrics.to_csv(os.path.join(text, "metrics.csv"), index=False)
  yield text, "has 'n/a (crashed)' in column value (data row 4), where a number is required"


def test_bad_inputs_raise_one_sentence_and_write_nothing(tmp_path):
  for workdir, fragment in _bad_workdirs(str(tmp_path)):
    before = sorted(os.listdir(workdir)) if os.path.isdir(workdir) else None
    with pytest.raises(ValueError, match=re.escape(fragment)):
      report.write_report(workdir)
    assert before == (sorted(os.listdir(workdir)) if os.path.isdir(workdir) else None)


def test_bad_inputs_exit_nonzero_on_the_command_line(tmp_path):
  # Each kind is covered in-process above; the CLI path is the same for all, so three suffice.
  cases = [c for c in _bad_workdirs(str(tmp_path)) if "item_id" not in c[1]]
  before = [sorted(os.listdir(w)) if os.path.isdir(w) else None for w, _ in cases]
  runs = [_cli(w) for w, _ in cases]  # concurrently: start-up dominates
  for (workdir, fragment), listing, run in zip(cases, before, runs):
    _, stderr = run.communicate(timeout=120)
    assert run.returncode != 0, workdir
    message = stderr.strip()
    assert fragment in message and "\n" not in message, message
    assert len(re.findall(r"\.(\s|$)", message)) == 1, message  # one sentence
    after = sorted(os.listdir(workdir)) if os.path.isdir(workdir) else None
    assert listing == after and not any(o in (after or []) for o in OUTPUTS)


def test_cli_writes_the_report(tmp_path):
  synthetic_metrics.write_sweep(str(tmp_path), **TINY)
  run = _cli(str(tmp_path))
  stdout, stderr = run.communicate(timeout=120)
  assert run.returncode == 0, stderr
  assert "report.html" in stdout and os.path.exists(tmp_path / "report.html")


def test_the_bottom_line_is_short_and_says_inconclusive_when_the_interval_spans_zero():
  from experiments.analysis import summary  # pylint: disable=g-import-not-at-top

  items = synthetic_metrics.make_items(
    presets={"nano": 25_000, "micro": 100_000}, warm_effect=0.0, seeds=(0, 1, 2), n_items=40
  )
  text = summary.bottom_line(items, 200, 125.0, "/w/report.html")
  lines = text.splitlines()
  assert len(lines) <= 10 and lines[0].endswith("in 2 min 5 s."), text
  assert lines[1].startswith("nano:") and lines[2].startswith("micro:")  # by size
  assert "inconclusive" in lines[1] and lines[-1].startswith("report: /w/report.html")
  strong = synthetic_metrics.make_items(presets={"nano": 25_000}, warm_effect=0.5, n_items=40)
  assert "warm errs more" in summary.bottom_line(strong, 200, 5.0)
  both = pd.concat(
    [strong, strong.assign(protocol="mixture", run=strong.run.str.replace("finetune", "mixture"))]
  )
  lines = summary.bottom_line(both, 100, 5.0).splitlines()  # a sweep of both protocols
  assert [l.split(":")[0] for l in lines[1:3]] == ["nano (finetune)", "nano (mixture)"]
  assert summary.in_words(0.05, 0.01, 0.09) == "+5.0 [+1.0, +9.0] (warm errs more)"
  # A preset whose base model is at floor on every reliability task has nothing to pool.
  blind = strong.copy()
  blind.loc[(blind.persona == "none") & (blind.task != "capability"), "error"] = 1
  lines = summary.answer_lines(pd.concat([blind, items[items.preset == "micro"]]), 100)
  assert lines[0].startswith("nano: no reliability task measurable"), lines
  assert lines[1].startswith("micro: warm − cold") and "2 of 2 reliability tasks pooled" in lines[1]
  assert summary.in_words(-0.02, -0.05, 0.01).endswith("(inconclusive)")


def test_every_report_figure_has_axis_labels_in_words(complete):
  assert len(_FIGURES) >= 6, sorted(_FIGURES)
  for name, fig in _FIGURES.items():
    drawn = [ax for ax in fig.axes if ax.has_data()]
    xlabels = [ax.get_xlabel() for ax in drawn if ax.get_xlabel()]
    ylabels = [ax.get_ylabel() for ax in drawn if ax.get_ylabel()]
    assert xlabels and ylabels, name
    for label in xlabels + ylabels:
      assert "_" not in label and "[" not in label, (name, label)  # words, not column names


def test_frontier_bars_stop_at_the_bounds_of_a_rate():
  """Two seeds' t interval can reach past 0 or 1; the frontier's bars must not."""
  below, above = plots._within_bounds([0.9, 0.05, 0.5], [0.3, 0.2, float("nan")])
  np.testing.assert_allclose(below, [0.3, 0.05, 0.0])
  np.testing.assert_allclose(above, [0.1, 0.2, 0.0])


def test_a_workdir_of_several_regimes_reports_the_first_and_answers_for_each(planted):
  from experiments.analysis import summary

  phase = planted[planted.persona != "none"]
  items = pd.concat([planted, phase.assign(regime="lora")])
  metrics = synthetic_metrics.metrics_from_items(items)
  config = {"grid": {"regimes": {"default": {}, "lora": {"persona_update": "lora"}}}}
  m, it, notes = report.first_regime(metrics, items, config)
  assert set(it.regime) == {"default", "none"} and set(m.regime) == {"default", "none"}
  assert "holds 2 persona-phase regimes (default, lora)" in notes[0]
  lines = summary.answer_lines(items, 20)
  assert [line.split(":")[0] for line in lines] == ["nano [regime default]", "nano [regime lora]"]
  assert report.first_regime(metrics, planted, config)[2] == []  # one regime: no note
