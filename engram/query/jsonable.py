"""Answers as plain JSON values: what `--json`, the MCP tools and `to_dict()` return."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def to_jsonable(value: Any) -> Any:
    """JSON-friendly scalars: numpy to Python, NaN and NA to None, dates to ISO strings."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.ndarray | list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if value is pd.NaT or value is pd.NA:
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A DataFrame as a list of JSON-friendly row dicts."""
    return [
        {key: to_jsonable(value) for key, value in row.items()}
        for row in frame.to_dict(orient="records")
    ]
