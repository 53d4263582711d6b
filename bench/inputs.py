"""What the baselines start from: the same raw rows dbt reads, and the dbt vars.

Both baselines get the events as loaded (raw.usage_events) and, for predictions, the context
cluster assignment the warehouse computed (intermediate.int_contexts__clustered), so they are
compared on the aggregation logic only. Loading them is timed apart from the compute.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from engram.project import dbt_vars  # the baselines use the thresholds dbt uses

__all__ = ["BaselineInputs", "dbt_vars", "load_inputs"]


@dataclass
class BaselineInputs:
    events: (
        pd.DataFrame
    )  # event_id, pattern_id, occurred_at, outcome_quality, files, context_hash, project_id
    contexts: pd.DataFrame  # context_hash, context_cluster_id, context_cluster_label
    pattern_ids: pd.DataFrame  # pattern_id of every loaded pattern (predictions skip others)


def _has_table(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_schema = ? "
            "and table_name = ?",
            [schema, name],
        ).fetchone()[0]  # type: ignore[index]
    )


def load_inputs(db_path: Path) -> BaselineInputs:
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        events = con.execute(
            """
            select event_id, pattern_id, occurred_at, outcome_quality,
                   files_involved as files, context_hash, project_id
            from raw.usage_events
            """
        ).df()
        if _has_table(con, "intermediate", "int_contexts__clustered"):
            contexts = con.execute(
                "select context_hash, context_cluster_id, context_cluster_label "
                "from intermediate.int_contexts__clustered"
            ).df()
        else:
            contexts = pd.DataFrame(
                {"context_hash": [], "context_cluster_id": [], "context_cluster_label": []}
            )
        pattern_ids = con.execute("select pattern_id from raw.patterns").df()
    finally:
        con.close()
    return BaselineInputs(events, contexts, pattern_ids)
