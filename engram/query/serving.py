"""The read-only serving copy: what queries open, so a writer never blocks a reader.

DuckDB allows one writing process or many reading ones per file, never both. `engram
build` (ingest, dbt) holds the warehouse for minutes; so after each successful build it
publishes a new, separate DuckDB file with the marts and what queries need, plus the
vector indexes, into a fresh folder, then switches a pointer file atomically:

    <warehouse dir>/<warehouse stem>.serving/
        CURRENT.json                        {"build_id": ..., "directory": "build-<id>", ...}
        build-<id>/engram_serving.duckdb        marts.*, staging.stg_contexts, serving.* tables
        build-<id>/patterns.*, contexts.*   IVF index (leaf centroids) + ids + vectors + manifest

Readers resolve CURRENT.json and open that file read_only; it is never written again, so
any number of processes read it while the warehouse is being written. The previous build
stays on disk (KEEP_BUILDS), so a reader that resolved the pointer just before a switch
still finds its files.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np

from engram.query.errors import ServingError
from ingest import __version__
from ingest.embedder import EMBEDDING_DIM
from ingest.warehouse import sql_string

SERVING_FILE = "engram_serving.duckdb"  # catalog name must differ from its schemas
CURRENT_FILE = "CURRENT.json"
KEEP_BUILDS = 2
PARTIAL_MAX_AGE_S = 3600  # an unfinished publish older than this is debris
_ALIAS = "engram_serving_copy"

# Copied besides every marts table, when present: (schema.table, order by for lookups).
EXTRA_TABLES: tuple[tuple[str, str], ...] = (
    ("staging.stg_contexts", "context_hash"),
    ("intermediate.int_contexts__clustered", "context_cluster_id, context_hash"),
    ("staging.stg_embedding_model", ""),  # which variant the vectors are (Reader checks it)
)
# Marts sorted on their lookup key so DuckDB's zone maps skip most row groups at 1M rows.
# predict's evidence from one past task text: its CONTEXT_EVIDENCE_CAP most-used patterns.
# A task text shared by thousands of patterns would otherwise make every predict near it
# aggregate hundreds of thousands of rows (160 ms at 10M events over 1,000 texts); the
# patterns left out have few uses there, so their evidence would be small beside their prior.
CONTEXT_EVIDENCE_CAP = 200

MART_ORDER: dict[str, str] = {
    "dim_patterns": "pattern_id",
    "pattern_trends": "pattern_id, week",
    "pattern_trend_summary": "pattern_id",
    "pattern_predictions": "context_cluster_id, pattern_id",
    "pattern_project_predictions": "project_id, context_cluster_id, pattern_id",
    "pattern_similar_pairs": "pattern_id, rank",
    "pattern_clusters": "cluster_id, pattern_id",
    "file_cooccurrence": "project_id, file_a, file_b",
}


@dataclass(frozen=True)
class ServingCopy:
    build_id: str
    directory: Path
    database: Path
    published_at: str


@dataclass
class PublishResult:
    build_id: str
    directory: Path
    database: Path
    tables: list[str] = field(default_factory=list)
    n_patterns: int = 0
    n_contexts: int = 0
    seconds: float = 0.0
    removed: list[Path] = field(default_factory=list)


def serving_root(db_path: Path) -> Path:
    """The folder holding a warehouse's serving copies (one per warehouse file)."""
    db_path = Path(db_path)
    return db_path.parent / f"{db_path.stem}.serving"


def new_build_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f") + "-" + uuid.uuid4().hex[:6]


def current(db_path: Path) -> ServingCopy | None:
    """The published copy CURRENT.json names, or None if none was published (or it vanished)."""
    root = serving_root(db_path)
    try:
        pointer = json.loads((root / CURRENT_FILE).read_text())
    except (OSError, ValueError):
        return None
    directory = root / pointer["directory"]
    database = directory / SERVING_FILE
    if not database.exists():
        return None
    return ServingCopy(
        build_id=pointer["build_id"],
        directory=directory,
        database=database,
        published_at=pointer.get("published_at", ""),
    )


# What a reader's connection may do: read the one database it opened, nothing else. With
# external access off, DuckDB refuses every file and network path (ATTACH, COPY ... TO,
# EXPORT DATABASE, read_csv/read_text/glob, INSTALL/LOAD); the database itself is opened
# read-only, so no write reaches it; and once `lock_down` has run, no SET/RESET/PRAGMA can
# turn any of this back on. Python UDFs such as embed() still work: they are registered
# before the lock and run inside the process.
SANDBOX_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
}


def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """Freeze the connection's configuration (call after registering UDFs): from now on
    SET, RESET and configuration PRAGMAs fail."""
    con.execute("set lock_configuration = true")


def connect_sandboxed(path: Path) -> duckdb.DuckDBPyConnection:
    """`path` opened read-only with SANDBOX_CONFIG (still to be locked with lock_down)."""
    return duckdb.connect(str(path), read_only=True, config=SANDBOX_CONFIG)


def connect_reader(db_path: Path) -> tuple[duckdb.DuckDBPyConnection, ServingCopy | None]:
    """A sandboxed read-only connection to the current serving copy, else to the warehouse
    itself (see SANDBOX_CONFIG; the caller registers its UDFs, then calls lock_down).

    Never takes a write lock. Raises ServingError with a one-line reason when neither can
    be opened.
    """
    db_path = Path(db_path)
    for _ in range(3):  # the pointer may move between resolving it and opening the file
        copy = current(db_path)
        if copy is None:
            break
        try:
            return connect_sandboxed(copy.database), copy
        except duckdb.IOException:
            time.sleep(0.05)
    if not db_path.exists():
        raise ServingError(
            f"no warehouse at {db_path}: run `engram ingest PATH` and `engram build` first, "
            "or point --db / $ENGRAM_DB at one"
        )
    try:
        return connect_sandboxed(db_path), None
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise ServingError(
                "warehouse is being written and no serving copy has been published yet; "
                "run `engram build` (it publishes one) and try again"
            ) from exc
        raise ServingError(f"cannot open {db_path}: {exc}") from exc


def _relations(con: duckdb.DuckDBPyConnection, catalog: str) -> dict[str, str]:
    rows = con.execute(
        """
        select table_schema || '.' || table_name, table_type
        from information_schema.tables where table_catalog = ?
        """,
        [catalog],
    ).fetchall()
    return {name: kind for name, kind in rows}


def read_vectors(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids, float32 matrix) from a query selecting (id, embedding float[384])."""
    table = con.sql(sql).to_arrow_table()
    ids = np.asarray(table.column(0).to_pylist(), dtype=str)
    if len(ids) == 0:
        return ids, np.zeros((0, EMBEDDING_DIM), np.float32)
    column = table.column(1).combine_chunks()
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return ids, np.asarray(flat, dtype=np.float32).reshape(len(ids), EMBEDDING_DIM)


def pattern_vectors_sql(schema_prefix: str = "") -> str:
    return (
        f"select pattern_id, embedding from {schema_prefix}marts.dim_patterns "
        "where embedding is not null order by pattern_id"
    )


def context_vectors_sql(schema_prefix: str = "") -> str:
    return (
        f"select context_hash, embedding from {schema_prefix}staging.stg_contexts "
        "where embedding is not null order by context_hash"
    )


def publish(db_path: Path, *, build_id: str | None = None, ann: bool = True) -> PublishResult:
    """Write a new serving copy of db_path's marts + vector indexes, then point CURRENT at it.

    Run it when no other process writes the warehouse (the build does, right after dbt).
    """
    from engram.query.index import build_index, fingerprint

    started = time.perf_counter()
    db_path = Path(db_path)
    build_id = build_id or new_build_id()
    root = serving_root(db_path)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"build-{build_id}"
    partial = root / f".build-{build_id}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    result = PublishResult(build_id, final, final / SERVING_FILE)
    try:
        con = duckdb.connect(str(db_path), read_only=True)
    except duckdb.IOException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise ServingError(f"cannot read {db_path} to publish it: {exc}") from exc
    try:
        catalog = con.execute("select current_database()").fetchone()[0]  # type: ignore[index]
        relations = _relations(con, catalog)
        con.execute(f"attach {sql_string(partial / SERVING_FILE)} as {_ALIAS} (read_write)")
        for schema in ("marts", "staging", "intermediate", "serving"):
            con.execute(f"create schema {_ALIAS}.{schema}")
        copies = [
            (name, MART_ORDER.get(name.split(".", 1)[1]))
            for name in sorted(relations)
            if name.startswith("marts.")
        ]
        copies += [(name, order) for name, order in EXTRA_TABLES if name in relations]
        for name, order in copies:
            order_by = f" order by {order}" if order else ""
            con.execute(f"create table {_ALIAS}.{name} as select * from {name}{order_by}")
            result.tables.append(name)
        # ART indexes for point lookups by key lists (`key in (...)`), where zone maps
        # cannot skip anything: predict's nearest task texts and its shortlisted patterns
        point_lookups = (
            ("staging.stg_contexts", "context_hash"),
            ("intermediate.int_contexts__clustered", "context_hash"),
            ("marts.dim_patterns", "pattern_id"),
        )
        for name, key in point_lookups:
            if name in result.tables:
                index_name = f"{name.split('.')[1]}_{key}"
                con.execute(f"create index {index_name} on {_ALIAS}.{name} ({key})")
        _serving_tables(con, relations, result)

        indexes = []
        if "marts.dim_patterns" in relations:
            indexes.append(("patterns", pattern_vectors_sql(f"{_ALIAS}.")))
        if "staging.stg_contexts" in relations:
            indexes.append(("contexts", context_vectors_sql(f"{_ALIAS}.")))
        meta: dict[str, object] = {}
        for name, sql in indexes:
            ids, vectors = read_vectors(con, sql)
            manifest = build_index(partial, name, ids, vectors, build_id, ann=ann)
            meta[f"n_{name}"] = manifest.n
            meta[f"{name}_fingerprint"] = fingerprint(ids)
        result.n_patterns = int(meta.get("n_patterns", 0))  # type: ignore[call-overload]
        result.n_contexts = int(meta.get("n_contexts", 0))  # type: ignore[call-overload]
        published_at = datetime.now(UTC).isoformat(timespec="seconds")
        con.execute(
            f"""
            create table {_ALIAS}.serving.meta as select
                ?::varchar as build_id, ?::varchar as published_at, ?::varchar as warehouse,
                ?::varchar as engram_version, ?::bigint as n_patterns,
                ?::varchar as patterns_fingerprint, ?::bigint as n_contexts,
                ?::varchar as contexts_fingerprint
            """,
            [
                build_id,
                published_at,
                str(db_path),
                __version__,
                result.n_patterns,
                meta.get("patterns_fingerprint"),
                result.n_contexts,
                meta.get("contexts_fingerprint"),
            ],
        )
        con.execute(f"checkpoint {_ALIAS}")
        con.execute(f"detach {_ALIAS}")
    except BaseException:
        con.close()
        shutil.rmtree(partial, ignore_errors=True)
        raise
    con.close()
    os.replace(partial, final)
    pointer = {
        "build_id": build_id,
        "directory": final.name,
        "published_at": published_at,
        "warehouse": str(db_path),
    }
    tmp = root / f".{CURRENT_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(pointer, indent=2))
    os.replace(tmp, root / CURRENT_FILE)
    result.removed = _prune(root, keep=final)
    result.seconds = time.perf_counter() - started
    return result


def _serving_tables(
    con: duckdb.DuckDBPyConnection, relations: dict[str, str], result: PublishResult
) -> None:
    """Precomputed lookups queries need: per-context pattern outcomes, warehouse row counts,
    and how far the journal had been taken in (so the read-your-writes overlay shows only
    journal lines the marts do not hold yet)."""
    if "raw.journal_offsets" in relations:
        con.execute(
            f"create table {_ALIAS}.serving.journal_offsets as "
            "select journal_file, byte_offset, lines from raw.journal_offsets"
        )
    if "staging.stg_usage_events" in relations:
        con.execute(
            f"""
            create table {_ALIAS}.serving.context_patterns as
            with per_pair as (
                select context_hash, project_id, pattern_id, count(*)::bigint as n_events,
                       sum(outcome_quality)::double as sum_quality
                from staging.stg_usage_events
                where context_hash is not null and outcome_quality is not null
                group by context_hash, project_id, pattern_id
            )
            select context_hash, project_id, pattern_id, n_events, sum_quality
            from per_pair
            qualify row_number() over (
                partition by context_hash, project_id order by n_events desc, pattern_id
            ) <= {CONTEXT_EVIDENCE_CAP}
            order by context_hash, project_id, pattern_id
            """
        )
        # predict looks up ~20 scattered task texts: an ART index beats zone maps there
        con.execute(
            f"create index context_patterns_hash on {_ALIAS}.serving.context_patterns "
            "(context_hash)"
        )
        result.tables.append("serving.context_patterns")
    counts = [
        ("patterns", "raw.patterns", "count(*)"),
        ("usage events", "raw.usage_events", "count(*)"),
        ("distinct task texts", "raw.usage_events", "count(distinct context_hash)"),
        ("embedded texts (cache)", "raw.embeddings", "count(*)"),
        ("rejected records", "raw.rejected_records", "count(*)"),
        ("ingest runs", "raw.ingest_runs", "count(*)"),
    ]
    present = [c for c in counts if c[1] in relations]
    if present:
        union = " union all ".join(
            f"select '{label}' as relation, {expr}::bigint as n_rows from {rel}"
            for label, rel, expr in present
        )
        con.execute(f"create table {_ALIAS}.serving.row_counts as {union}")
        result.tables.append("serving.row_counts")


def _prune(root: Path, keep: Path) -> list[Path]:
    """Drop all but the newest KEEP_BUILDS builds, and partial publishes left by crashes."""
    removed: list[Path] = []
    builds = sorted((p for p in root.glob("build-*") if p.is_dir()), key=lambda p: p.name)
    for old in builds[:-KEEP_BUILDS]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)
            removed.append(old)
    now = time.time()
    for debris in root.glob(".build-*.partial"):
        if now - debris.stat().st_mtime > PARTIAL_MAX_AGE_S:
            shutil.rmtree(debris, ignore_errors=True)
            removed.append(debris)
    return removed
