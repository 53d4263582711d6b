"""Any read-only SQL against the serving copy, with embed('text') available.

The connection a Reader opens is sandboxed (engram.query.serving.connect_reader): it can
read the copy's tables and nothing else, so this is safe to hand to an agent.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from engram.query.errors import QueryError, check_text
from engram.query.reader import Reader


def run_sql(reader: Reader, query: str) -> pd.DataFrame:
    """The query's rows; a DuckDB error becomes one QueryError line."""
    query = check_text(query, "query")
    try:
        return reader.con.execute(query).df()
    except duckdb.Error as exc:
        message = " ".join(str(exc).split())
        raise QueryError(f"query failed: {message}") from exc
