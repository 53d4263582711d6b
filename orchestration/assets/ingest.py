"""Raw layer: the inbox ingest (one multi-asset; its outputs carry the dbt source keys so
the dbt models hang off them in the lineage) and the embedding cache."""

from collections.abc import Iterator
from datetime import UTC, datetime
from functools import lru_cache

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)

from engram.render import markdown_table
from ingest.embedder import Embedder
from ingest.embeddings import embed_missing
from ingest.journal import journal_dir
from ingest.loader import FileReport, ingest_paths
from ingest.warehouse import connect_for_write
from orchestration.resources import Inbox, Warehouse

WAREHOUSE_POOL = "engram_warehouse"
RAW_GROUP = "raw"

RAW_TABLES: dict[str, str] = {
    "patterns": "Validated patterns, one row per pattern id (the latest version sent).",
    "usage_events": "Validated usage events, one row per event id.",
    "rejected_records": "Quarantine: every record that was not loaded, with its reason.",
    "ingested_files": "Ledger of committed files by content hash; re-ingest is a no-op.",
    "ingest_runs": "One row per ingest run with its totals.",
    # taken in from the journal (`engram recommend` / MCP logs them there)
    "recommendations": "Logged recommendations: task, strategy, Thompson seed.",
    "recommendation_candidates": "The candidates each recommendation showed, with propensities.",
    "recommendation_links": "Outcomes recorded with the recommendation_id they followed.",
}
RAW_KEYS: dict[str, AssetKey] = {name: AssetKey(["raw", name]) for name in RAW_TABLES}
EMBEDDINGS_KEY = AssetKey(["raw", "embeddings"])
EMBEDDING_RUNS_KEY = AssetKey(["raw", "embedding_runs"])


def _row_counts(warehouse: Warehouse, tables: list[str]) -> dict[str, int]:
    con = warehouse.connect_read()
    try:
        return {
            table: int(con.execute(f"select count(*) from raw.{table}").fetchone()[0])  # type: ignore[index]
            for table in tables
        }
    finally:
        con.close()


@multi_asset(
    specs=[
        AssetSpec(key, description=RAW_TABLES[name], group_name=RAW_GROUP, kinds={"duckdb"})
        for name, key in RAW_KEYS.items()
    ],
    pool=WAREHOUSE_POOL,
    can_subset=False,
)
def inbox_ingest(
    context: AssetExecutionContext, warehouse: Warehouse, inbox: Inbox
) -> Iterator[MaterializeResult]:
    """Ingest every ready file in the inbox (each file in its own transaction) and move each
    committed file to processed/. Bad records are quarantined, never a failure."""
    files = inbox.pending()
    batch = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + f"-{context.run.run_id[:8]}"
    archived: list[tuple[FileReport, str]] = []

    def archive(report: FileReport) -> None:
        if report.path.parent == journal_dir(warehouse.path):  # stays; its offset moved
            return
        if report.file_rejected is not None:  # stays in the inbox, retried once it is fixed
            context.log.warning(f"{report.name}: file rejected: {report.file_rejected}")
            return
        archived.append((report, str(inbox.archive(report.path, batch))))

    if files:
        context.log.info(f"ingesting {len(files)} file(s) from {inbox.root}")
    else:
        context.log.info(f"no new files in {inbox.root}")
    # the journal (what agents recorded with `engram record` / MCP) is taken in either way
    report = ingest_paths(files, warehouse.path, embed=False, on_file=archive)
    run_id: str | None = report.run_id
    totals = {name: report.total(name) for name in ("read", "loaded", "skipped", "rejected")}

    counts = _row_counts(warehouse, list(RAW_TABLES))
    files_md = markdown_table(
        ["file", "read", "loaded", "skipped", "rejected", "moved to"],
        [[r.path.name, r.read, r.loaded, r.skipped, r.rejected, moved] for r, moved in archived],
    )
    common = {"ingest_run_id": run_id or "none (inbox empty)", "inbox": str(inbox.root)}
    extra: dict[str, dict[str, object]] = {
        "patterns": {},
        "usage_events": {"records_loaded": totals["loaded"]},
        "rejected_records": {
            "rejected_this_run": totals["rejected"],
            "records_read_this_run": totals["read"],
        },
        "ingested_files": {
            "files_this_run": len(archived),
            "files": MetadataValue.md(files_md) if archived else "none",
        },
        "ingest_runs": {f"records_{name}": value for name, value in totals.items()},
    }
    for name, key in RAW_KEYS.items():
        yield MaterializeResult(
            asset_key=key,
            metadata={"dagster/row_count": counts[name], **common, **extra.get(name, {})},
        )


@lru_cache(maxsize=1)
def _embedder() -> Embedder:
    """One model load per process (the in-process executor runs every step in one)."""
    return Embedder()


@multi_asset(
    specs=[
        AssetSpec(
            EMBEDDINGS_KEY,
            deps=[RAW_KEYS["patterns"], RAW_KEYS["usage_events"]],
            group_name=RAW_GROUP,
            kinds={"duckdb", "python"},
            description="all-MiniLM-L6-v2 vectors for every distinct description and "
            "context, keyed by sha256 of the text and the model:backend tag (README "
            "'Embedding backends'); only texts not yet cached under this machine's backend "
            "are embedded.",
        ),
        AssetSpec(
            EMBEDDING_RUNS_KEY,
            deps=[EMBEDDINGS_KEY],
            group_name=RAW_GROUP,
            kinds={"duckdb"},
            description="One row per completed embed pass; the newest pass's tag is the "
            "one the marts read (stg_embedding_model).",
        ),
    ],
    pool=WAREHOUSE_POOL,
    can_subset=False,
)
def embeddings(context: AssetExecutionContext, warehouse: Warehouse) -> Iterator[MaterializeResult]:
    """Both tables are written by one embed pass: the vectors, then the pass's record."""
    con = connect_for_write(warehouse.path)
    try:
        stats = embed_missing(con, _embedder())
        rows = int(con.execute("select count(*) from raw.embeddings").fetchone()[0])  # type: ignore[index]
        runs = int(con.execute("select count(*) from raw.embedding_runs").fetchone()[0])  # type: ignore[index]
    finally:
        con.close()
    context.log.info(f"embedded {stats.texts_embedded} new text(s), {stats.texts_cached} cached")
    yield MaterializeResult(
        asset_key=EMBEDDINGS_KEY,
        metadata={
            "dagster/row_count": rows,
            "texts_embedded": stats.texts_embedded,
            "texts_cached": stats.texts_cached,
            "texts_referenced": stats.texts_referenced,
            "embedding_model": stats.model,
        },
    )
    yield MaterializeResult(
        asset_key=EMBEDDING_RUNS_KEY,
        metadata={"dagster/row_count": runs, "embedding_model": stats.model},
    )
