"""The report's blocks as HTML and Markdown: headings with anchors, contents, paragraphs, lists,
tables and figures (embedded as PNG in the HTML, linked in the Markdown).

A ("fold", None) block ends the first screen: in the HTML what comes before it stays open, and
every h2 section after it is a closed <details> whose <summary> is the heading (its anchor kept,
and a link to it opens it). The Markdown keeps the same order, with a rule at the fold.
"""

import base64
import html
import re

import pandas as pd

# A cell reads as a number when it starts like one: "12", "+4.2 [-1.0 to +9.3]", "<0.001", "2.5e+04".
NUMBER = re.compile(r"[<>≤≥]?\s*[+\-−]?\.?\d")
# Cells that stand for a missing number, so do not make a column of numbers one of text.
PLACEHOLDERS = ("", "n/a", "nan", "—")
# A table cell listing more comma-separated entries than this folds into a <details>.
FOLD_ENTRIES = 20

STYLE = """
body {
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  font-size: 15px; line-height: 1.45; color: #1f2328; background: #fff;
  max-width: 72rem; margin: 0 auto; padding: 0.5rem 1.5rem 4rem;
}
h1 { font-size: 1.4rem; line-height: 1.3; margin: 0.8rem 0 0.3rem; }
h2 { font-size: 1.2rem; margin: 1.2rem 0 0.4rem; }
h3 { font-size: 1.02rem; margin: 1.1rem 0 0.3rem; }
p, li { max-width: 62rem; }
ul { padding-left: 1.3rem; margin: 0.3rem 0; }
li { margin: 0.1rem 0; }
.first h2 { margin-top: 0.4rem; }
.first h3 { margin-top: 0.6rem; }
.answer { margin: 0.3rem 0; padding: 0.45rem 0.9rem; border-left: 4px solid #0969da;
  background: #f3f7fc; font-variant-numeric: tabular-nums; }
.note, figcaption, .skip { color: #59636e; font-size: 0.85rem; }
.skip { font-style: italic; }
figure { margin: 0.5rem 0; }
img { max-width: 100%; height: auto; }
nav.toc { margin: 0.6rem 0 0.5rem; padding-top: 0.5rem; border-top: 1px solid #d0d7de;
  font-size: 0.9rem; }
nav.toc a { color: #0969da; text-decoration: none; white-space: nowrap; }
nav.toc button { font: inherit; font-size: 0.85rem; margin-left: 0.4rem; cursor: pointer; }
details.section { border-top: 1px solid #d0d7de; }
details.section > summary { cursor: pointer; padding: 0.35rem 0; }
details.section > summary h2 { display: inline; margin: 0; }
details.section[open] { padding-bottom: 1rem; }
.wide { overflow-x: auto; }
table.t { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0;
  font-variant-numeric: tabular-nums; }
table.t th, table.t td { border-bottom: 1px solid #d8dee4; padding: 0.2rem 0.6rem;
  text-align: left; vertical-align: top; }
table.t th { background: #f6f8fa; border-bottom-color: #afb8c1; }
table.t .num { text-align: right; white-space: nowrap; }
table.t details summary { cursor: pointer; color: #0969da; }
"""

# A link to an anchor inside a closed section opens it; printing opens every section.
SCRIPT = """
function openAt(id) {
  var el = id && document.getElementById(id);
  for (var d = el && el.closest("details"); d; d = d.parentElement.closest("details")) d.open = true;
}
function setAll(open) {
  document.querySelectorAll("details.section").forEach(function (d) { d.open = open; });
}
document.addEventListener("click", function (e) {
  var a = e.target.closest && e.target.closest('a[href^="#"]');
  if (a) openAt(decodeURIComponent(a.getAttribute("href").slice(1)));
});
addEventListener("beforeprint", function () { setAll(true); });
openAt(decodeURIComponent(location.hash.slice(1)));
"""


def md_table(df):
  cells = [[str(v).replace("|", "\\|") for v in row] for row in df.astype(str).to_numpy()]
  head = [str(c) for c in df.columns]
  return "\n".join(
    ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    + ["| " + " | ".join(r) + " |" for r in cells]
  )


def anchor(heading):
  """The id of a heading, as GitHub makes it: lower case, punctuation dropped, spaces to '-'."""
  kept = "".join(ch for ch in heading.lower() if ch.isalnum() or ch in " -_")
  return kept.replace(" ", "-")


class Fold(str):
  """A table cell the html shows folded, whatever its length: its count and first entries, and
  the whole list a click away."""


def _text(value):
  if isinstance(value, Fold):
    return value
  return "n/a" if pd.isna(value) else str(value)


def is_numeric(cells):
  """Whether a column of cell texts reads as numbers: some cell does, and every cell does bar
  placeholders ('n/a', 'not estimable (n = 3)')."""
  shown = [c for c in cells if c not in PLACEHOLDERS and not c.startswith("not estimable")]
  return bool(shown) and all(NUMBER.match(c) for c in shown)


def _cell(text):
  """A cell's html: escaped, and a Fold or a list of more than FOLD_ENTRIES entries folded behind
  its count and first entries."""
  entries = text.split(", ")
  if len(entries) <= FOLD_ENTRIES and not isinstance(text, Fold):
    return html.escape(text)
  first = ", ".join(entries[:3]) + (", …" if len(entries) > 3 else "")
  return (
    f"<details><summary>{len(entries)} entries: {html.escape(first)}</summary>"
    f"{html.escape(text)}</details>"
  )


def html_table(df):
  """A table with its numeric columns right-aligned (class num) and its long lists folded."""
  columns = [[_text(v) for v in df.iloc[:, j]] for j in range(df.shape[1])]
  align = [' class="num"' if is_numeric(c) else "" for c in columns]
  head = "".join(f"<th{a}>{html.escape(str(c))}</th>" for a, c in zip(align, df.columns))
  rows = "".join(
    "<tr>" + "".join(f"<td{a}>{_cell(c[i])}</td>" for a, c in zip(align, columns)) + "</tr>"
    for i in range(len(df))
  )
  return (
    f'<div class="wide"><table class="t"><thead><tr>{head}</tr></thead>'
    f"<tbody>{rows}</tbody></table></div>"
  )


def _labelled(line):
  """'nano: warm − cold …' with its label (a short text before the first ': ') apart."""
  label, sep, rest = line.partition(": ")
  return (label, rest) if sep and len(label) <= 40 else ("", line)


def _html(kind, val):
  """One block's html (headings apart: render places them)."""
  if kind == "toc":
    links = " · ".join(f'<a href="#{anchor(s)}">{html.escape(s)}</a>' for s in val)
    return (
      f'<nav class="toc"><b>Contents</b> (a heading opens its section): {links}'
      '<button type="button" onclick="setAll(true)">open all</button>'
      '<button type="button" onclick="setAll(false)">close all</button></nav>'
    )
  if kind == "p":
    return f"<p>{html.escape(val)}</p>"
  if kind == "note":
    return f'<p class="note">{html.escape(val)}</p>'
  if kind == "lines":
    lines = [_labelled(line) for line in val]
    return (
      '<p class="answer">'
      + "<br>".join(
        (f"<b>{html.escape(label)}</b>: " if label else "") + html.escape(rest)
        for label, rest in lines
      )
      + "</p>"
    )
  if kind == "ul":
    return "<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in val) + "</ul>"
  if kind == "table":
    return html_table(val)
  if kind == "fig" and val.skipped:
    return f'<p class="skip">Figure {html.escape(val.name)} skipped: {html.escape(val.skipped)}</p>'
  if kind == "fig":
    with open(val.png, "rb") as f:
      data = base64.b64encode(f.read()).decode("ascii")
    return (
      f'<figure><img alt="{html.escape(val.name)}" src="data:image/png;base64,{data}">'
      f"<figcaption>{html.escape(val.caption)}</figcaption></figure>"
    )
  raise ValueError(f"unknown block kind {kind!r}")


def _md(kind, val):
  if kind in ("h1", "h2", "h3"):
    return "#" * int(kind[1]) + " " + val
  if kind == "toc":
    return "**Contents:** " + " · ".join(f"[{s}](#{anchor(s)})" for s in val)
  if kind == "fold":
    return "---"
  if kind in ("p", "note"):
    return val
  if kind == "lines":  # one paragraph, a line each (two trailing spaces break a line)
    return "  \n".join(
      f"**{label}**: {rest}" if label else rest for label, rest in map(_labelled, val)
    )
  if kind == "ul":
    return "\n".join(f"- {s}" for s in val)
  if kind == "table":
    return md_table(val)
  if kind == "fig" and val.skipped:
    return f"*Figure {val.name} skipped: {val.skipped}*"
  if kind == "fig":
    return f"![{val.caption}](plots/{val.name}.png)"
  raise ValueError(f"unknown block kind {kind!r}")


def render(doc):
  """(html, markdown) for the block list; images embedded in html, linked in markdown."""
  first, rest, folded, in_section = [], [], False, False
  for kind, val in doc:
    out = rest if folded else first
    if kind == "fold":
      folded = True
    elif kind == "h2" and folded:
      if in_section:
        out.append("</details>")
      out.append(
        f'<details class="section"><summary><h2 id="{anchor(val)}">{html.escape(val)}</h2>'
        "</summary>"
      )
      in_section = True
    elif kind in ("h1", "h2", "h3"):
      out.append(f'<{kind} id="{anchor(val)}">{html.escape(val)}</{kind}>')
    else:
      out.append(_html(kind, val))
  if in_section:
    rest.append("</details>")
  # Without a fold the page is one run of open sections.
  body = ['<section class="first">', *first, "</section>", *rest] if folded else first
  title = next((val for kind, val in doc if kind == "h1"), "warmth-sim report")
  page = (
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
    + "\n".join(body)
    + f"\n<script>{SCRIPT}</script>\n</body></html>\n"
  )
  return page, "\n\n".join(_md(kind, val) for kind, val in doc) + "\n"
