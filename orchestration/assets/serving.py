"""Downstream of the marts: publish the read-only serving copy and vector indexes that
queries open (engram.query.serving), and show the headline insights on it."""

from pathlib import Path
from typing import Any

import duckdb
from dagster import AssetExecutionContext, AssetKey, MaterializeResult, asset

from engram.query.serving import EXTRA_TABLES, PREPARED_COPY_STEP
from orchestration.assets import handover
from orchestration.assets.dbt import engram_dbt
from orchestration.assets.ingest import WAREHOUSE_POOL
from orchestration.metadata import mart_insights
from orchestration.resources import Warehouse

SERVING_KEY = handover.SERVING_KEY
# What the serving copy copies besides the marts, read from the list the publish itself
# uses, so a table added there is a dependency here too.
_ALSO_READ = {AssetKey(name.split(".")) for name, _ in EXTRA_TABLES}
SERVING_DEPS = sorted(
    (key for key in engram_dbt.keys if key.path[0] == "marts" or key in _ALSO_READ),
    key=lambda key: key.to_user_string(),
)


def _result_metadata(result: object) -> dict[str, Any]:
    """PublishResult's fields, read defensively: the dataclass may grow or lose fields."""
    metadata: dict[str, Any] = {}
    for name in ("build_id", "n_patterns", "n_contexts"):
        value = getattr(result, name, None)
        if value is not None:
            metadata[name] = value
    for name in ("directory", "database"):
        value = getattr(result, name, None)
        if value is not None:
            metadata[name] = str(value)
    seconds = getattr(result, "seconds", None)
    if isinstance(seconds, int | float):
        metadata["publish_seconds"] = round(float(seconds), 2)
    steps = getattr(result, "step_seconds", None) or {}
    if PREPARED_COPY_STEP in steps:  # made beside dbt (orchestration.assets.handover)
        metadata["copy_previous_during_dbt_seconds"] = round(float(steps[PREPARED_COPY_STEP]), 2)
    tables = getattr(result, "tables", None)
    if tables:
        metadata["tables"] = ", ".join(str(t) for t in tables)
        metadata["n_tables"] = len(tables)
    return metadata


@asset(
    key=SERVING_KEY,
    deps=SERVING_DEPS,
    group_name="serving",
    kinds={"duckdb", "python"},
    pool=WAREHOUSE_POOL,
    description="Read-only serving copy of the marts plus ANN indexes, switched in atomically "
    "so readers never wait for the writer; then the warehouse is compacted when more than "
    "half of its file is free blocks.",
)
def serving_copy(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
    from engram.build import COMPACT_FREE_SHARE
    from engram.compact import maybe_compact
    from engram.query.serving import publish

    # the file copy this run's dbt step started, if it ran in this run (a run of the
    # serving asset alone copies in the publish)
    result = publish(warehouse.path, prepared=handover.take(context.run.run_id, warehouse.path))
    metadata = _result_metadata(result)
    # the same upkeep as `engram build`: give back the space of replaced tables once free
    # blocks pass COMPACT_FREE_SHARE of the warehouse file
    compacted = maybe_compact(warehouse.path, COMPACT_FREE_SHARE)
    if compacted is not None:
        metadata["compacted_mib_saved"] = round(compacted.saved_bytes / 2**20, 1)
    metadata["warehouse_mib"] = round(warehouse.path.stat().st_size / 2**20, 1)
    database = getattr(result, "database", None)
    source = Path(database) if database and Path(database).exists() else warehouse.path
    con = duckdb.connect(str(source), read_only=True)
    try:
        metadata.update(mart_insights(con).get("summary", {}))
    finally:
        con.close()
    context.log.info(f"published serving copy {metadata.get('build_id', '?')}")
    return MaterializeResult(metadata=metadata)
