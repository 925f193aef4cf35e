"""The report's blocks as HTML and Markdown: headings with anchors, contents, paragraphs, lists,
tables and figures (embedded as PNG in the HTML, linked in the Markdown)."""

import base64
import html


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


def render(doc):
  """(html, markdown) for the block list; images embedded in html, linked in markdown."""
  h, md = [], []
  for kind, val in doc:
    if kind in ("h1", "h2", "h3"):
      h.append(f'<{kind} id="{anchor(val)}">{html.escape(val)}</{kind}>')
      md.append("#" * int(kind[1]) + " " + val)
    elif kind == "toc":
      h.append(
        "<nav><b>Contents</b><ul>"
        + "".join(f'<li><a href="#{anchor(s)}">{html.escape(s)}</a></li>' for s in val)
        + "</ul></nav>"
      )
      md.append("**Contents**\n\n" + "\n".join(f"- [{s}](#{anchor(s)})" for s in val))
    elif kind == "p":
      h.append(f"<p>{html.escape(val)}</p>")
      md.append(val)
    elif kind == "ul":
      h.append("<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in val) + "</ul>")
      md.append("\n".join(f"- {s}" for s in val))
    elif kind == "table":
      h.append(val.to_html(index=False, border=0, classes="t", na_rep="n/a"))
      md.append(md_table(val))
    elif kind == "fig" and val.skipped:
      h.append(
        f'<p class="skip">Figure {html.escape(val.name)} skipped: {html.escape(val.skipped)}</p>'
      )
      md.append(f"*Figure {val.name} skipped: {val.skipped}*")
    elif kind == "fig":
      with open(val.png, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
      h.append(
        f'<figure><img alt="{html.escape(val.name)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(val.caption)}</figcaption></figure>"
      )
      md.append(f"![{val.caption}](plots/{val.name}.png)")
  style = (
    "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
    "table.t{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}"
    "table.t td,table.t th{border:1px solid #ccc;padding:2px 6px}"
    "img{max-width:100%}.skip{color:#777;font-style:italic}"
  )
  page = (
    '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>warmth-sim report</title>'
    f"<style>{style}</style></head><body>\n" + "\n".join(h) + "\n</body></html>\n"
  )
  return page, "\n\n".join(md) + "\n"
