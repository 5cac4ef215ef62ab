"""Render the report sections as one self-contained HTML page (plots embedded as base64 PNG).

No scripts, no external style sheets or fonts: the file reads the same when mailed, archived
or opened offline, and Snakemake's own ``--report`` can embed it as it is.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from taas.report.sections import Table, sections

_STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif;
       margin: 2em auto; max-width: 1100px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; }
th { background: #f0f0f0; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; border: 1px solid #ddd; margin: .5em 0; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
.plots img { max-width: 540px; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: .85em; }
code { background: #f3f3f3; padding: 0 .2em; }
.warn { color: #a40; font-weight: 600; }
nav a { margin-right: 1em; }
"""


def _inline(text: str) -> str:
    """Escape, then turn `code` spans into <code> and flag honesty labels."""
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
    return out.replace("gpu backend on CPU device",
                       '<span class="warn">gpu backend on CPU device</span>')


def _table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in row) + "</tr>"
                   for row in table.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(path: Path, alt: str) -> str:
    encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def to_html(data: Mapping[str, Any], images: Mapping[str, Path]) -> str:
    parts = sections(data)
    body = [f"<h1>{html.escape(data['title'])}</h1>",
            f"<p>Events: {_inline(data['event_size_text'])}.</p>",
            "<nav>" + "".join(f'<a href="#{_anchor(s.title)}">{html.escape(s.title)}</a>'
                              for s in parts) + "</nav>"]
    for section in parts:
        body.append(f'<h2 id="{_anchor(section.title)}">{html.escape(section.title)}</h2>')
        body += [f"<p>{_inline(p)}</p>" for p in section.text]
        body += [_table(t) for t in section.tables]
        if section.images:
            body.append('<div class="plots">' + "".join(
                _image(images[k], k) for k in section.images) + "</div>")
        if section.code:
            body.append(f"<pre>{html.escape(section.code)}</pre>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(data['title'])}</title><style>{_STYLE}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")
