"""The warehouse: where the DuckDB file is, how a writer opens it, and the raw schema.

This is the bottom of engram. Ingest, build, the journal, Dagster and the benchmarks all
open the warehouse for writing through `connect_for_write`, so lock contention, missing
folders and permission problems are told apart in one place, with one message each.

The raw schema holds the only tables Python writes; dbt reads them as sources.
Uniqueness (pattern_id, event_id, text_hash) is enforced by the loader's anti-joins and
checked by dbt tests rather than by primary keys: ART indexes over 10M keys cost memory and
DuckDB checks them eagerly inside a transaction, which fights the per-file upserts.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import duckdb

from ingest.embedder import EMBEDDING_DIM

DB_ENV_VAR = "ENGRAM_DB"
DB_FILENAME = "engram.duckdb"
# A source checkout keeps its warehouse in <checkout>/warehouse/ (gitignored); an installed
# engram keeps it in the user's data folder.
CHECKOUT_ROOT = Path(__file__).resolve().parent.parent


def in_checkout() -> bool:
    """True when running from a source checkout (the dbt project sits beside the code)."""
    return (CHECKOUT_ROOT / "dbt_project.yml").is_file() and (CHECKOUT_ROOT / "ingest").is_dir()


def default_db_path() -> Path:
    """warehouse/engram.duckdb in a source checkout, else $XDG_DATA_HOME/engram/engram.duckdb
    (~/.local/share/engram/engram.duckdb)."""
    if in_checkout():
        return CHECKOUT_ROOT / "warehouse" / DB_FILENAME
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home).expanduser() / "engram" / DB_FILENAME


def default_db_label() -> str:
    """How --help names the default, short enough for one line."""
    return "warehouse/engram.duckdb" if in_checkout() else str(default_db_path())


def resolve_db_path(db: str | os.PathLike[str] | None = None) -> Path:
    """The warehouse file: --db, else $ENGRAM_DB, else `default_db_path()`.

    Relative paths are taken from the current directory, as a user typing them expects;
    the default is anchored so it does not depend on where you stand.
    """
    if db:
        return Path(db).expanduser().resolve()
    from_env = os.environ.get(DB_ENV_VAR)
    if from_env:
        return Path(from_env).expanduser().resolve()
    return default_db_path()


# The build's memory budget for DuckDB (profiles.yml's memory_limit reads the same variable):
# every other connection that does bulk work on the warehouse (publishing the serving copy,
# compacting) stays inside it too.
MEMORY_LIMIT = os.environ.get("ENGRAM_MEMORY_LIMIT", "3GB")


def relations(con: duckdb.DuckDBPyConnection, catalog: str) -> dict[str, str]:
    """{schema.name: 'BASE TABLE' | 'VIEW'} of one attached database."""
    rows = con.execute(
        "select table_schema || '.' || table_name, table_type "
        "from information_schema.tables where table_catalog = ?",
        [catalog],
    ).fetchall()
    return {str(name): str(kind) for name, kind in rows}


def sql_string(value: str | os.PathLike[str]) -> str:
    """A SQL string literal with quotes doubled: for the few statements (ATTACH, COPY) that
    take no parameters. Paths are never formatted into SQL any other way."""
    return "'" + str(value).replace("'", "''") + "'"


class WarehouseError(Exception):
    """The warehouse cannot be opened: the message says why and what to do."""

    def __init__(self, db_path: Path, message: str, detail: str = "") -> None:
        self.db_path = db_path
        super().__init__(f"{message}\n  {detail}" if detail else message)


class WarehouseBusy(WarehouseError):
    """Another process holds the write lock (an ingest, a build, Dagster)."""

    def __init__(self, db_path: Path, detail: str = "") -> None:
        super().__init__(
            db_path,
            f"cannot open {db_path} for writing: another process is using it "
            "(an ingest or a dbt build?). Wait for it to finish and try again.",
            detail,
        )


def _nearest_existing(path: Path) -> Path | None:
    """`path` or its nearest ancestor that exists (None if even that cannot be checked)."""
    for candidate in (path, *path.parents):
        try:
            if candidate.exists():
                return candidate
        except OSError:
            return None
    return None


def explain_open_failure(db_path: Path, exc: BaseException, *, write: bool) -> WarehouseError:
    """Tell a held lock from a folder in the file's place, a file in the folder's place, a
    permission problem, a missing folder or a file that is not a DuckDB database; each gets
    its own message."""
    detail = " ".join(str(exc).split())
    lowered = detail.lower()
    mode = "for writing" if write else "for reading"
    if db_path.is_dir():
        return WarehouseError(
            db_path, f"cannot open {db_path}: it is a directory, not a warehouse file", detail
        )
    existing = _nearest_existing(db_path.parent)
    if existing is not None and not existing.is_dir():
        return WarehouseError(
            db_path,
            f"cannot open {db_path}: {existing} is a file, not a folder, so the warehouse "
            "cannot be created under it",
            detail,
        )
    if "conflicting lock" in lowered or "could not set lock" in lowered:
        return WarehouseBusy(db_path, detail)
    if isinstance(exc, PermissionError) or "permission denied" in lowered:
        target = db_path if db_path.exists() else existing or db_path.parent
        return WarehouseError(
            db_path, f"cannot open {db_path} {mode}: permission denied on {target}", detail
        )
    if not db_path.parent.is_dir():
        return WarehouseError(
            db_path, f"cannot open {db_path}: the folder {db_path.parent} does not exist", detail
        )
    if "read-only file system" in lowered:
        return WarehouseError(db_path, f"cannot open {db_path} {mode}: read-only file system")
    if "not a valid duckdb database" in lowered or "unable to read" in lowered:
        return WarehouseError(
            db_path, f"cannot open {db_path}: the file is not a DuckDB database", detail
        )
    return WarehouseError(db_path, f"cannot open {db_path} {mode}", detail)


def connect_for_write(db_path: Path) -> duckdb.DuckDBPyConnection:
    """Open (creating it and its folder if needed) the warehouse for writing, with a clear
    error when it cannot be: another process holds it, permission denied, not a file."""
    db_path = Path(db_path)
    if db_path.is_dir():
        raise explain_open_failure(
            db_path, IsADirectoryError(errno.EISDIR, "is a directory"), write=True
        )
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise explain_open_failure(db_path, exc, write=True) from None
    try:
        con = duckdb.connect(str(db_path))
    except (duckdb.Error, OSError) as exc:
        raise explain_open_failure(db_path, exc, write=True) from None
    try:
        ensure_raw_schema(con)
    except duckdb.Error as exc:
        con.close()
        raise explain_open_failure(db_path, exc, write=True) from None
    return con


def connect_for_read(db_path: Path) -> duckdb.DuckDBPyConnection:
    """The warehouse read-only, with the same clear errors as `connect_for_write`."""
    db_path = Path(db_path)
    if not db_path.exists():
        raise WarehouseError(
            db_path,
            f"no warehouse at {db_path}: run `engram ingest PATH` and `engram build` first, "
            f"or point --db / ${DB_ENV_VAR} at one",
        )
    try:
        return duckdb.connect(str(db_path), read_only=True)
    except (duckdb.Error, OSError) as exc:
        raise explain_open_failure(db_path, exc, write=False) from None


RAW_DDL = f"""
create schema if not exists raw;

create table if not exists raw.patterns (
    pattern_id        varchar not null,
    description       varchar not null,
    description_hash  varchar not null,   -- sha256 of the description: key into raw.embeddings
    pattern_type      varchar,
    first_seen        timestamp,          -- UTC
    metadata          json,
    source_file       varchar not null,
    source_line       bigint not null,
    run_id            varchar not null,
    loaded_at         timestamp not null  -- UTC
);

create table if not exists raw.usage_events (
    event_id          varchar not null,
    pattern_id        varchar not null,
    session_id        varchar not null,
    occurred_at       timestamp not null, -- the event's timestamp, converted to UTC
    outcome_quality   double not null,
    files_involved    varchar[] not null,
    tools_used        varchar[] not null,
    context           varchar,
    context_hash      varchar,            -- sha256 of context: key into raw.embeddings
    project_id        varchar not null,
    source_file       varchar not null,
    source_line       bigint not null,
    run_id            varchar not null,
    loaded_at         timestamp not null
);

create table if not exists raw.embeddings (
    text_hash         varchar not null,   -- sha256 hex of the UTF-8 text
    text              varchar not null,
    embedding         float[{EMBEDDING_DIM}] not null,  -- unit length
    model             varchar not null,   -- model:backend tag (ingest.embedder.make_tag)
    embedded_at       timestamp not null
);

create table if not exists raw.embedding_runs (
    -- one row per completed embed pass: from then on every referenced text has a vector
    -- under `model`. The newest row's tag is the one the marts read (stg_patterns,
    -- stg_contexts), so vectors of two backends never meet in one mart.
    model             varchar not null,
    texts_referenced  bigint not null,
    texts_embedded    bigint not null,
    finished_at       timestamp not null
);

create table if not exists raw.rejected_records (
    run_id            varchar not null,
    source_file       varchar not null,
    line_number       bigint not null,    -- 1-based line where the record starts
    record_kind       varchar,            -- pattern, event, supersession (import), or null
    field             varchar,            -- the offending field, null for whole-record problems
    reason            varchar not null,
    raw_text          varchar not null,   -- the record as read (truncated past 64 KiB)
    raw_hash          varchar not null,
    rejected_at       timestamp not null
);

create table if not exists raw.rejected_files (
    -- a file that could not be read at all (permission denied, a folder or pipe in its
    -- place, an I/O error, UTF-16, a name that is not UTF-8): nothing of it was loaded.
    -- One row per run that tried it; a file that loads later also appears in ingested_files.
    run_id            varchar not null,
    source_file       varchar not null,
    reason            varchar not null,
    size_bytes        bigint,             -- null when even its size could not be read
    rejected_at       timestamp not null
);

create table if not exists raw.ingested_files (
    run_id            varchar not null,
    source_file       varchar not null,
    content_sha256    varchar not null,
    size_bytes        bigint not null,
    records_read      bigint not null,
    records_loaded    bigint not null,
    records_skipped   bigint not null,
    records_rejected  bigint not null,
    ingested_at       timestamp not null
);

create table if not exists raw.ingest_runs (
    run_id            varchar not null,
    started_at        timestamp not null,
    finished_at       timestamp,
    status            varchar not null,   -- running, succeeded, failed, abandoned
    files_seen        bigint,
    records_read      bigint,
    records_loaded    bigint,
    records_skipped   bigint,
    records_rejected  bigint,
    texts_embedded    bigint,
    texts_cached      bigint,
    error             varchar,
    engram_version    varchar
);
create table if not exists raw.journal_offsets (
    -- how far each journal segment (ingest/journal.py) has been taken in: updated in the
    -- same transaction as the rows of its lines, so each line loads exactly once
    journal_file      varchar not null,   -- the segment's file name, journal-YYYYMMDD.jsonl
    byte_offset       bigint not null,    -- just past the last line taken in
    lines             bigint not null,    -- lines taken in so far
    updated_at        timestamp not null
);

create table if not exists raw.recommendations (
    -- one row per `engram recommend` / Memory.recommend / MCP recommend_patterns call
    recommendation_id varchar not null,
    created_at        timestamp not null, -- UTC
    task              varchar not null,
    strategy          varchar not null,   -- best, cautious, explore
    seed              bigint,             -- Thompson sampling seed (explore)
    n_candidates      bigint not null,
    source_file       varchar not null,
    source_line       bigint not null,
    loaded_at         timestamp not null
);

create table if not exists raw.recommendation_candidates (
    recommendation_id   varchar not null,
    rank                bigint not null,  -- 1 = shown first
    pattern_id          varchar not null,
    score               double not null,  -- what the strategy ranked by
    propensity          double not null,  -- P(shown first) under the strategy used
    propensity_best     double,           -- ... under each strategy, for off-policy estimates
    propensity_cautious double,
    propensity_explore  double,
    predicted_success   double,
    declining           boolean not null
);

create table if not exists raw.recommendation_links (
    -- a usage event recorded with the recommendation_id of the advice it followed
    event_id          varchar not null,
    recommendation_id varchar not null,
    source_file       varchar not null,
    source_line       bigint not null,
    loaded_at         timestamp not null
);

create table if not exists raw.pattern_supersessions (
    -- `engram merge-patterns KEEP DROP`: DROP's events count toward KEEP in every mart.
    -- Rows are never deleted: `engram unmerge DROP` sets revoked_at. Input is never touched.
    supersession_id     varchar not null,
    kept_pattern_id     varchar not null,
    dropped_pattern_id  varchar not null,
    reason              varchar,
    recorded_at         timestamp not null,  -- UTC
    revoked_at          timestamp            -- UTC; null while the merge stands
);
"""


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the raw tables if they do not exist (idempotent)."""
    con.execute(RAW_DDL)
