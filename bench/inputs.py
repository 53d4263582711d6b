"""What the baselines start from: the same raw rows dbt reads, and the dbt vars.

Both baselines get the events as loaded (raw.usage_events) and, for predictions, the context
cluster assignment the warehouse computed (intermediate.int_contexts__clustered), so they are
compared on the aggregation logic only. Loading them is timed apart from the compute.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import yaml

from engram.config import PROJECT_ROOT


def dbt_vars() -> dict[str, Any]:
    """The `vars:` of dbt_project.yml, so the baselines use the thresholds dbt uses."""
    project = yaml.safe_load((PROJECT_ROOT / "dbt_project.yml").read_text())
    return dict(project.get("vars") or {})


@dataclass
class BaselineInputs:
    events: pd.DataFrame  # event_id, pattern_id, occurred_at, outcome_quality, files, context_hash
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
                   files_involved as files, context_hash
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
