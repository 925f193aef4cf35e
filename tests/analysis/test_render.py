"""Tests for experiments.analysis.render: the first screen, folded sections, tables and style."""

import re

import numpy as np
import pandas as pd
from PIL import Image
import pytest

from experiments.analysis import plots, render


@pytest.fixture
def figure(tmp_path):
  path = tmp_path / "effect.png"
  Image.new("RGB", (8, 4), "white").save(path)
  return plots.Plot("effect", "Warm − cold by size.", png=str(path))


def _doc(figure):
  return [
    ("h1", "A report"),
    ("h2", "Bottom line"),
    ("lines", ["nano: warm errs more", "micro: inconclusive"]),
    ("note", "What the lines mean."),
    ("fig", figure),
    ("h3", "Key points"),
    ("ul", ["one", "two"]),
    ("toc", ["Summary", "Design & more"]),
    ("fold", None),
    ("h2", "Summary"),
    ("ul", ["a", "b", "c"]),
    ("h2", "Design & more"),
    ("h3", "A subsection"),
    ("table", pd.DataFrame({"factor": ["seed"], "levels": ["0, 1"]})),
    ("fig", plots.Plot("gone", "", skipped="no rows")),
  ]


def test_the_first_screen_stays_open_and_every_later_section_folds(figure):
  page, _ = render.render(_doc(figure))
  first, rest = page.split("<details", 1)
  assert first.count('<section class="first">') == 1 and first.rstrip().endswith("</section>")
  assert "<b>nano</b>: warm errs more<br><b>micro</b>: inconclusive" in first
  assert first.count("<img") == 1 and first.count("<li>") == 2
  assert '<h3 id="key-points">Key points</h3>' in first
  # Each later h2 is the summary of its own <details>, its anchor kept; subsections stay inside.
  rest = "<details" + rest
  assert re.findall(r"<h2[^>]*>", rest) == ['<h2 id="summary">', '<h2 id="design--more">']
  sections = re.findall(r'<details class="section"><summary><h2 id="([^"]+)">', rest)
  assert sections == ["summary", "design--more"]
  assert rest.count('<details class="section">') == rest.count("</details>") == 2
  design = rest.split('id="design--more"', 1)[1]
  assert design.index("A subsection") < design.index("<table") < design.index("</details>")
  assert "Figure gone skipped: no rows" in design
  for link in re.findall(r'href="#([^"]+)"', first):  # the contents land on the folded headings
    assert f'id="{link}"' in rest
  assert "<li>" not in first.split('<nav class="toc">')[1]  # contents inline, not bullets


def test_the_markdown_keeps_the_first_screens_order(figure):
  _, md = render.render(_doc(figure))
  order = ["## Bottom line", "**nano**: warm", "![Warm − cold", "### Key points", "---"]
  assert [md.index(s) for s in order] == sorted(md.index(s) for s in order)
  assert md.index("---") < md.index("## Summary") < md.index("## Design & more")
  assert "**nano**: warm errs more  \n**micro**: inconclusive" in md
  assert "**Contents:** [Summary](#summary) · [Design & more](#design--more)" in md


def test_a_page_without_a_fold_has_no_sections():
  page, _ = render.render([("h2", "Calibration"), ("p", "text")])
  assert "<details" not in page and '<section class="first">' not in page
  assert '<h2 id="calibration">Calibration</h2>' in page


def test_tables_right_align_numbers_and_fold_long_lists():
  metrics = ", ".join(f"metric_{i}" for i in range(render.FOLD_ENTRIES + 5))
  table = pd.DataFrame(
    {
      "factor": ["seed", "metric", "task"],
      "levels": ["0, 1", metrics, "a<b"],
      "Δ [95% CI]": ["+4.2 [-1.0 to +9.3]", "not estimable (n = 3)", "−0.5 [−1 to 0]"],
      "p": ["<0.001", "n/a", "0.210"],
      "n": [3, np.nan, 12],
    }
  )
  page, md = render.render([("table", table)])
  head = re.findall(r"<th( class=\"num\")?>([^<]*)</th>", page)
  assert [name for cls, name in head if cls] == ["Δ [95% CI]", "p", "n"]
  assert [name for cls, name in head if not cls] == ["factor", "levels"]
  assert '<td class="num">+4.2 [-1.0 to +9.3]</td>' in page and "<td>seed</td>" in page
  assert '<td class="num">n/a</td>' in page  # a missing number
  assert "<td>a&lt;b</td>" in page  # escaped
  folded = re.search(r"<td><details><summary>([^<]*)</summary>([^<]*)</details></td>", page)
  assert folded.group(1) == f"{render.FOLD_ENTRIES + 5} entries: metric_0, metric_1, metric_2, …"
  assert folded.group(2) == metrics
  assert page.count("<details>") == 1  # the short lists stay as they are
  assert f"| metric | {metrics} |" in md  # the markdown keeps the whole list
  short = pd.DataFrame({"factor": ["metric"], "levels": [render.Fold("error_rate, loss")]})
  short_page, short_md = render.render([("table", short)])
  assert "<td><details><summary>2 entries: error_rate, loss</summary>error_rate, loss" in short_page
  assert "| metric | error_rate, loss |" in short_md


def test_the_style_reads_well():
  page, _ = render.render([("p", "x")])
  style = re.search(r"<style>(.*)</style>", page, re.S).group(1)
  rules = dict(re.findall(r"([^{}]+)\{([^}]*)\}", style))
  rules = {k.strip(): v for k, v in rules.items()}
  assert "sans-serif" in rules["body"] and re.search(r"max-width:\s*\d", rules["body"])
  assert "font-variant-numeric: tabular-nums" in rules["table.t"]
  assert "text-align: right" in rules["table.t .num"]
  assert "cursor: pointer" in rules["details.section > summary"]
