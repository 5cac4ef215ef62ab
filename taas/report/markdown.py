"""Render the report sections as Markdown (report.md), plots linked from ``plots/``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from taas.report.sections import Table, sections


def _table(table: Table) -> list[str]:
    def row(cells: Any) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [row(table.header), "|" + "---|" * len(table.header),
            *(row(r) for r in table.rows), ""]


def to_markdown(data: Mapping[str, Any], images: Mapping[str, Path]) -> str:
    lines = [f"# {data['title']}", "", f"Events: {data['event_size_text']}.", ""]
    for section in sections(data):
        lines += [f"## {section.title}", ""]
        for paragraph in section.text:
            lines += [paragraph, ""]
        for table in section.tables:
            lines += _table(table)
        for key in section.images:
            lines += [f"![{key}]({images[key].as_posix()})", ""]
        if section.code:
            lines += ["```json", section.code, "```", ""]
    return "\n".join(lines)
