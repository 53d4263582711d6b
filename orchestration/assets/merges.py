"""raw.pattern_supersessions as an asset: merges are recorded by `engram merge-patterns` /
`engram unmerge` (engram/merges.py), not by a Dagster run, so materializing it only makes
sure the table exists (an older warehouse gains it) and reports what is recorded. It is
the dbt source stg_pattern_supersessions reads, so the lineage shows merges feeding
stg_usage_events and every mart below it."""

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, asset

from ingest.warehouse import connect_for_write
from orchestration.assets.ingest import RAW_GROUP, WAREHOUSE_POOL
from orchestration.resources import Warehouse

SUPERSESSIONS_KEY = AssetKey(["raw", "pattern_supersessions"])


@asset(
    key=SUPERSESSIONS_KEY,
    group_name=RAW_GROUP,
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    description="Merges recorded by `engram merge-patterns KEEP DROP...` (revoked by "
    "`engram unmerge`): the dropped patterns' events count toward the kept one in every mart.",
)
def pattern_supersessions(
    context: AssetExecutionContext, warehouse: Warehouse
) -> MaterializeResult:
    con = connect_for_write(warehouse.path)  # creates the table if the warehouse predates it
    try:
        total, in_force = con.execute(
            "select count(*), count(*) filter (where revoked_at is null) "
            "from raw.pattern_supersessions"
        ).fetchone()  # type: ignore[misc]
    finally:
        con.close()
    context.log.info(f"{in_force} merge(s) in force, {total} recorded")
    return MaterializeResult(
        metadata={"dagster/row_count": int(total), "merges_in_force": int(in_force)}
    )
