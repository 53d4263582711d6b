"""Any read-only SQL against the serving copy, with embed('text') available.

Two walls, so an agent's generated SQL can read the marts and nothing else:
- the statement kinds are checked before anything runs: queries only (SELECT and its
  forms: WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE; EXPLAIN; PRAGMA and CALL of
  table functions); ATTACH, DETACH, COPY, EXPORT, SET, INSTALL/LOAD, CREATE, INSERT,
  UPDATE, DELETE, ... are refused by name;
- the connection itself is a sandbox (engram.query.serving.SANDBOX_CONFIG): read-only, no
  file or network access, configuration locked. It holds even if the first wall missed a
  statement kind.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from engram.query.errors import QueryError, check_text
from engram.query.reader import Reader

ALLOWED_STATEMENTS = frozenset(
    {
        duckdb.StatementType.SELECT,
        duckdb.StatementType.EXPLAIN,
        duckdb.StatementType.PRAGMA,
        duckdb.StatementType.CALL,
    }
)


def check_read_only(query: str) -> None:
    """Refuse any statement that is not a query, naming its kind."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise QueryError(f"query failed: {' '.join(str(exc).split())}") from exc
    for statement in statements:
        if statement.type not in ALLOWED_STATEMENTS:
            kind = statement.type.name
            raise QueryError(
                f"query failed: only read-only queries are allowed here (SELECT, WITH, "
                f"EXPLAIN, PRAGMA, CALL); this is a {kind} statement"
            )


def run_sql(reader: Reader, query: str) -> pd.DataFrame:
    """The query's rows; a refused statement or a DuckDB error becomes one QueryError line."""
    query = check_text(query, "query")
    check_read_only(query)
    try:
        return reader.con.execute(query).df()
    except duckdb.Error as exc:
        message = " ".join(str(exc).split())
        raise QueryError(f"query failed: {message}") from exc
