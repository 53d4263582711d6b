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
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np

from engram.query.errors import ServingError
from ingest import __version__
from ingest.embedder import EMBEDDING_DIM
from ingest.warehouse import MEMORY_LIMIT, sql_string
from ingest.warehouse import relations as warehouse_relations

if TYPE_CHECKING:
    from engram.query.index import Manifest

SERVING_FILE = "engram_serving.duckdb"  # catalog name must differ from its schemas
CURRENT_FILE = "CURRENT.json"
KEEP_BUILDS = 2
PARTIAL_MAX_AGE_S = 3600  # an unfinished publish older than this is debris
OWNER_FILE = ".owner"  # in a partial folder: the host, pid and start time of its writer
# PublishResult.step_seconds' entry for a copy of the previous file made beside the build
PREPARED_COPY_STEP = "copy previous, during the build"
CLAIM_PREFIX = ".claim-"  # a partial folder being made, before its rename (new_partial)
_ALIAS = "engram_serving_copy"

# Copied besides every marts table, when present: (schema.table, order by for lookups).
EXTRA_TABLES: tuple[tuple[str, str], ...] = (
    ("staging.stg_contexts", "context_hash"),
    ("intermediate.int_contexts__clustered", "context_cluster_id, context_hash"),
    ("staging.stg_embedding_model", ""),  # which variant the vectors are (Reader checks it)
    # what the copy's view marts.pattern_project_predictions reads (SERVED_VIEWS)
    ("intermediate.int_pattern_project_cells", "project_id, context_cluster_id, pattern_id"),
    ("intermediate.int_project_priors", "project_id"),
    # what the copy's view marts.pattern_clusters reads (SERVED_VIEWS)
    ("intermediate.int_patterns__clustered", "cluster_id, pattern_id"),
    ("intermediate.int_pattern_texts__described", "description_hash"),
    # what the copy's view marts.pattern_similar_pairs reads besides int_patterns__clustered
    ("intermediate.int_pattern_texts__neighbors", "description_hash, list_rank"),
    # what the copy's view marts.pattern_alerts reads besides marts.pattern_themes
    ("intermediate.int_pattern_alerts__found", "priority, pattern_id"),
    ("intermediate.int_theme_recent_use", "theme_id"),
    ("intermediate.int_theme_replacements", "theme_id, candidate_rank"),
    # what the copy's view marts.pattern_trends reads
    ("intermediate.int_pattern_weeks__aggregated", "pattern_id, week"),
)
# Marts sorted on their lookup key so DuckDB's zone maps skip most row groups at 1M rows.
# predict's evidence from one past task text: its CONTEXT_EVIDENCE_CAP most-used patterns.
# A task text shared by thousands of patterns would otherwise make every predict near it
# aggregate hundreds of thousands of rows (160 ms at 10M events over 1,000 texts); the
# patterns left out have few uses there, so their evidence would be small beside their prior.
CONTEXT_EVIDENCE_CAP = 200

# ART indexes for point lookups by key lists (`key in (...)`), where zone maps cannot skip
# anything: predict's nearest task texts and its shortlisted patterns.
POINT_LOOKUPS: dict[str, str] = {
    "staging.stg_contexts": "context_hash",
    "intermediate.int_contexts__clustered": "context_hash",
    "marts.dim_patterns": "pattern_id",
}

MART_ORDER: dict[str, str] = {
    "dim_patterns": "pattern_id",
    "pattern_trend_summary": "pattern_id",
    "pattern_predictions": "context_cluster_id, pattern_id",
    "pattern_project_predictions": "project_id, context_cluster_id, pattern_id",
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
    mode: str = "full"  # "incremental": started from the previous copy (publish)
    table_changes: dict[str, str] = field(default_factory=dict)  # name -> sync_table's word
    index_changes: dict[str, str] = field(default_factory=dict)  # name -> built/updated/linked
    # seconds per step: each table's sync, each index ("index patterns"), the copy of the
    # previous file ("copy previous"); what bench.refresh reports of a publish
    step_seconds: dict[str, float] = field(default_factory=dict)


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


# The copy's layout version: a publish reuses the previous copy only when it has the same
# (otherwise it starts from an empty file, as the first publish does).
SERVING_FORMAT = 2
# A table whose rows changed by more than this share is rewritten whole (sorted again for
# its zone maps) instead of having rows deleted and appended.
REWRITE_SHARE = 0.5
_ROW_HASH = "engram_serving_row_hash"  # the source's row hash, beside its columns while syncing
# aliases for whole rows in hash(): a table alias that is also a column name (a mart with a
# column `s`) would hash that column instead of the row
_SRC, _ROW = "engram_serving_source_row", "engram_serving_copy_row"
# (source table or query, order by, key for an ART index) per table of the copy
_Target = tuple[str, str, str | None]


def _hash_kind() -> str:
    """Which hash() the index's hashes files hold: DuckDB's, which may change by version."""
    return f"duckdb-{duckdb.__version__}"


def _vector_identity(
    con: duckdb.DuckDBPyConnection, follows: str | None, prefix: str = ""
) -> tuple[str, str]:
    """(the expression hashed per row to tell whether a row's vector changed, its
    hash_kind). A vector that is the embedding cache's for a text column under the active
    model (`follows`, as Scope.follows: the cache adds a text's vector once and never
    replaces it) is identified by that text's hash, the model named in the kind: hashing
    1M FLOAT[384] vectors took 2.6 s of a 10M-event refresh's index update, hashing their
    descriptions 0.6 s. Another model gives another kind, so the index is built again.
    Without one active model (an older warehouse), the vectors themselves are hashed."""
    if follows:
        try:
            models = con.execute(
                f"select embedding_model from {prefix}staging.stg_embedding_model"
            ).fetchall()
        except duckdb.Error:
            models = []
        if len(models) == 1 and models[0][0]:
            return f"hash({follows})", f"{_hash_kind()};{follows};{models[0][0]}"
    return "hash(embedding)", _hash_kind()


def _columns(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
    rows = con.execute(f"describe select * from {relation}").fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def _has_table(
    con: duckdb.DuckDBPyConnection, schema: str, table: str, database: str | None = None
) -> bool:
    """Whether `database` (None: the connection's own) has a table, not a view,
    `schema.table`."""
    row = con.execute(
        "select count(*) from duckdb_tables() "
        "where database_name = coalesce(?, current_database()) and schema_name = ? "
        "and table_name = ?",
        [database, schema, table],
    ).fetchone()
    return bool(row and row[0])


def _exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    """Whether the copy being written has the table `alias.schema.name`."""
    _, schema, table = qualified.split(".")
    return _has_table(con, schema, table, _ALIAS)


def _is_table(con: duckdb.DuckDBPyConnection, relation: str) -> bool:
    """Whether `schema.name` is a table (not a view) of the connection's own database."""
    if relation.count(".") != 1:
        return False
    schema, table = relation.split(".")
    return _has_table(con, schema, table)


def _create(con: duckdb.DuckDBPyConnection, qualified: str, source: str, target: _Target) -> None:
    _, order, key = target
    order_by = f" order by {order}" if order else ""
    con.execute(f"drop table if exists {qualified}")
    con.execute(f"create table {qualified} as select * from {source}{order_by}")
    if key:
        index_name = f"{qualified.split('.')[-1]}_{key}"
        con.execute(f"create index {index_name} on {qualified} ({key})")


def sync_table(con: duckdb.DuckDBPyConnection, name: str, target: _Target) -> str:
    """Make the copy's table `name` hold exactly the rows of its source; returns what it
    took: "created", "unchanged", "updated" (rows deleted/appended) or "rewritten".

    The source is read once, into a temporary table with each row's DuckDB hash() beside
    it: a view (pattern_trends: 33M rows at 10M events) re-runs its query on every read,
    and reading it twice was most of a publish. A table of the warehouse is read twice
    instead, its hashes with their rowids first, then the rows to append by rowid:
    staging every column of int_pattern_alerts__found (1.39M rows, 18 columns at 10M
    events) to append a few percent of them was most of its sync. When the row count and
    two order-free sums of the row hashes (xor, and the sum as a 128-bit integer) equal
    the copy's, the table is unchanged and nothing else is read. Otherwise rows of the
    copy whose hash the source lacks are deleted and source rows whose hash the copy lacks
    are appended. When the columns differ, more than REWRITE_SHARE of the rows changed,
    or the changed source has duplicate rows (a hash set cannot count them), the table is
    rewritten whole instead. The result is checked by row count; a mismatch also rewrites it.
    """
    source_relation, _, _ = target
    source = f"({source_relation})" if " " in source_relation else source_relation
    qualified = f"{_ALIAS}.{name}"
    if not _exists(con, qualified):
        _create(con, qualified, source, target)
        return "created"
    if _columns(con, qualified) != _columns(con, source):
        _create(con, qualified, source, target)
        return "rewritten"
    # a table (rows stable while the publish reads: no one else writes the warehouse)
    narrow = source == source_relation and _is_table(con, source_relation)
    staged = source if narrow else f"(select * exclude ({_ROW_HASH}) from temp.serving_source)"
    for temporary in ("serving_source", "serving_copy_hashes", "serving_gone"):
        con.execute(f"drop table if exists temp.{temporary}")
    try:
        columns = f"{_SRC}.rowid as row_id" if narrow else f"{_SRC}.*"
        con.execute(
            f"create temp table serving_source as "
            f"select {columns}, hash({_SRC}) as {_ROW_HASH} from {source} as {_SRC}"
        )
        # the copy's rows hashed once, with their rowids: the sums, the count of rows gone
        # and the delete all read this instead of hashing the copy again each time
        con.execute(
            f"create temp table serving_copy_hashes as "
            f"select {_ROW}.rowid as row_id, hash({_ROW}) as {_ROW_HASH} "
            f"from {qualified} as {_ROW}"
        )
        n_source, xor_source, sum_source = con.execute(
            f"select count(*), coalesce(bit_xor({_ROW_HASH}), 0), "
            f"coalesce(sum({_ROW_HASH}::hugeint), 0) from temp.serving_source"
        ).fetchone()  # type: ignore[misc]
        n_copy, xor_copy, sum_copy = con.execute(
            f"select count(*), coalesce(bit_xor({_ROW_HASH}), 0), "
            f"coalesce(sum({_ROW_HASH}::hugeint), 0) from temp.serving_copy_hashes"
        ).fetchone()  # type: ignore[misc]
        if (n_source, xor_source, sum_source) == (n_copy, xor_copy, sum_copy):
            return "unchanged"
        con.execute(
            f"create temp table serving_gone as select row_id from temp.serving_copy_hashes "
            f"where {_ROW_HASH} not in (select {_ROW_HASH} from temp.serving_source)"
        )  # the copy's rows the source no longer has
        gone = con.execute("select count(*) from temp.serving_gone").fetchone()[0]  # type: ignore[index]
        if gone > REWRITE_SHARE * max(n_copy, 1):
            # most rows changed (a global term in every row): deleting them row by row
            # and appending costs more than writing the table again
            _create(con, qualified, staged, target)
            return "rewritten"
        # only the row-by-row path needs distinct rows (a hash set cannot count copies),
        # so the count of distinct hashes (seconds over millions of rows) is taken here
        (n_distinct,) = con.execute(
            f"select count(distinct {_ROW_HASH}) from temp.serving_source"
        ).fetchone()  # type: ignore[misc]
        if n_source != n_distinct:
            _create(con, qualified, staged, target)
            return "rewritten"
        deleted = 0
        if gone:
            deleted = con.execute(
                f"delete from {qualified} where rowid in (select row_id from temp.serving_gone)"
            ).fetchone()[0]  # type: ignore[index]
        fresh = f"{_ROW_HASH} not in (select {_ROW_HASH} from temp.serving_copy_hashes)"
        if narrow:
            appended = (
                f"select * from {source} where rowid in "
                f"(select row_id from temp.serving_source where {fresh})"
            )
        else:
            appended = f"select * exclude ({_ROW_HASH}) from temp.serving_source where {fresh}"
        inserted = con.execute(f"insert into {qualified} {appended}").fetchone()[0]  # type: ignore[index]
        n_after = con.execute(f"select count(*) from {qualified}").fetchone()[0]  # type: ignore[index]
        if n_after != n_source or deleted != gone:
            _create(con, qualified, staged, target)
            return "rewritten"
        return "updated" if deleted or inserted else "unchanged"
    finally:
        for temporary in ("serving_source", "serving_copy_hashes", "serving_gone"):
            con.execute(f"drop table if exists temp.{temporary}")


@dataclass(frozen=True)
class Scope:
    """How a table of the copy is synced per key instead of whole (sync_scoped).

    The table's rows for one key must be a function of that key's rows in `input` (a
    relation or a query) and of things that hold for all keys alike: the SQL of `views`
    and what `settings` selects; or, for a table whose every write stamps the rows it
    writes, change only when the key's stamps do (the stamped marts below). A publish
    keeps a digest per key of `input` and rewrites only the keys whose digest changed,
    appeared or vanished; a change to the views' SQL, the input's or the table's columns
    or the settings' rows (the definition) syncs the table whole.
    `rows_for`, when the warehouse has it, is a table macro taking a list of keys that
    returns the view's rows for those keys only, computed from those keys' input rows:
    filtering the view's output instead would compute every key's rows first.
    """

    key: str
    input: str
    needs: tuple[str, ...]  # relations that must exist for the scoped sync
    views: tuple[str, ...]  # the table's own view first
    settings: str = ""
    rows_for: str = ""
    # one row per key: changed keys are updated column by column where values differ,
    # not deleted and inserted (see _update_rows)
    unique: bool = False
    # columns of the synced table the input reads (a table from before them is synced whole)
    needs_columns: tuple[str, ...] = ()
    # (column, source column): in a changed key's row, `column` is a function of `source
    # column` and of the definition's settings, so _update_rows rewrites it only where the
    # source column or whether it is null differs, without reading its values: comparing
    # dim_patterns' vectors (FLOAT[384]) made DuckDB read the copy's whole column, 1.5 GB
    # at 1M patterns, to update none (1.9 s alone, 5.3 s of a 10M-event refresh's publish)
    follows: tuple[tuple[str, str], ...] = ()
    # `input` has one row per key (a key's digest is then its row's hash, without the
    # group-by over the input that most of a digest's time was: 0.6 of 1.0-1.1 s for the
    # 5.8M context-week rows at 10M events, ~0.3 s more to group a 1M-row input again)
    one_row_per_key: bool = False


def _stamps(table: str, key: str) -> str:
    """A Scope's input from a table whose every write stamps its rows (written_at): per
    key, its row count and oldest and newest stamp, which change exactly when its rows
    do (engram.numeric.incremental.write_stamp, macros/write_stamp.sql)."""
    return (
        f"select {key}, count(*) as n_rows, min(written_at) as first_written, "
        f"max(written_at) as last_written from {table} group by {key}"
    )


# The weekly sums behind the copy's pattern_trends (a view, SERVED_VIEWS): a 1% drop
# touches ~5% of the patterns, whose weeks alone are rewritten. (As a table of the
# gap-filled rows, 33M at 10M events, the view was first hashed whole, 21 s of a 90 s
# refresh publish, then rewritten per pattern: ~1.6M rows deleted and written per drop.)
# dim_patterns is a view of
# the profile row, the pattern's text and embedding and its description's label (whose
# moves sync_labels updates; the digest leaves it out): staging it whole (1M rows with
# FLOAT[384] vectors, 1.5 GB) took 15-19 s of a refresh publish. Its embedding is
# the cached vector of the description's hash under the active model, so the digest reads
# the hash, whether a vector is there, and the active model (a setting) instead.
SCOPED: dict[str, Scope] = {
    "marts.dim_patterns": Scope(
        key="pattern_id",
        # stg_patterns' columns are raw.patterns' renamed (its SQL is in `views`, so the
        # definition), read from the table: through the view, which joins the vectors, and
        # with the description itself (its sha256 is description_hash) and a `not exists`
        # per pattern, the digests took 1.05-1.54 s at 1M patterns, this 0.31 s
        input=(
            "select profiled.*, patterns.pattern_type, patterns.metadata, "
            "patterns.description_hash, "
            # = "patterns.embedding is null" (the cache's vectors are not null) without
            # reading a vector: stg_patterns' embedding column is never asked for
            "cached.text_hash is null as embedding_missing "
            "from intermediate.int_patterns__profiled as profiled "
            "inner join raw.patterns as patterns on patterns.pattern_id = profiled.pattern_id "
            "left join (select text_hash from raw.embeddings where model = "
            "(select embedding_model from staging.stg_embedding_model)) as cached "
            "on cached.text_hash = patterns.description_hash"
        ),
        needs=(
            "intermediate.int_patterns__profiled",
            "intermediate.int_pattern_texts__described",  # the label (dim_patterns_for)
            "staging.stg_patterns",
            "staging.stg_embedding_model",  # the settings query reads it
            "raw.patterns",
            "raw.embeddings",
        ),
        views=("marts.dim_patterns", "staging.stg_patterns"),
        settings="select embedding_model from staging.stg_embedding_model",
        rows_for="marts.dim_patterns_for",
        unique=True,
        one_row_per_key=True,  # profiled and raw.patterns: one row per pattern (tested)
        # the cached vector of the description's hash under the active model (a setting):
        # the cache adds a text's vector once and never replaces it (ingest/embeddings.py)
        follows=(("embedding", "description"),),
    ),
    # The two tables a refresh rewrites per key (delete+insert), whose every write stamps
    # the rows it writes (written_at: engram.numeric.incremental.write_stamp, unique to
    # the write, never null, on full builds too): a key's rows changed exactly when its
    # row count or stamps did, so the digest reads those instead of hashing every value.
    # Synced whole, the copy hashed all 10M similar pairs (per pattern, as they were
    # stored then) and 4M predictions on both sides (6.5 + 5.7 s of a 10M-event refresh's
    # publish).
    **{
        table: Scope(
            key=key,
            input=_stamps(table, key),
            needs=(table,),
            views=(),
            needs_columns=("written_at",),
            one_row_per_key=True,
        )
        for table, key in (
            ("intermediate.int_pattern_texts__neighbors", "description_hash"),
            ("marts.pattern_predictions", "pattern_id"),
            # the weekly sums behind the copy's pattern_trends (SERVED_VIEWS), stamped per
            # written row too (macros/write_stamp.sql): hashing their 4.9M rows at 10M
            # events took 0.5-0.7 s of every refresh's publish
            ("intermediate.int_pattern_weeks__aggregated", "pattern_id"),
        )
    },
    # pattern_project_predictions' per-pattern sums: the copy's view of the mart reads them
    # (SERVED_VIEWS); the mart itself, every row moved by each project's prior, was
    # rewritten whole by every publish (4M rows, 23.6 s of a 10M-event refresh's publish)
    # A pattern's cells come from its rows of int_pattern_context_weeks__aggregated alone,
    # which every write stamps (macros/write_stamp.sql), so the digest reads their count
    # and stamps instead of hashing the 5.8M rows (~1 s of a 10M-event refresh's publish)
    "intermediate.int_pattern_project_cells": Scope(
        key="pattern_id",
        input=_stamps("intermediate.int_pattern_context_weeks__aggregated", "pattern_id"),
        needs=("intermediate.int_pattern_context_weeks__aggregated",),
        views=("intermediate.int_pattern_project_cells",),
        rows_for="intermediate.int_pattern_project_cells_for",
        one_row_per_key=True,
    ),
}


@dataclass(frozen=True)
class ServedView:
    """A mart the copy holds as a view of other copied tables, not as a table: `macro` is
    the warehouse's table macro whose text is the mart's query over `reads` (named without
    the database, so the text binds to the copy's tables of those names). For a mart
    whose every row moves with a few shared values (each project's prior), the copy
    stores the per-key part, synced per key, and the shared part, a few rows, and the
    view joins them at read time."""

    macro: str
    reads: tuple[str, ...]


SERVED_VIEWS: dict[str, ServedView] = {
    # each pattern's weeks, gap-filled, with moving averages: computed at read time from
    # the pattern's weekly sums (a question reads one pattern), which are ~1/7 of the rows
    "marts.pattern_trends": ServedView(
        macro="marts.pattern_trends_served",
        reads=("intermediate.int_pattern_weeks__aggregated",),
    ),
    "marts.pattern_project_predictions": ServedView(
        macro="marts.pattern_project_predictions_served",
        reads=(
            "intermediate.int_pattern_project_cells",
            "intermediate.int_project_priors",
            "intermediate.int_contexts__clustered",
        ),
    ),
    # every pattern's group and theme, and what they look like: the per-group columns
    # move for every member when one pattern joins, so the copy stores the assignment
    # (per pattern, a new pattern's row) and the per-description facts (~24k rows at 1M
    # patterns) and joins them at read time; as a table the mart was rewritten whole by
    # every refresh's publish (3.2 s at 10M events)
    "marts.pattern_clusters": ServedView(
        macro="marts.pattern_clusters_served",
        reads=(
            "intermediate.int_patterns__clustered",
            "intermediate.int_pattern_texts__described",
        ),
    ),
    # each pattern's nearest patterns: its description's list (k + 1 per distinct text,
    # ~270k rows at 1M patterns) minus itself; stored per pattern (10M rows) a pattern
    # joining a text rewrote the lists of all its members (1.04M rows after +1%)
    "marts.pattern_similar_pairs": ServedView(
        macro="marts.pattern_similar_pairs_served",
        reads=(
            "intermediate.int_patterns__clustered",
            "intermediate.int_pattern_texts__neighbors",
        ),
    ),
    # the findings, stored, and what every append moves (a stale finding's weeks unused,
    # a replacement's numbers, a theme's recent use), a few rows per theme, joined with
    # them and worded at read time: as a table the mart's copy rewrote 590k of its 1.39M
    # rows after a +1% refresh at 10M events
    "marts.pattern_alerts": ServedView(
        macro="marts.pattern_alerts_served",
        reads=(
            "intermediate.int_pattern_alerts__found",
            "intermediate.int_theme_recent_use",
            "intermediate.int_theme_replacements",
            "marts.pattern_themes",
        ),
    ),
}


def context_patterns_query(condition: str) -> str:
    """serving.context_patterns' rows (predict's evidence per past task text: each task
    text and project's CONTEXT_EVIDENCE_CAP most-used patterns) for the task texts whose
    events meet `condition` (SQL over stg_usage_events' columns; "true" for all). The
    condition is applied to the events, before the sums, so a few task texts cost a few."""
    return f"""
        with per_pair as (
            -- an exact decimal sum: a double sum could differ in the last bits from
            -- one publish to the next (macros/exact_decimal.sql), a change to copy
            select context_hash, project_id, pattern_id, count(*)::bigint as n_events,
                   sum(outcome_quality::decimal(38, 18))::double as sum_quality
            from staging.stg_usage_events
            where context_hash is not null and outcome_quality is not null
                and ({condition})
            group by context_hash, project_id, pattern_id
        )
        select context_hash, project_id, pattern_id, n_events, sum_quality
        from per_pair
        qualify row_number() over (
            partition by context_hash, project_id order by n_events desc, pattern_id
        ) <= {CONTEXT_EVIDENCE_CAP}
        """


def context_patterns_candidates(copy: str, keys: str, new_events: str) -> str:
    """The condition (on stg_usage_events' columns) under which context_patterns_query
    gives the rows of the task texts in `keys` (a query of their hashes) after events were
    appended, from the copy's rows before (`copy`) and the appended events (`new_events`,
    a condition): a group's (task text, project) most-used patterns after an append are
    among its most-used before and the patterns of its new events, since counts only grow
    (one outside the cap had no more events than any inside it, and ties go to the smaller
    id either way). So only the events of those (task text, project, pattern) triples are
    summed, not every event of the touched task texts: with ~1,000 task texts every drop
    touches most of them (the generator's at 10M events: all 972)."""
    return (
        "(context_hash, project_id, pattern_id) in ("
        f"select context_hash, project_id, pattern_id from {copy} "
        f"where context_hash in ({keys}) "
        "union select context_hash, project_id, pattern_id from staging.stg_usage_events "
        f"where {new_events})"
    )


@dataclass(frozen=True)
class Appended:
    """How a table of the copy computed from the usage-event log is synced by the keys
    that the events loaded since the copy's last publish touch (sync_appended).

    The table's rows for one key must be a function of the events carrying that key (in
    `views`' staging, which maps merged-away patterns to the kept one) and of the
    `settings` rows. Events are only ever appended (ingest inserts new event ids, never
    updates one), so a publish records how far the log had been loaded (its newest
    loaded_at and how many events were loaded by then); the next publish rewrites only
    the keys of events loaded after that. Anything else that could change rows syncs the
    table whole: another query or views' SQL (the definition), another merge (settings),
    or events that appeared at or before the recorded loaded_at (a clock set back, rows
    written by hand), which the count catches.
    """

    key: str
    log: str  # the append-only table with loaded_at
    views: tuple[str, ...]
    settings: str
    query: Callable[[str], str]  # the table's rows for the events meeting a condition
    # (copy's table, touched keys' query, appended events' condition) -> a condition on
    # the events whose rows, through `query`, are the touched keys' rows after the append:
    # when a key's rows after an append follow from its rows before and its new events
    # (context_patterns_candidates), those events alone are read, and any share of the
    # keys is rewritten that way instead of the table whole
    candidates: Callable[[str, str, str], str] | None = None


# serving.context_patterns sums 10M events per (task text, project, pattern) and keeps the
# most used: 4.5-6.2 s of a 10M-event refresh's publish recomputed whole. A 1% drop may
# touch every task text (the generator has 972), so the touched texts are recomputed from
# their kept triples and the appended events' (context_patterns_candidates): summing all
# 10M events took 3.0-3.4 s on B8's refreshed warehouse, those triples' 1.2-1.3 s
APPENDED: dict[str, Appended] = {
    "serving.context_patterns": Appended(
        key="context_hash",
        log="raw.usage_events",
        views=("staging.stg_usage_events", "staging.stg_pattern_supersessions"),
        settings="select dropped_pattern_id, kept_pattern_id "
        "from staging.stg_pattern_supersessions order by all",
        query=context_patterns_query,
        candidates=context_patterns_candidates,
    ),
}
_MARKS = "serving.appended_marks"  # (table_name, definition, loaded_through, n_through)


def sync_appended(
    con: duckdb.DuckDBPyConnection, name: str, target: _Target, scope: Appended
) -> str:
    """sync_table for an APPENDED table: only the keys of events loaded since the copy's
    last publish are deleted and re-read (with `scope.candidates`, from the appended
    events and the copy's rows of those keys alone). Falls back to sync_table when the
    copy has no mark for the table (its first publish with this code), when the
    definition changed, when events appeared at or before the mark (their count differs
    from the recorded one) or, without candidates, when more than REWRITE_SHARE of the
    table's keys are touched. Returns sync_table's word, or "appended: N keys"."""
    qualified = f"{_ALIAS}.{name}"
    con.execute(
        f"create table if not exists {_ALIAS}.{_MARKS} (table_name varchar, "
        "definition varchar, loaded_through timestamp, n_through bigint)"
    )
    source_relation, _, _ = target
    definition = _definition_text(
        con, scope.views, f"({source_relation})", scope.settings, source_relation
    )
    loaded_through, n_through = con.execute(
        f"select max(loaded_at), count(*) from {scope.log}"
    ).fetchone()  # type: ignore[misc]
    stored = con.execute(
        f"select definition, loaded_through, n_through from {_ALIAS}.{_MARKS} where table_name = ?",
        [name],
    ).fetchone()
    how: str | None = None
    if (
        definition is not None
        and stored is not None
        and stored[0] == definition
        and stored[1] is not None
        and _exists(con, qualified)  # with the query's columns: only this sync writes it
    ):
        how = _sync_appended_keys(con, name, scope, stored[1], stored[2])
    if how is None:
        how = sync_table(con, name, target)
    con.execute(f"delete from {_ALIAS}.{_MARKS} where table_name = ?", [name])
    if definition is not None:
        con.execute(
            f"insert into {_ALIAS}.{_MARKS} values (?, ?, ?, ?)",
            [name, definition, loaded_through, n_through],
        )
    return how


def _sync_appended_keys(
    con: duckdb.DuckDBPyConnection,
    name: str,
    scope: Appended,
    loaded_through: datetime,
    n_through: int,
) -> str | None:
    """Rewrite the copy's rows of the keys of events loaded after `loaded_through`; None
    when the log changed otherwise (the caller syncs the table whole)."""
    qualified = f"{_ALIAS}.{name}"
    key = scope.key
    (n_now,) = con.execute(
        f"select count(*) from {scope.log} where loaded_at <= ?", [loaded_through]
    ).fetchone()  # type: ignore[misc]
    if n_now != n_through:
        return None  # events appeared (or went) at or before the mark
    con.execute("drop table if exists temp.serving_appended_keys")
    try:
        con.execute(
            f"create temp table serving_appended_keys as select distinct {key} as key "
            f"from {scope.log} where loaded_at > ? and {key} is not null",
            [loaded_through],
        )
        n_changed, n_keys = con.execute(
            "select (select count(*) from temp.serving_appended_keys), "
            f"(select count(distinct {key}) from {qualified})"
        ).fetchone()  # type: ignore[misc]
        if n_changed == 0:
            return "unchanged"
        keys = "select key from temp.serving_appended_keys"
        if scope.candidates is not None:
            # loaded_through is the log's own timestamp: its literal is no user input
            appended = f"loaded_at > '{loaded_through.isoformat(sep=' ')}'::timestamp"
            # materialized before the delete below, which would take the copy's rows away
            con.execute(
                "create temp table serving_appended_rows as "
                + scope.query(scope.candidates(qualified, keys, appended))
            )
            con.execute(f"delete from {qualified} where {key} in ({keys})")
            con.execute(f"insert into {qualified} select * from temp.serving_appended_rows")
            return f"appended: {n_changed} keys"
        if n_changed > REWRITE_SHARE * max(n_keys, 1):
            return None
        con.execute(f"delete from {qualified} where {key} in ({keys})")
        con.execute(f"insert into {qualified} " + scope.query(f"{key} in ({keys})"))
        return f"appended: {n_changed} keys"
    finally:
        con.execute("drop table if exists temp.serving_appended_keys")
        con.execute("drop table if exists temp.serving_appended_rows")


_DIGESTS = "serving.scoped_digests"  # (table_name, key, digest) as of the copy's publish
_DEFINITIONS = "serving.scoped_definitions"  # (table_name, definition) as of the same


def _catalog_text(con: duckdb.DuckDBPyConnection, name: str, kind: str) -> str | None:
    """The stored text of the warehouse's view (kind "view": its SQL) or table macro (kind
    "table_macro": its definition) `schema.name`; None when it has none."""
    if not name:
        return None
    catalog = con.execute("select current_database()").fetchone()[0]  # type: ignore[index]
    schema, object_name = name.split(".")
    query = {
        "view": "select sql from duckdb_views() where database_name = ? and schema_name = ? "
        "and view_name = ?",
        "table_macro": "select macro_definition from duckdb_functions() "
        "where database_name = ? and schema_name = ? and function_name = ? "
        "and function_type = 'table_macro'",
    }[kind]
    row = con.execute(query, [catalog, schema, object_name]).fetchone()
    return None if row is None else str(row[0])


def _definition(
    con: duckdb.DuckDBPyConnection, scope: Scope, columns: list[tuple[str, str]]
) -> str | None:
    """What, besides the input's rows, decides a scoped table's rows: the views' SQL, the
    input's columns, the settings' rows, the rows_for macro and `columns`, those of the
    synced table itself (a column added to a stamped table changes no stamp; a view whose
    SQL is the same but whose output types changed upstream reads differently), and how
    the digests are made (one row per key or not: digests made the other way compare
    unequal). None when one of the views is not a view of this warehouse (a table made
    some other way is synced whole)."""
    source = f"({scope.input})" if " " in scope.input else scope.input
    rows_for = _catalog_text(con, scope.rows_for, "table_macro")
    digests = "one row per key" if scope.one_row_per_key else "rows per key"
    return _definition_text(con, scope.views, source, scope.settings, rows_for, columns, digests)


def _definition_text(
    con: duckdb.DuckDBPyConnection,
    views: tuple[str, ...],
    source: str,
    settings: str,
    *extra: object,
) -> str | None:
    """The views' SQL, the columns of `source`, the rows of the `settings` query and
    `extra`, as one text to compare with a stored one (Scope's and Appended's
    definitions); None when one of the views is not a view of this warehouse."""
    texts = [_catalog_text(con, view, "view") for view in views]
    if any(sql is None for sql in texts):
        return None
    rows = (
        [[str(value) for value in row] for row in con.execute(settings).fetchall()]
        if settings
        else []
    )
    return json.dumps([texts, _columns(con, source), rows, *extra])


def sync_scoped(con: duckdb.DuckDBPyConnection, name: str, target: _Target, scope: Scope) -> str:
    """sync_table for a SCOPED table: only the keys whose input digest changed since the
    copy was published are deleted and re-read from the source. Falls back to sync_table
    (every row compared) when the copy has no digests for it (its first publish with this
    code), when the definition changed (see Scope), when the table lacks a column of
    `scope.needs_columns` or the input does not bind (a warehouse from before a column it
    reads), or when more than REWRITE_SHARE of the keys changed. Returns
    sync_table's word, or "scoped: N keys" when only N keys were rewritten. Once the
    table has those columns, the copy's digests end equal to the input's: only the changed
    keys' digests are written after a scoped sync, all of them after a whole one."""
    qualified = f"{_ALIAS}.{name}"
    for table, layout in (
        (_DIGESTS, "table_name varchar, key varchar, digest hugeint"),
        (_DEFINITIONS, "table_name varchar, definition varchar"),
    ):
        con.execute(f"create table if not exists {_ALIAS}.{table} ({layout})")
    columns = _columns(con, name)
    have = {column for column, _ in columns}
    source = f"({scope.input})" if " " in scope.input else scope.input
    try:
        con.execute(f"describe select * from {source}")
        binds = True
    except duckdb.BinderException:
        binds = False  # an input reading a column its table has not got yet (written_at)
    if not binds or not all(column in have for column in scope.needs_columns):
        # a warehouse built before a column the input reads (written_at) is synced whole,
        # its definition forgotten: once it has the column, one more whole sync, and the
        # digests kept from then on
        con.execute(f"delete from {_ALIAS}.{_DEFINITIONS} where table_name = ?", [name])
        return sync_table(con, name, target)
    definition = _definition(con, scope, columns)
    con.execute("drop table if exists temp.serving_digests")
    if scope.one_row_per_key:
        digests = f"select {scope.key}::varchar as key, hash({_ROW})::hugeint as digest"
    else:
        # rows per key, and two order-free sums of their hashes (as sync_table)
        digests = (
            f"select {scope.key}::varchar as key, "
            f"hash(count(*), bit_xor(hash({_ROW})), sum(hash({_ROW})::hugeint))::hugeint "
            "as digest"
        )
    group = "" if scope.one_row_per_key else f" group by {scope.key}"
    con.execute(f"create temp table serving_digests as {digests} from {source} as {_ROW}{group}")
    try:
        stored = con.execute(
            f"select definition from {_ALIAS}.{_DEFINITIONS} where table_name = ?", [name]
        ).fetchone()
        how: str | None = None
        same = definition is not None and stored is not None and stored[0] == definition
        if same and _exists(con, qualified):
            how = _sync_changed_keys(con, name, target, scope)
        if how is None:
            how = sync_table(con, name, target)
            con.execute(f"delete from {_ALIAS}.{_DIGESTS} where table_name = ?", [name])
            con.execute(
                f"insert into {_ALIAS}.{_DIGESTS} select ?, key, digest from temp.serving_digests",
                [name],
            )
        elif how != "unchanged":
            # as _update_rows: the changed digests updated, deletes only for keys gone,
            # so the checkpoint does not rewrite the digests' row groups whole
            con.execute(
                f"delete from {_ALIAS}.{_DIGESTS} where table_name = ? "
                "and key in (select key from temp.serving_changed_keys) "
                "and key not in (select key from temp.serving_digests)",
                [name],
            )
            # joined with the changed keys' digests alone: joined with all of them, the
            # update read ~1M digests per table to change a few percent (0.35-0.63 s a
            # table in a 10M-event refresh's publish)
            con.execute(
                f"update {_ALIAS}.{_DIGESTS} as stored set digest = now.digest "
                "from (select key, digest from temp.serving_digests "
                "where key in (select key from temp.serving_changed_keys)) as now "
                "where stored.table_name = ? and stored.key = now.key "
                "and stored.digest is distinct from now.digest",
                [name],
            )
            con.execute(
                f"insert into {_ALIAS}.{_DIGESTS} select ?, key, digest "
                "from temp.serving_digests "
                "where key in (select key from temp.serving_changed_keys) and key not in "
                f"(select key from {_ALIAS}.{_DIGESTS} where table_name = ?)",
                [name, name],
            )
        con.execute(f"delete from {_ALIAS}.{_DEFINITIONS} where table_name = ?", [name])
        if definition is not None:
            con.execute(f"insert into {_ALIAS}.{_DEFINITIONS} values (?, ?)", [name, definition])
        return how
    finally:
        con.execute("drop table if exists temp.serving_digests")
        con.execute("drop table if exists temp.serving_changed_keys")


def _sync_changed_keys(
    con: duckdb.DuckDBPyConnection, name: str, target: _Target, scope: Scope
) -> str | None:
    """Rewrite the copy's rows of the keys whose digest differs from the stored one (new,
    changed or gone); None when too many changed (the caller syncs the table whole)."""
    source_relation, _, _ = target
    source = f"({source_relation})" if " " in source_relation else source_relation
    qualified = f"{_ALIAS}.{name}"
    key = scope.key
    con.execute(
        f"""
        create temp table serving_changed_keys as
        select coalesce(now.key, before.key) as key
        from temp.serving_digests as now
        full outer join (
            select key, digest from {_ALIAS}.{_DIGESTS} where table_name = ?
        ) as before on before.key = now.key
        where now.digest is distinct from before.digest
        """,
        [name],
    )
    n_changed, n_keys = con.execute(
        "select (select count(*) from temp.serving_changed_keys), "
        "(select count(*) from temp.serving_digests)"
    ).fetchone()  # type: ignore[misc]
    if n_changed > REWRITE_SHARE * max(n_keys, 1):
        return None
    if n_changed == 0:
        return "unchanged"
    rows = (
        f"select * from {source} as {_SRC} "
        f"where {_SRC}.{key}::varchar in (select key from temp.serving_changed_keys)"
    )
    if _catalog_text(con, scope.rows_for, "table_macro") is not None:
        by_macro = (
            f"select * from {scope.rows_for}((select list(key) from temp.serving_changed_keys))"
        )
        try:
            con.execute(f"describe {by_macro}")
            rows = by_macro
        except duckdb.Error:
            pass  # a macro that no longer binds (the view still does): filter the view
    if scope.unique:
        _update_rows(con, qualified, key, rows, dict(scope.follows))
        return f"scoped: {n_changed} keys"
    con.execute(
        f"delete from {qualified} where {key}::varchar in "
        "(select key from temp.serving_changed_keys)"
    )
    con.execute(f"insert into {qualified} {rows}")
    return f"scoped: {n_changed} keys"


def _view_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the copy has a view `schema.name` (_exists is for tables)."""
    schema, view = name.split(".")
    row = con.execute(
        "select count(*) from duckdb_views() "
        "where database_name = ? and schema_name = ? and view_name = ?",
        [_ALIAS, schema, view],
    ).fetchone()
    return bool(row and row[0])


def _drop_view(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Drop the copy's view `schema.name`, if it has one (a table of that name stays)."""
    if _view_exists(con, name):
        con.execute(f"drop view {_ALIAS}.{name}")


# dim_patterns' cluster_label is its group's label, per description
# (int_pattern_texts__described): the group's most central description, which one new
# text can move for every member. The scoped sync's digests leave it out
# (int_patterns__profiled has no label), so a pattern's row is rewritten only when its own
# input changed, and a moved label is updated in place, that column alone: with the
# label in the digests, 10,000 new texts at 1M patterns (41 groups of ~25k) changed more
# than half of them, and the copy's dim_patterns was rewritten whole, vectors and all
# (24.0 s of a 35.1 s refresh publish, `python -m bench --size full`, 2026-12-07).
LABELLED = "marts.dim_patterns"
LABELS = "intermediate.int_pattern_texts__described"  # description_hash -> cluster_label
LABELS_STEP = "marts.dim_patterns labels"  # its PublishResult step


def moved_labels(
    con: duckdb.DuckDBPyConnection, targets: dict[str, _Target], relations: dict[str, str]
) -> bool:
    """Before the copy's tables are synced: keep in temp.serving_moved_labels the
    descriptions whose label in the warehouse differs from the copy's (its
    int_pattern_texts__described, which its dim_patterns' labels were written from) or
    that the copy has not got. False when the copy or the warehouse lacks either table:
    then dim_patterns is synced whole or not at all, with the warehouse's labels."""
    have = all(name in targets and _exists(con, f"{_ALIAS}.{name}") for name in (LABELLED, LABELS))
    if not have or "raw.patterns" not in relations:
        return False
    con.execute(
        f"""
        create or replace temp table serving_moved_labels as
        select now.description_hash, now.cluster_label
        from {LABELS} as now
        left join {_ALIAS}.{LABELS} as before on before.description_hash = now.description_hash
        where before.cluster_label is distinct from now.cluster_label
        """
    )
    return True


def sync_labels(con: duckdb.DuckDBPyConnection) -> str:
    """After the copy's dim_patterns is synced: set cluster_label where its description's
    label moved (moved_labels) and the row's differs (a row the sync rewrote has the new
    one already); a pattern without a cluster keeps none. Returns "unchanged" or
    "relabelled: N patterns"."""
    try:
        row = con.execute(
            f"""
            update {_ALIAS}.{LABELLED} as stored set cluster_label = moved.cluster_label
            from (
                select patterns.pattern_id, labels.cluster_label
                from raw.patterns as patterns
                inner join temp.serving_moved_labels as labels
                    on labels.description_hash = patterns.description_hash
            ) as moved
            where stored.pattern_id = moved.pattern_id
                and stored.cluster_id is not null
                and stored.cluster_label is distinct from moved.cluster_label
            """
        ).fetchone()
    finally:
        con.execute("drop table if exists temp.serving_moved_labels")
    n = int(row[0]) if row else 0
    return f"relabelled: {n} patterns" if n else "unchanged"


def _sync_view(con: duckdb.DuckDBPyConnection, name: str, text: str) -> str:
    """Make the copy's `name` a view of the query `text` (SERVED_VIEWS); returns
    "unchanged" when it already was (the text is kept in scoped_definitions), else "view"."""
    con.execute(
        f"create table if not exists {_ALIAS}.{_DEFINITIONS} "
        "(table_name varchar, definition varchar)"
    )
    stored = con.execute(
        f"select definition from {_ALIAS}.{_DEFINITIONS} where table_name = ?", [name]
    ).fetchone()
    if stored is not None and stored[0] == text and _view_exists(con, name):
        return "unchanged"
    if _exists(con, f"{_ALIAS}.{name}"):
        con.execute(f"drop table {_ALIAS}.{name}")  # a table before this code
    con.execute(f"create or replace view {_ALIAS}.{name} as {text}")
    con.execute(f"delete from {_ALIAS}.{_DEFINITIONS} where table_name = ?", [name])
    con.execute(f"insert into {_ALIAS}.{_DEFINITIONS} values (?, ?)", [name, text])
    return "view"


def _update_rows(
    con: duckdb.DuckDBPyConnection,
    qualified: str,
    key: str,
    rows: str,
    follows: dict[str, str] | None = None,
) -> None:
    """Write `rows` (the source's rows of the changed keys, one per key) into the copy:
    keys gone are deleted, new ones inserted, and the rest updated one column at a time,
    only where the value differs. Why not delete + insert: DuckDB's checkpoint then
    rewrites every row group holding a deleted row, all columns: 60k changed patterns of
    1M rewrote dim_patterns' FLOAT[384] column (1.5 GB; ~10 s of a 10M-event refresh's
    publish), though their vectors had not changed. An update rewrites only the columns
    it touches (DuckDB updates an array column by delete + insert, so a row whose vector
    changed, a new description, still moves; that is rare). A column of `follows` (column
    -> the source column it is a function of, Scope.follows) is compared by that column
    and by whether it is null instead of by its own values."""
    follows = follows or {}
    con.execute("drop table if exists temp.serving_rows")
    con.execute(f"create temp table serving_rows as {rows}")
    try:
        con.execute(
            f"delete from {qualified} where {key}::varchar in "
            "(select key from temp.serving_changed_keys) "
            f"and {key} not in (select {key} from temp.serving_rows)"
        )
        columns = [column for column, _ in _columns(con, "temp.serving_rows") if column != key]
        # a following column first: it is compared by its source column, still unwritten
        for column in sorted(columns, key=lambda column: column not in follows):
            if column in follows:
                differs = (
                    f'({_ROW}."{column}" is null) <> ({_SRC}."{column}" is null) '
                    f'or {_ROW}."{follows[column]}" is distinct from {_SRC}."{follows[column]}"'
                )
            else:
                differs = f'{_ROW}."{column}" is distinct from {_SRC}."{column}"'
            con.execute(
                f'update {qualified} as {_ROW} set "{column}" = {_SRC}."{column}" '
                f"from temp.serving_rows as {_SRC} where {_ROW}.{key} = {_SRC}.{key} "
                f"and ({differs})"
            )
        con.execute(
            f"insert into {qualified} select * from temp.serving_rows "
            f"where {key} not in (select {key} from {qualified})"
        )
    finally:
        con.execute("drop table if exists temp.serving_rows")


def _vector_hashes(
    con: duckdb.DuckDBPyConnection, relation: str, key: str, identity: str = "hash(embedding)"
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, uint64 `identity` of their rows: hash() of their embeddings, or of the text
    their embeddings follow, _vector_identity), ordered by id as the vectors queries are."""
    table = con.execute(
        f"select {key}, {identity} from {relation} where embedding is not null order by {key}"
    ).fetchnumpy()
    columns = list(table.values())
    return np.asarray(columns[0], dtype=str), np.asarray(columns[1], dtype=np.uint64)


def _fetch_vectors(
    con: duckdb.DuckDBPyConnection, relation: str, key: str, wanted: np.ndarray
) -> np.ndarray:
    """The embeddings of the wanted ids, in their order."""
    import pyarrow as pa

    keys = pa.table({"id": pa.array(wanted.tolist(), pa.string()), "pos": np.arange(len(wanted))})
    con.register("serving_wanted_ids", keys)
    try:
        query = (
            f"select w.id, s.embedding from {relation} s "
            f"join serving_wanted_ids w on w.id = s.{key} order by w.pos"
        )
        ids, vectors = read_vectors(con, query)
    finally:
        con.unregister("serving_wanted_ids")
    if len(ids) != len(wanted):
        raise ServingError(f"expected {len(wanted)} vectors, found {len(ids)}")
    return vectors


# (index name, its vectors query given a schema prefix, the relation it reads, the text
# column its vectors follow or None: _vector_identity) per vector index. An update reads
# the warehouse's relation (the copy's table ends equal to it), so it need not wait for
# the copy's tables to be synced; a build from scratch waits for them anyway (memory) and
# reads the copy's.
_INDEXES = (
    ("patterns", pattern_vectors_sql, "marts.dim_patterns", "description"),
    ("contexts", context_vectors_sql, "staging.stg_contexts", None),
)


def _publish_indexes(
    con: duckdb.DuckDBPyConnection,
    relations: dict[str, str],
    previous: Path | None,
    partial: Path,
    build_id: str,
    ann: bool,
    result: PublishResult,
    tables_done: threading.Event,
) -> dict[str, Manifest]:
    """Write the vector indexes of the copy in `partial` (`con` is a cursor of its own:
    publish runs this on a thread beside the tables' syncs): updated from the `previous`
    copy's where it can (update_index, reading the warehouse's relations), else built
    (from the copy's synced tables).
    An update (memory-mapped files, a few new vectors) runs beside the syncs; a build from
    scratch (the whole matrix in memory and k-means: 1.5 GB and more at 1M patterns) first
    waits for `tables_done` (every other table synced), so that DuckDB's buffers and
    k-means do not add up in one process. Records each index's seconds and what it took in
    `result`; returns the manifests."""
    from engram.query.index import build_index, update_index

    manifests: dict[str, Manifest] = {}
    try:
        for name, vectors_sql, relation, follows in _INDEXES:
            if relation not in relations:
                continue
            indexed = time.perf_counter()
            key = POINT_LOOKUPS[relation]
            update = None
            if previous is not None:
                identity, hash_kind = _vector_identity(con, follows)
                ids, hashes = _vector_hashes(con, relation, key, identity)
                update = update_index(
                    previous,
                    partial,
                    name,
                    ids,
                    hashes,
                    lambda wanted, r=relation, k=key: _fetch_vectors(con, r, k, wanted),
                    build_id,
                    hash_kind=hash_kind,
                )
            if update is not None:
                manifest = update.manifest
                result.index_changes[name] = (
                    f"{update.how}: {update.kept} kept, {update.added} added, "
                    f"{update.removed} removed"
                )
            else:
                waiting = time.perf_counter()
                tables_done.wait()
                indexed += time.perf_counter() - waiting  # the step's own seconds
                identity, hash_kind = _vector_identity(con, follows, f"{_ALIAS}.")
                _, hashes = _vector_hashes(con, f"{_ALIAS}.{relation}", key, identity)
                ids, vectors = read_vectors(con, vectors_sql(f"{_ALIAS}."))
                manifest = build_index(
                    partial,
                    name,
                    ids,
                    vectors,
                    build_id,
                    ann=ann,
                    hashes=hashes,
                    hash_kind=hash_kind,
                )
                result.index_changes[name] = f"built: {manifest.n} rows"
            result.step_seconds[f"index {name}"] = time.perf_counter() - indexed
            manifests[name] = manifest
    finally:
        con.close()
    return manifests


def publish(
    db_path: Path,
    *,
    build_id: str | None = None,
    ann: bool = True,
    incremental: bool = True,
    prepared: PreparedCopy | None = None,
) -> PublishResult:
    """Write a new serving copy of db_path's marts + vector indexes, then point CURRENT at it.

    With incremental (the default) and a previous copy of the same format, the new copy
    starts as a file copy of the previous one and only what changed is written: rows that
    differ in each table (sync_table) and the vector indexes updated with new or changed
    vectors (engram.query.index.update_index) instead of refitted. Either way the result is
    a new folder that no reader has open, switched to atomically; the previous copy is
    never written. Run it when no other process writes the warehouse (the build does,
    right after dbt). `prepared` (prepare_publish, started before the build) is that file
    copy made beforehand: used when it copied the previous copy this publish starts from,
    its folder (and build id) becoming this publish's; otherwise removed.
    """
    started = time.perf_counter()
    db_path = Path(db_path)
    root = serving_root(db_path)
    root.mkdir(parents=True, exist_ok=True)
    if prepared is not None:
        build_id = prepared.build_id
        partial = prepared.partial
        partial.mkdir(parents=True, exist_ok=True)
        os.utime(partial)  # not debris to a concurrent _prune, however long the build ran
    else:
        build_id = build_id or new_build_id()
        shutil.rmtree(root / f".build-{build_id}.partial", ignore_errors=True)
        partial = new_partial(root, build_id)
    final = root / f"build-{build_id}"
    result = PublishResult(build_id, final, final / SERVING_FILE)
    try:
        con = duckdb.connect(
            str(db_path),
            read_only=True,
            config={"memory_limit": MEMORY_LIMIT},
        )
    except duckdb.IOException as exc:
        if prepared is not None:
            prepared.discard()
        shutil.rmtree(partial, ignore_errors=True)
        raise ServingError(f"cannot read {db_path} to publish it: {exc}") from exc
    try:
        catalog = con.execute("select current_database()").fetchone()[0]  # type: ignore[index]
        relations = warehouse_relations(con, catalog)
        previous = current(db_path) if incremental else None
        if previous is not None and _previous_format(con, previous.database) != SERVING_FORMAT:
            previous = None  # another layout (or unreadable): start from an empty file
        result.mode = "incremental" if previous is not None else "full"
        if prepared is not None and (previous is None or previous.database != prepared.source):
            # copied from another file than this publish starts from (or it starts empty)
            prepared.wait()
            (partial / SERVING_FILE).unlink(missing_ok=True)
            prepared = None
        # The vector indexes are written on a thread of their own from the start: an update
        # reads the warehouse's relations (_INDEXES), so neither the copy of the previous
        # file nor the tables' syncs hold it up, and writing the index (an update reads 1M
        # ids and hashes and writes a tail of the rows changed since the fit; it rewrote
        # the 1.5 GB vectors file before engram.query.index kept a tail) and the syncs
        # (mostly one core each: a file copy, updates, checkpoints) share the cores
        # instead of taking turns. Started only once the copy's dim_patterns was synced,
        # a 10M-event refresh's publish took 35.4 s (mean of 4 replays, bench.refresh
        # --keep-before-refresh), and 33.6 s started here (4 replays alternating with
        # those). Syncing two tables at once gained nothing (each sync ran 2-3x slower
        # beside another). An index built from scratch waits for the syncs (memory).
        tables_done = threading.Event()  # set once every table is synced
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="engram-index") as pool:
            indexing: Future[dict[str, Manifest]] = pool.submit(
                _publish_indexes,
                con.cursor(),  # a connection of its own to the same database
                relations,
                previous.directory if previous is not None and ann else None,
                partial,
                build_id,
                ann,
                result,
                tables_done,
            )
            try:
                if previous is not None:
                    copied = time.perf_counter()
                    if prepared is None or not prepared.wait():
                        shutil.copyfile(previous.database, partial / SERVING_FILE)
                    else:  # what the build's time hid: the copy's own seconds
                        result.step_seconds[PREPARED_COPY_STEP] = prepared.seconds
                    # the publish's own wait for the copy (all of it when not prepared)
                    result.step_seconds["copy previous"] = time.perf_counter() - copied
                con.execute(f"attach {sql_string(partial / SERVING_FILE)} as {_ALIAS} (read_write)")
                for schema in ("marts", "staging", "intermediate", "serving"):
                    con.execute(f"create schema if not exists {_ALIAS}.{schema}")
                targets: dict[str, _Target] = {
                    name: (
                        name,
                        MART_ORDER.get(name.split(".", 1)[1], ""),
                        POINT_LOOKUPS.get(name),
                    )
                    for name in sorted(relations)
                    if name.startswith("marts.")
                }
                targets.update(
                    {name: (name, order, POINT_LOOKUPS.get(name)) for name, order in EXTRA_TABLES}
                )
                targets = {name: t for name, t in targets.items() if name in relations}
                targets.update(_serving_targets(relations))
                views = {
                    name: text
                    for name, served in SERVED_VIEWS.items()
                    if name in targets
                    and all(read in targets for read in served.reads)
                    and (text := _catalog_text(con, served.macro, "table_macro")) is not None
                }
                # before the copy's descriptions are synced: whose label moved since
                relabelling = previous is not None and moved_labels(con, targets, relations)
                for name in sorted(targets):
                    if name in views:
                        continue  # written below, once the tables it reads are
                    synced = time.perf_counter()
                    _drop_view(con, name)  # a view before (its macro gone): a table now
                    scope = SCOPED.get(name)
                    appended = APPENDED.get(name)
                    if scope is not None and all(need in relations for need in scope.needs):
                        how = sync_scoped(con, name, targets[name], scope)
                    elif appended is not None and all(
                        need in relations for need in (appended.log, *appended.views)
                    ):
                        how = sync_appended(con, name, targets[name], appended)
                    else:
                        how = sync_table(con, name, targets[name])
                    result.table_changes[name] = how
                    result.step_seconds[name] = time.perf_counter() - synced
                    result.tables.append(name)
                if relabelling:
                    synced = time.perf_counter()
                    result.table_changes[LABELS_STEP] = sync_labels(con)
                    result.step_seconds[LABELS_STEP] = time.perf_counter() - synced
                tables_done.set()
                for name, text in views.items():
                    synced = time.perf_counter()
                    result.table_changes[name] = _sync_view(con, name, text)
                    result.step_seconds[name] = time.perf_counter() - synced
                    result.tables.append(name)
                for schema, table in con.execute(
                    "select schema_name, table_name from duckdb_tables() where database_name = ?",
                    [_ALIAS],
                ).fetchall():
                    name = f"{schema}.{table}"
                    if name not in targets and name not in (
                        "serving.meta",
                        _DIGESTS,
                        _DEFINITIONS,
                        _MARKS,
                    ):
                        con.execute(f"drop table {_ALIAS}.{name}")  # gone from the warehouse
                        result.table_changes[name] = "dropped"
                for schema, view in con.execute(
                    "select schema_name, view_name from duckdb_views() "
                    "where database_name = ? and not internal",
                    [_ALIAS],
                ).fetchall():
                    if f"{schema}.{view}" not in views:
                        _drop_view(con, f"{schema}.{view}")
                        result.table_changes[f"{schema}.{view}"] = "dropped"
            except BaseException:
                tables_done.set()
                wait([indexing])  # let it stop before the partial folder goes
                raise
            manifests = indexing.result()  # its failure is this publish's
        meta: dict[str, object] = {}
        for name, manifest in manifests.items():
            meta[f"n_{name}"] = manifest.n
            meta[f"{name}_fingerprint"] = manifest.fingerprint  # = fingerprint(ids)
        result.n_patterns = int(meta.get("n_patterns", 0))  # type: ignore[call-overload]
        result.n_contexts = int(meta.get("n_contexts", 0))  # type: ignore[call-overload]
        published_at = datetime.now(UTC).isoformat(timespec="seconds")
        con.execute(f"drop table if exists {_ALIAS}.serving.meta")
        con.execute(
            f"""
            create table {_ALIAS}.serving.meta as select
                ?::varchar as build_id, ?::varchar as published_at, ?::varchar as warehouse,
                ?::varchar as engram_version, ?::bigint as n_patterns,
                ?::varchar as patterns_fingerprint, ?::bigint as n_contexts,
                ?::varchar as contexts_fingerprint, ?::integer as serving_format,
                ?::varchar as publish_mode
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
                SERVING_FORMAT,
                result.mode,
            ],
        )
        con.execute(f"checkpoint {_ALIAS}")
        con.execute(f"detach {_ALIAS}")
    except BaseException:
        con.close()
        if prepared is not None:
            prepared.discard()  # its copy may still be writing into the folder
        shutil.rmtree(partial, ignore_errors=True)
        raise
    con.close()
    (partial / OWNER_FILE).unlink(missing_ok=True)
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


class PreparedCopy:
    """The previous copy's database file, copied into a new publish's folder while the
    build that precedes the publish runs (prepare_publish).

    An incremental publish starts from a file copy of the previous copy (2.8 GB at 1M
    patterns / 10M events: 8.9 s in a benchmark's refresh, 1.6-3.4 s when the file was in
    the page cache; on the publish's critical path, before any table is synced). The
    previous copy is never written, so the copy need not wait for the build:
    started when `engram build` starts dbt, it is done (or nearly) when the publish needs
    it. Used by the next publish(prepared=...) when the copy it would make is the same
    (the same previous file); otherwise, or after discard(), its folder is removed."""

    def __init__(self, db_path: Path, previous: ServingCopy) -> None:
        self.build_id = new_build_id()
        self.source = previous.database
        # in the folder that holds `previous`
        self.partial = new_partial(serving_root(db_path), self.build_id)
        self.seconds = 0.0  # the copy's own seconds, once done
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._copy, name="engram-prepare-publish", daemon=True
        )
        self._thread.start()

    def _copy(self) -> None:
        started = time.perf_counter()
        try:
            shutil.copyfile(self.source, self.partial / SERVING_FILE)
        except BaseException as exc:  # reported by wait(): the publish then copies itself
            self.error = exc
        self.seconds = time.perf_counter() - started

    def wait(self) -> bool:
        """Block until the copy is done; whether it succeeded."""
        self._thread.join()
        return self.error is None

    def discard(self) -> None:
        """Forget the copy (the build failed, or the publish did not use it)."""
        self._thread.join()
        shutil.rmtree(self.partial, ignore_errors=True)


def prepare_publish(db_path: Path) -> PreparedCopy | None:
    """Start copying the current serving copy's database for the next incremental publish
    (see PreparedCopy); None when there is no copy to start from. Hand the result to
    publish(prepared=...), or call its discard() when no publish follows."""
    previous = current(Path(db_path))
    if previous is None or not previous.database.exists():
        return None
    return PreparedCopy(Path(db_path), previous)


def _previous_format(con: duckdb.DuckDBPyConnection, database: Path) -> int | None:
    """The SERVING_FORMAT the previous copy `database` was written with, read by attaching
    it read-only beside the warehouse (before it is copied: the indexes start once this is
    known); None before formats, or when the file cannot be read (a publish then starts
    from an empty file, as the first one does)."""
    alias = "engram_serving_previous"
    try:
        con.execute(f"attach {sql_string(database)} as {alias} (read_only)")
    except duckdb.Error:
        return None
    try:
        found = con.execute(
            "select count(*) from duckdb_columns() where database_name = ? "
            "and schema_name = 'serving' and table_name = 'meta' "
            "and column_name = 'serving_format'",
            [alias],
        ).fetchone()
        if not found or not found[0]:
            return None
        row = con.execute(f"select serving_format from {alias}.serving.meta").fetchone()
        return int(row[0]) if row and row[0] is not None else None
    finally:
        con.execute(f"detach {alias}")


def _serving_targets(relations: dict[str, str]) -> dict[str, _Target]:
    """Precomputed lookups queries need: per-context pattern outcomes, warehouse row counts,
    and how far the journal had been taken in (so the read-your-writes overlay shows only
    journal lines the marts do not hold yet)."""
    targets: dict[str, _Target] = {}
    if "raw.journal_offsets" in relations:
        targets["serving.journal_offsets"] = (
            "select journal_file, byte_offset, lines from raw.journal_offsets",
            "",
            None,
        )
    if "staging.stg_usage_events" in relations:
        # predict looks up ~20 scattered task texts: an ART index beats zone maps there
        targets["serving.context_patterns"] = (
            context_patterns_query("true"),
            "context_hash, project_id, pattern_id",
            "context_hash",
        )
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
        targets["serving.row_counts"] = (union, "", None)
    return targets


def _prune(root: Path, keep: Path) -> list[Path]:
    """Drop all but the newest KEEP_BUILDS builds, and partial publishes left by crashes."""
    removed: list[Path] = []
    builds = sorted((p for p in root.glob("build-*") if p.is_dir()), key=lambda p: p.name)
    for old in builds[:-KEEP_BUILDS]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)
            removed.append(old)
    now = time.time()
    for debris in [*root.glob(".build-*.partial"), *root.glob(f"{CLAIM_PREFIX}*")]:
        try:
            old_enough = now - debris.stat().st_mtime > PARTIAL_MAX_AGE_S
        except OSError:
            continue  # gone meanwhile
        if _writer_gone(debris) or old_enough:
            shutil.rmtree(debris, ignore_errors=True)
            removed.append(debris)
    return removed


def _process_start(pid: int) -> str | None:
    """When process `pid` started (field 22 of /proc/PID/stat, in clock ticks since boot);
    None without such a process, or without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def new_partial(root: Path, build_id: str) -> Path:
    """Create `build_id`'s partial folder in `root` with its OWNER_FILE already inside: the
    folder is made under a private name (CLAIM_PREFIX), claimed, then renamed, so nobody
    ever sees a partial folder without its writer. A mkdir followed by the owner's write
    let a kill land between the two (CI's kill test did, once): the folder, unowned, then
    waited PARTIAL_MAX_AGE_S. A kill before the rename leaves a private folder holding at
    most the owner file, removed by _prune by the same rules."""
    claim = root / f"{CLAIM_PREFIX}{build_id}"  # build ids are unique (time and random)
    claim.mkdir()  # mkdir, not mkdtemp: a published folder keeps the umask's permissions
    _claim(claim)
    partial = root / f".build-{build_id}.partial"
    os.rename(claim, partial)
    return partial


def _claim(partial: Path) -> None:
    """Record this process as the writer of a partial folder (OWNER_FILE), so that a later
    publish can remove a dead writer's folder at once: a build killed while dbt ran left
    its prepared copy (2.8 GB at 1M patterns) for PARTIAL_MAX_AGE_S otherwise."""
    me = os.getpid()
    owner = f"{socket.gethostname()} {me} {_process_start(me) or '-'} {_pid_namespace()}"
    (partial / OWNER_FILE).write_text(owner)


def _pid_namespace() -> str:
    """This process's pid namespace ('pid:[4026531836]'), '-' without /proc: two containers
    may share a hostname and a folder yet number their processes apart, so a pid is only
    looked up in the namespace that wrote it."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return "-"


def _writer_gone(partial: Path) -> bool:
    """Whether the process that wrote `partial` has certainly exited: it ran on this host,
    and no process of its pid and start time runs now (a pid reused by another process
    has another start time). False when unsure: no owner file (an older engram), another
    host (a warehouse on a shared disk), another pid namespace (a container of the same
    hostname), no /proc; the age rule then applies."""
    try:
        host, pid, start, namespace = (partial / OWNER_FILE).read_text().split(" ")
        pid_number = int(pid)
    except (OSError, ValueError):
        return False
    if host != socket.gethostname() or "-" in (start, namespace):
        return False
    if namespace != _pid_namespace():
        return False
    return _process_start(pid_number) != start
