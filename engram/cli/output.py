"""How the CLI shows a DataFrame: a text table for people, JSON records for agents.

Both go through the same display types, so `--json` and the table agree on what a value
is (a count that DuckDB returned as a float is an integer; a midnight timestamp a date).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import orjson
import pandas as pd

from engram.query.jsonable import records, to_jsonable
from engram.render import format_table

COUNT_COLUMN = re.compile(r"(^n_|count|occurrences|events|degree|size|^rank$)")


def dumps(value: Any) -> str:
    """JSON text of an answer (numpy values, dates and NaN handled)."""
    return orjson.dumps(value, default=_default, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _default(value: Any) -> Any:
    plain = to_jsonable(value)
    return str(value) if plain is value else plain


def json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-friendly dicts, with the table's display types."""
    return records(display_types(frame))


def frame_table(frame: pd.DataFrame, columns: list[str] | None = None, max_rows: int = 1000) -> str:
    """A text table of `columns` (all when None), at most max_rows rows."""
    if columns:
        frame = frame[[c for c in columns if c in frame.columns]]
    frame = display_types(frame)
    rows = [[_cell(v) for v in row] for row in frame.head(max_rows).itertuples(index=False)]
    rows = [[_short(v) for v in row] for row in rows]
    text = format_table([str(c) for c in frame.columns], rows)
    if len(frame) > max_rows:
        text += f"\n... {len(frame) - max_rows} more rows (use --json or LIMIT)"
    return text


def display_types(frame: pd.DataFrame) -> pd.DataFrame:
    """Counts that arrive as floats (DuckDB HUGEINT sums) print as integers; week and other
    midnight-only timestamps print as dates."""
    frame = frame.copy()
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_float_dtype(column) and COUNT_COLUMN.search(str(name)):
            values = column.dropna()
            if len(values) and (values == values.round()).all():
                frame[name] = column.astype("Int64")
        elif pd.api.types.is_datetime64_any_dtype(column):
            values = column.dropna()
            if len(values) and (values == values.dt.normalize()).all():
                frame[name] = column.dt.date
    return frame


def _cell(value: Any) -> Any:
    """Python values for format_table (which formats datetimes and floats itself)."""
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, date):
        return value
    return to_jsonable(value)


def _short(value: Any) -> Any:
    if isinstance(value, list):
        return f"[{len(value)} values]" if len(value) > 8 else str(value)
    if isinstance(value, dict):
        return orjson.dumps(value).decode()
    return value
