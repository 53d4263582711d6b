"""Tables as text: plain columns for the terminal, GitHub markdown for the Dagster UI.

One cell formatter for both, no dependencies, predictable width."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any


def _cell(value: Any, width: int | None = None) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, float):
        text = f"{value:.3f}"
    elif isinstance(value, datetime):
        text = value.strftime("%Y-%m-%d %H:%M")
    elif isinstance(value, date):
        text = value.isoformat()
    else:
        text = str(value)
    text = " ".join(text.split())
    if width and len(text) > width:
        text = text[: width - 1] + "…"
    return text


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], *, max_width: int = 60
) -> str:
    """Left-aligned text columns, right-aligned numbers, long text cut at max_width."""
    cells = [[_cell(v, max_width) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows) and bool(rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]) for i, v in enumerate(values)
        ]
        return "  ".join(parts).rstrip()

    out = [line(list(headers)), line(["-" * w for w in widths])]
    out.extend(line(row) for row in cells)
    if not rows:
        out.append("(no rows)")
    return "\n".join(out)


def markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], *, max_width: int = 60
) -> str:
    """A GitHub-style table; pipes in values are escaped so a path can't break a row."""

    def cell(value: Any) -> str:
        return _cell(value, max_width).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
