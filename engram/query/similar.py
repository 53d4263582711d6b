"""Which past patterns are semantically similar to this text, or to this pattern?

Vector search over the description embeddings (engram.query.index: IVF when the index is
current, exact otherwise), then the patterns' details from marts.dim_patterns. A pattern
merged into another (`engram merge-patterns`) is still found by its text, but its row names
the one it now counts toward (`superseded_by`), so nobody adopts the dropped wording.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from engram.query.errors import InvalidQuery, QueryError, check_k
from engram.query.reader import Reader

DETAIL_COLUMNS = (
    "pattern_id, description, success_rate, usage_count, cluster_id, cluster_label, "
    "pattern_type, metadata, superseded_by"
)


def find_similar(reader: Reader, text: str, k: int = 10) -> pd.DataFrame:
    """Patterns closest in meaning to text, best first."""
    k = check_k(k)
    query = reader.embed(text)
    reader.require("marts.dim_patterns")
    hits = reader.index("patterns").search(query, k, reader.search_mode)
    return pattern_rows(reader, hits.ids, {"similarity": hits.similarities})


def similar_to_pattern(reader: Reader, pattern_id: str, k: int = 10) -> pd.DataFrame:
    """Patterns closest in meaning to an existing pattern (itself excluded)."""
    k = check_k(k)
    reader.require("marts.dim_patterns")
    row = reader.con.execute(
        "select embedding from marts.dim_patterns where pattern_id = ?", [pattern_id]
    ).fetchone()
    if row is None:
        raise InvalidQuery(f"unknown pattern id {pattern_id!r}")
    if row[0] is None:
        raise QueryError(f"pattern {pattern_id!r} has no embedding yet: run `engram build`")
    hits = reader.index("patterns").search(np.asarray(row[0]), k + 1, reader.search_mode)
    keep = hits.ids != pattern_id
    return pattern_rows(reader, hits.ids[keep][:k], {"similarity": hits.similarities[keep][:k]})


def pattern_rows(reader: Reader, ids: np.ndarray, extra: dict[str, np.ndarray]) -> pd.DataFrame:
    """dim_patterns rows for `ids`, in that order, with the `extra` columns beside them."""
    # str even when empty: an empty list would make a float64 key that later merges reject
    ordered = pd.DataFrame({"pattern_id": pd.Series([str(i) for i in ids], dtype=str), **extra})
    if ordered.empty:
        return ordered.assign(description=[], success_rate=[], usage_count=[])
    details = reader.df(
        f"""
        select {DETAIL_COLUMNS}
        from marts.dim_patterns where pattern_id in (select unnest(?::varchar[]))
        """,
        [ordered["pattern_id"].tolist()],
    )
    merged = ordered.merge(details, on="pattern_id", how="left")
    front = ["pattern_id", "description", *extra.keys(), "success_rate", "usage_count"]
    return merged[front + [c for c in merged.columns if c not in front]]
