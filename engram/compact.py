"""Compact the warehouse: write its live data into a fresh file and put that file in its place.

Why: a DuckDB file never shrinks. Every build replaces the marts it rebuilds (a new table is
written, then the old one dropped), and the old table's blocks stay in the file as free
blocks that later writes may reuse. At 1M patterns / 10M events a full build followed by a
refresh left 1.6 GiB of a 3.7 GiB file free (`python -m bench.storage` counts them).
`CHECKPOINT` and `VACUUM` do not give that space back; copying the database does (DuckDB's
documented way: ATTACH a new file, COPY FROM DATABASE).

How, so that a kill at any point loses nothing:

1. the warehouse is opened for writing (the same lock a build or an ingest takes, so no
   writer runs meanwhile) and checkpointed;
2. everything is copied into `<name>.compact-<id>.partial` beside it, which is then closed
   (its own checkpoint: no WAL left) and checked table by table: same tables and views, same
   row count in each;
3. the copy is fsynced and renamed over the warehouse (an atomic replace on POSIX), then the
   folder is fsynced. Killed before step 3 the old file is untouched and the partial file is
   debris, removed by the next compaction; after it the new file is complete.

Readers are not affected: queries read the serving copy (engram.query.serving), a separate
file."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ingest.warehouse import MEMORY_LIMIT, WarehouseError, connect_for_write, relations, sql_string

PARTIAL_GLOB = "{name}.compact-*.partial"


class CompactError(Exception):
    """The copy did not match the warehouse; the warehouse was left as it was."""


@dataclass(frozen=True)
class CompactResult:
    path: Path
    bytes_before: int
    bytes_after: int
    free_bytes_before: int
    tables: int
    seconds: float

    @property
    def saved_bytes(self) -> int:
        return self.bytes_before - self.bytes_after


def free_bytes(con: duckdb.DuckDBPyConnection) -> int:
    """Bytes of free blocks in the open database file (`pragma database_size`)."""
    row = con.execute("select block_size, free_blocks from pragma_database_size()").fetchone()
    return 0 if row is None else int(row[0]) * int(row[1])


def free_share(db_path: Path) -> float:
    """Share of the file that is free blocks (0 for a missing or empty file); opens it
    read-only, so it can be asked while nothing writes."""
    db_path = Path(db_path)
    if not db_path.exists() or db_path.stat().st_size == 0:
        return 0.0
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        return free_bytes(con) / db_path.stat().st_size
    finally:
        con.close()


def _row_counts(con: duckdb.DuckDBPyConnection, catalog: str, tables: list[str]) -> dict[str, int]:
    counts = {}
    for name in tables:
        schema, table = name.split(".", 1)
        row = con.execute(f'select count(*) from "{catalog}"."{schema}"."{table}"').fetchone()
        counts[name] = int(row[0]) if row else 0
    return counts


def remove_debris(db_path: Path) -> list[Path]:
    """Partial copies left by a compaction that was killed; removed, returned."""
    removed = []
    for partial in db_path.parent.glob(PARTIAL_GLOB.format(name=db_path.name)):
        for path in (partial, partial.with_name(partial.name + ".wal")):
            if path.exists():
                path.unlink()
                removed.append(path)
    return removed


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def compact(db_path: Path) -> CompactResult:
    """Rewrite the warehouse into a fresh file without its free blocks (see module doc)."""
    db_path = Path(db_path)
    if not db_path.exists():
        raise WarehouseError(db_path, f"no warehouse at {db_path}: nothing to compact")
    started = time.perf_counter()
    partial = db_path.with_name(f"{db_path.name}.compact-{uuid.uuid4().hex[:8]}.partial")
    con = connect_for_write(db_path)  # the writers' lock: no build or ingest meanwhile
    remove_debris(db_path)  # under the lock: no other compaction is writing its copy
    try:
        # the build's memory budget: uncapped, the copy took 4.4 GiB at 10M events
        con.execute(f"set memory_limit = {sql_string(MEMORY_LIMIT)}")
        con.execute("checkpoint")
        bytes_before = db_path.stat().st_size
        free_before = free_bytes(con)
        (catalog,) = con.execute("select current_database()").fetchone()  # type: ignore[misc]
        con.execute(f"attach {sql_string(partial)} as engram_compact_target")
        try:
            con.execute(f'copy from database "{catalog}" to engram_compact_target')
            source = relations(con, catalog)
            target = relations(con, "engram_compact_target")
            if source != target:
                differ = sorted(set(source.items()) ^ set(target.items()))
                raise CompactError(f"the copy's tables and views differ: {differ}")
            tables = sorted(name for name, kind in source.items() if kind == "BASE TABLE")
            before = _row_counts(con, catalog, tables)
            after = _row_counts(con, "engram_compact_target", tables)
            if before != after:
                differ = [t for t in tables if before[t] != after[t]]
                raise CompactError(f"row counts differ in the copy: {differ}")
        finally:
            con.execute("detach engram_compact_target")  # closes it: checkpointed, no WAL
        if partial.with_name(partial.name + ".wal").exists():
            raise CompactError(f"{partial.name} kept a write-ahead log after closing")
        _fsync(partial)
        os.replace(partial, db_path)
        _fsync(db_path.parent)
    except BaseException:
        for leftover in (partial, partial.with_name(partial.name + ".wal")):
            if leftover.exists():
                leftover.unlink()
        raise
    finally:
        con.close()
    return CompactResult(
        path=db_path,
        bytes_before=bytes_before,
        bytes_after=db_path.stat().st_size,
        free_bytes_before=free_before,
        tables=len(tables),
        seconds=time.perf_counter() - started,
    )


def maybe_compact(db_path: Path, above: float) -> CompactResult | None:
    """Compact when free blocks exceed `above` of the file (the upkeep `engram build`,
    Dagster's serving asset and `engram compact --if-free-above` share); None when not."""
    if above >= 1 or free_share(db_path) <= above:
        return None
    return compact(db_path)
