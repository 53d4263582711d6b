"""Load validated records into the raw schema, one transaction per file.

Guarantees, per file: every record read is counted exactly once as loaded, skipped (already
present: a duplicate event, an unchanged or superseded pattern, an already-quarantined bad
record, or a file whose exact content was ingested before) or rejected (quarantined in
raw.rejected_records with its reason). A crash rolls the whole file back; the ledger row in
raw.ingested_files is written in the same transaction, so a re-run redoes exactly the files
that did not commit.

Per run, two kinds of failure are kept apart on purpose:
- a file that cannot be read at all (`UnreadableFile`: permission denied, a folder or pipe
  in its place, an I/O error, the wrong encoding, a name that is not UTF-8) is a problem of
  that file: its transaction is rolled back, one row goes to raw.rejected_files with the
  reason, and the run goes on with the next file;
- anything else (a database error such as a full disk, an interrupt) is a problem of the
  run: it is recorded as `failed` in raw.ingest_runs and raised.
A run that never finished (its process was killed) is marked `abandoned` by the next run.

Memory stays bounded whatever the file's size: a file is read chunk by chunk into a scratch
DuckDB file beside the warehouse (`<stem>.ingest-<run>.scratch.duckdb`), the chunk's new
texts are embedded, and only when the whole file has been read are its rows published into
raw.* in one transaction (DuckDB spills to disk past INGEST_MEMORY_LIMIT). Holding the
rows in the warehouse's own open transaction instead made memory grow with the file. A
failure rolls the publish back and deletes the scratch file; a kill leaves at most a
scratch file, which the next run deletes.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from ingest import __version__
from ingest.contract import (
    EventRow,
    PatternRow,
    RecordKind,
    Rejected,
    kind_from_fields,
    kind_from_filename,
    storable_text,
    validate_event,
    validate_pattern,
)
from ingest.embedder import Embedder, text_hash
from ingest.embeddings import EmbedStats, embed_missing, embed_new_texts
from ingest.journal import (
    JournalLine,
    RecommendationRow,
    check_recommendation_id,
    decode_entry,
    read_new_lines,
    validate_recommendation,
)
from ingest.journal import segments as journal_segments
from ingest.progress import ProgressBar, ProgressFactory
from ingest.project_identity import DEFAULT_PROJECT
from ingest.reader import (
    RawRecord,
    UnreadableFile,
    discover_files,
    display_path,
    file_sha256,
    read_records,
)
from ingest.warehouse import connect_for_write, sql_string

DEFAULT_CHUNK_RECORDS = 20_000
# DuckDB's buffer pool during an ingest: the publish's joins and windows spill past it
# (to <warehouse>.tmp/). The model and torch take ~600 MiB of the 1 GiB budget
# (bench/ingest_memory.py); 256MB here peaked at 1,069 MiB on a 10M-event file.
INGEST_MEMORY_LIMIT = "128MB"
SCRATCH_SUFFIX = ".scratch.duckdb"
PROGRESS_MIN_BYTES = 8 << 20  # show a per-file bar for files over 8 MiB

ChunkHook = Callable[[Path, int], None]


@dataclass
class FileReport:
    path: Path
    read: int = 0
    loaded: int = 0
    skipped: int = 0
    rejected: int = 0
    already_ingested: bool = False
    examples: list[str] = field(default_factory=list)  # first rejections, "line N: field: why"
    reasons: Counter[str] = field(default_factory=Counter)
    # Why the file as a whole could not be read (then nothing of it was loaded and the
    # counts are 0); None for a file that was read. Kept in raw.rejected_files.
    file_rejected: str | None = None
    # Texts embedded while the file was read (each chunk's texts not yet cached).
    embedded: int = 0

    @property
    def name(self) -> str:
        """The path as printable, storable text (see reader.display_path)."""
        return display_path(self.path)


@dataclass
class IngestReport:
    run_id: str
    files: list[FileReport]
    embed: EmbedStats | None = None

    def total(self, name: str) -> int:
        return sum(getattr(f, name) for f in self.files)

    @property
    def nothing_read(self) -> bool:
        return self.total("read") == 0

    @property
    def files_rejected(self) -> list[FileReport]:
        return [f for f in self.files if f.file_rejected is not None]

    @property
    def anything_rejected(self) -> bool:
        """A record quarantined or a file refused: what --strict fails on."""
        return self.total("rejected") > 0 or bool(self.files_rejected)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class _Chunk:
    """Validated rows and rejections accumulated column-wise until the next flush."""

    def __init__(self, project: str = DEFAULT_PROJECT) -> None:
        self.project = project  # given to events without a project_id
        self.patterns: list[tuple[int, PatternRow]] = []
        self.events: list[tuple[int, EventRow]] = []
        self.rejects: list[tuple[int, str | None, str | None, str, str]] = []

    def __len__(self) -> int:
        return len(self.patterns) + len(self.events) + len(self.rejects)

    def add(self, raw: RawRecord, hint: RecordKind | None, report: FileReport) -> None:
        kind: RecordKind | None = hint
        try:
            if raw.value is None:
                raise Rejected(None, raw.error or "unreadable record")
            kind = hint or kind_from_fields(raw.value)
            if kind == "pattern":
                self.patterns.append((raw.line_number, validate_pattern(raw.value)))
            else:
                self.events.append((raw.line_number, validate_event(raw.value, self.project)))
        except Rejected as rejection:
            self.rejects.append(
                (raw.line_number, kind, rejection.field, rejection.reason, raw.raw_text)
            )
            label = f"{rejection.field}: " if rejection.field else ""
            report.reasons[f"{label}{_reason_family(rejection.reason)}"] += 1


def _reason_family(reason: str) -> str:
    """Group reasons for the summary: drop the quoted values that differ per record."""
    return reason.split(":")[0] if reason.startswith("malformed JSON") else reason.split(", got")[0]


def _patterns_table(rows: list[tuple[int, PatternRow]]) -> pa.Table:
    return pa.table(
        {
            "source_line": pa.array([line for line, _ in rows], type=pa.int64()),
            "pattern_id": pa.array([r.pattern_id for _, r in rows], type=pa.string()),
            "description": pa.array([r.description for _, r in rows], type=pa.string()),
            "pattern_type": pa.array([r.pattern_type for _, r in rows], type=pa.string()),
            "first_seen": pa.array([r.first_seen for _, r in rows], type=pa.timestamp("us")),
            "metadata": pa.array([r.metadata for _, r in rows], type=pa.string()),
        }
    )


def _events_table(rows: list[tuple[int, EventRow]]) -> pa.Table:
    return pa.table(
        {
            "source_line": pa.array([line for line, _ in rows], type=pa.int64()),
            "event_id": pa.array([r.event_id for _, r in rows], type=pa.string()),
            "pattern_id": pa.array([r.pattern_id for _, r in rows], type=pa.string()),
            "session_id": pa.array([r.session_id for _, r in rows], type=pa.string()),
            "occurred_at": pa.array([r.occurred_at for _, r in rows], type=pa.timestamp("us")),
            "outcome_quality": pa.array([r.outcome_quality for _, r in rows], type=pa.float64()),
            "files_involved": pa.array(
                [r.files_involved for _, r in rows], type=pa.list_(pa.string())
            ),
            "tools_used": pa.array([r.tools_used for _, r in rows], type=pa.list_(pa.string())),
            "context": pa.array([r.context for _, r in rows], type=pa.string()),
            "project_id": pa.array([r.project_id for _, r in rows], type=pa.string()),
        }
    )


def _rejects_table(rows: list[tuple[int, str | None, str | None, str, str]]) -> pa.Table:
    return pa.table(
        {
            "line_number": pa.array([r[0] for r in rows], type=pa.int64()),
            "record_kind": pa.array([r[1] for r in rows], type=pa.string()),
            "field": pa.array([r[2] for r in rows], type=pa.string()),
            "reason": pa.array([r[3] for r in rows], type=pa.string()),
            "raw_text": pa.array([r[4] for r in rows], type=pa.string()),
            "raw_hash": pa.array([text_hash(r[4]) for r in rows], type=pa.string()),
        }
    )


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: list[object]) -> int:
    row = con.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


def scratch_prefix(db_path: Path) -> str:
    """Scratch files of a warehouse are named `<prefix><run_id>.scratch.duckdb`."""
    return f"{Path(db_path).stem}.ingest-"


def scratch_path(db_path: Path, run_id: str) -> Path:
    db_path = Path(db_path)
    return db_path.parent / f"{scratch_prefix(db_path)}{run_id}{SCRATCH_SUFFIX}"


def _remove_database_files(path: Path) -> None:
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)


def remove_stale_scratch(db_path: Path, live: set[str]) -> list[Path]:
    """Delete scratch files left by killed runs (only the writer holding the warehouse's
    lock calls this, so no other process can be using one); returns what was deleted."""
    db_path = Path(db_path)
    prefix = scratch_prefix(db_path)
    removed: list[Path] = []
    try:
        entries = list(db_path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not name.startswith(prefix) or SCRATCH_SUFFIX not in name:
            continue
        run_id = name[len(prefix) :].split(".", 1)[0]
        if run_id in live:
            continue
        with contextlib.suppress(OSError):
            entry.unlink()
            removed.append(entry)
    return removed


class _Staging:
    """One file's rows, staged chunk by chunk in a scratch DuckDB file attached to the
    warehouse connection, then published into raw.* in one transaction.

    Counting happens at publish, against what raw.* holds then: every staged row is either
    loaded or skipped, every staged rejection quarantined or skipped, so read = loaded +
    skipped + rejected holds per file."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, run_id: str) -> None:
        self.con = con
        self.path = path
        # Attached databases belong to the DuckDB instance, which connections to the same
        # file in one process share: the alias is unique per run.
        self.alias = f"engram_scratch_{run_id}"
        self.staged = {"patterns": 0, "events": 0, "rejects": 0}
        _remove_database_files(path)
        con.execute(f"attach {sql_string(path)} as {self.alias}")
        self.attached = True
        for name, empty in (
            ("patterns", _patterns_table([])),
            ("events", _events_table([])),
            ("rejects", _rejects_table([])),
        ):
            con.register("_staging_schema", empty)
            con.execute(f"create table {self.alias}.{name} as select * from _staging_schema")
            con.unregister("_staging_schema")

    def _append(self, name: str, table: pa.Table) -> None:
        self.con.register("_staging_rows", table)
        try:
            self.con.execute(f"insert into {self.alias}.{name} select * from _staging_rows")
        finally:
            self.con.unregister("_staging_rows")
        self.staged[name] += table.num_rows

    def stage(self, chunk: _Chunk, report: FileReport) -> None:
        if chunk.patterns:
            self._append("patterns", _patterns_table(chunk.patterns))
        if chunk.events:
            self._append("events", _events_table(chunk.events))
        if chunk.rejects:
            self._append("rejects", _rejects_table(chunk.rejects))
            for line, _kind, field_name, reason, _raw in chunk.rejects:
                if len(report.examples) >= 5:
                    break
                label = f"{field_name}: " if field_name else ""
                report.examples.append(f"line {line}: {label}{reason}")

    def publish(self, report: FileReport, run_id: str, sha: str, size: int) -> None:
        """Everything staged into raw.*, plus the file's ledger row, in one transaction."""
        con, file = self.con, str(report.path)
        con.execute("begin transaction")
        try:
            self.publish_rows(report, run_id)
            con.execute(
                "insert into raw.ingested_files values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    run_id,
                    file,
                    sha,
                    size,
                    report.read,
                    report.loaded,
                    report.skipped,
                    report.rejected,
                    _now(),
                ],
            )
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            report.loaded = report.skipped = report.rejected = 0
            raise

    def publish_rows(self, report: FileReport, run_id: str) -> None:
        """The staged rows into raw.*, counted into `report`, inside the caller's
        transaction (publish adds the file's ledger row; the journal intake its offset)."""
        file = str(report.path)
        if self.staged["patterns"]:
            loaded = self._publish_patterns(file, run_id)
            report.loaded += loaded
            report.skipped += self.staged["patterns"] - loaded
        if self.staged["events"]:
            loaded = self._publish_events(file, run_id)
            report.loaded += loaded
            report.skipped += self.staged["events"] - loaded
        if self.staged["rejects"]:
            quarantined = self._publish_rejects(file, run_id)
            report.rejected += quarantined
            report.skipped += self.staged["rejects"] - quarantined

    def _publish_patterns(self, file: str, run_id: str) -> int:
        """Upsert: new ids are inserted, changed ones replaced (and so re-embedded via a new
        description hash), unchanged ones left alone. Within a file the last line wins."""
        con = self.con
        con.execute(
            f"""
            create or replace temp table _pattern_file as
            select * from {self.alias}.patterns
            qualify row_number() over (partition by pattern_id order by source_line desc) = 1
            """
        )
        changed = """
            p.description <> c.description
            or p.pattern_type is distinct from c.pattern_type
            or p.first_seen is distinct from c.first_seen
            or p.metadata::varchar is distinct from c.metadata
        """
        now = _now()
        updated = _count(
            con,
            f"""
            update raw.patterns as p set
                description = c.description, description_hash = sha256(c.description),
                pattern_type = c.pattern_type, first_seen = c.first_seen, metadata = c.metadata,
                source_file = ?, source_line = c.source_line, run_id = ?, loaded_at = ?
            from _pattern_file as c
            where p.pattern_id = c.pattern_id and ({changed})
            """,
            [file, run_id, now],
        )
        inserted = _count(
            con,
            """
            insert into raw.patterns
            select c.pattern_id, c.description, sha256(c.description), c.pattern_type,
                   c.first_seen, c.metadata, ?, c.source_line, ?, ?
            from _pattern_file as c
            anti join raw.patterns as p on p.pattern_id = c.pattern_id
            """,
            [file, run_id, now],
        )
        con.execute("drop table _pattern_file")
        return updated + inserted

    def _publish_events(self, file: str, run_id: str) -> int:
        """Insert events whose id is new; the first occurrence of an id wins (events are
        facts, a resent one changes nothing)."""
        return _count(
            self.con,
            f"""
            insert into raw.usage_events
            with staged as (
                select * from {self.alias}.events
                qualify row_number() over (partition by event_id order by source_line) = 1
            )
            select c.event_id, c.pattern_id, c.session_id, c.occurred_at, c.outcome_quality,
                   c.files_involved, c.tools_used, c.context, sha256(c.context), c.project_id,
                   ?, c.source_line, ?, ?
            from staged as c
            anti join raw.usage_events as e on e.event_id = c.event_id
            """,
            [file, run_id, _now()],
        )

    def _publish_rejects(self, file: str, run_id: str) -> int:
        """Quarantine; the same bad record from the same place is kept once."""
        return _count(
            self.con,
            f"""
            insert into raw.rejected_records
            select ?, ?, r.line_number, r.record_kind, r.field, r.reason, r.raw_text,
                   r.raw_hash, ?
            from {self.alias}.rejects as r
            anti join raw.rejected_records as q
                on q.source_file = ? and q.line_number = r.line_number
                and q.raw_hash = r.raw_hash
            """,
            [run_id, file, _now(), file],
        )

    def close(self) -> None:
        """Detach and delete the scratch file (also after a failure)."""
        if self.attached:
            self.attached = False
            with contextlib.suppress(duckdb.Error):
                self.con.execute(f"detach {self.alias}")
        _remove_database_files(self.path)


def _chunk_texts(chunk: _Chunk) -> dict[str, str]:
    """hash -> text for the chunk's distinct descriptions and contexts."""
    distinct = {row.description for _, row in chunk.patterns}
    distinct.update(row.context for _, row in chunk.events if row.context is not None)
    return {text_hash(text): text for text in distinct}


def load_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    run_id: str,
    *,
    scratch: Path,
    embedder: Embedder | None = None,
    chunk_records: int = DEFAULT_CHUNK_RECORDS,
    progress: ProgressFactory | None = None,
    on_chunk: ChunkHook | None = None,
    project: str = DEFAULT_PROJECT,
) -> FileReport:
    """Load one file atomically (see the module docstring for the guarantees): stage it in
    the scratch file `scratch` chunk by chunk, embedding each chunk's new texts when an
    embedder is given, then publish it in one transaction. `report.embedded` counts the
    texts embedded on the way."""
    report = FileReport(path)
    sha, size = file_sha256(path)
    previous = con.execute(
        "select records_read from raw.ingested_files where content_sha256 = ? limit 1", [sha]
    ).fetchone()
    if previous is not None:
        report.read = report.skipped = int(previous[0])
        report.already_ingested = True
        return report

    hint = kind_from_filename(path.name)
    bar: ProgressBar | None = None
    if progress and size >= PROGRESS_MIN_BYTES:
        bar = progress(size, f"reading {path.name}")
    staging = _Staging(con, scratch, run_id)
    try:
        chunk = _Chunk(project)
        for raw in read_records(path):
            report.read += 1
            chunk.add(raw, hint, report)
            if bar is not None:
                bar.update(len(raw.raw_text) + 1)
            if len(chunk) >= chunk_records:
                _stage(con, staging, chunk, report, embedder)
                chunk = _Chunk(project)
                if on_chunk:
                    on_chunk(path, report.read)
        _stage(con, staging, chunk, report, embedder)
        if bar is not None:
            bar.close()
            bar = progress(0, f"publishing {path.name}") if progress else None
        staging.publish(report, run_id, sha, size)
    finally:
        if bar is not None:
            bar.close()
        staging.close()
    return report


def _stage(
    con: duckdb.DuckDBPyConnection,
    staging: _Staging,
    chunk: _Chunk,
    report: FileReport,
    embedder: Embedder | None,
) -> None:
    staging.stage(chunk, report)
    if embedder is not None:
        report.embedded += embed_new_texts(con, embedder, _chunk_texts(chunk))


def ingest_paths(
    paths: Iterable[Path],
    db_path: Path,
    *,
    embed: bool = True,
    embedder: Embedder | None = None,
    chunk_records: int = DEFAULT_CHUNK_RECORDS,
    progress: ProgressFactory | None = None,
    on_chunk: ChunkHook | None = None,
    on_file: Callable[[FileReport], None] | None = None,
    journal: bool = True,
    project: str = DEFAULT_PROJECT,
) -> IngestReport:
    """Ingest files and folders into the warehouse, then embed texts not yet cached.

    Events without a project_id get `project` (the CLI passes --project or the project
    derived from the working directory: ingest/project_identity.py). A file already
    ingested (same content) is skipped whatever the project: to load the same file as
    another project, copy it with project_id set in its records.

    A file that cannot be read is recorded in raw.rejected_files and the run goes on (see
    the module docstring); any other error fails the run and is raised."""
    files = discover_files(list(paths))
    run_id = uuid.uuid4().hex[:12]
    con = connect_for_write(db_path)
    _LIVE_RUNS.add(run_id)
    model = (embedder or Embedder()) if embed else None
    try:
        con.execute(f"set memory_limit = '{INGEST_MEMORY_LIMIT}'")
        # Rows carry source_line; their physical order in raw.* means nothing, and keeping
        # it makes DuckDB buffer large inserts.
        con.execute("set preserve_insertion_order = false")
        remove_stale_scratch(db_path, _LIVE_RUNS)
        _abandon_stale_runs(con, run_id)
        con.execute(
            "insert into raw.ingest_runs (run_id, started_at, status, files_seen, engram_version)"
            " values (?, ?, 'running', ?, ?)",
            [run_id, _now(), len(files), __version__],
        )
        report = IngestReport(run_id, [])
        try:
            for path in files:
                file_report = _load_or_reject(
                    con,
                    path,
                    run_id,
                    scratch=scratch_path(db_path, run_id),
                    embedder=model,
                    chunk_records=chunk_records,
                    progress=progress,
                    on_chunk=on_chunk,
                    project=project,
                )
                report.files.append(file_report)
                if on_file:
                    on_file(file_report)
            if journal:  # what agents recorded since the last intake (ingest/journal.py)
                for file_report in load_journal(con, db_path, run_id):
                    report.files.append(file_report)
                    if on_file:
                        on_file(file_report)
            if model is not None:
                # What the files' chunks did not embed: texts of earlier --no-embed runs.
                rest = embed_missing(con, model, progress=progress)
                embedded = rest.texts_embedded + report.total("embedded")
                report.embed = EmbedStats(
                    rest.texts_referenced,
                    embedded,
                    max(rest.texts_referenced - embedded, 0),
                    rest.model,
                )
        except BaseException as exc:
            # When the database itself is what failed, keep (raise) the first error.
            with contextlib.suppress(duckdb.Error):
                error = storable_text(f"{type(exc).__name__}: {exc}")
                _finish_run(con, report, "failed", error)
            raise
        _finish_run(con, report, "succeeded", None)
        return report
    finally:
        _LIVE_RUNS.discard(run_id)
        con.close()


# Runs in progress in this process. DuckDB's write lock is per process, so while a writer
# holds it the only other live runs can be this process's own (threads); every other
# `running` row belongs to a process that died.
_LIVE_RUNS: set[str] = set()


def _abandon_stale_runs(con: duckdb.DuckDBPyConnection, run_id: str) -> int:
    """Mark `abandoned` the runs left `running` by a process that was killed: this writer
    holds the warehouse's write lock, so no other process can still be running one."""
    live = sorted(_LIVE_RUNS - {run_id})
    keep = f" and run_id not in ({', '.join('?' * len(live))})" if live else ""
    return _count(
        con,
        f"""
        update raw.ingest_runs set status = 'abandoned',
            error = coalesce(error || '; ', '') || ?
        where status = 'running'{keep}
        """,
        [
            f"abandoned: the process stopped before the run finished (killed?); found by run "
            f"{run_id} at {_now():%Y-%m-%d %H:%M:%S} UTC",
            *live,
        ],
    )


def _load_or_reject(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    run_id: str,
    *,
    scratch: Path,
    embedder: Embedder | None,
    chunk_records: int,
    progress: ProgressFactory | None,
    on_chunk: ChunkHook | None,
    project: str = DEFAULT_PROJECT,
) -> FileReport:
    """`load_file`, except that a file which cannot be read (UnreadableFile, raised only
    for file problems, after load_file has rolled back and deleted its scratch) becomes a row in
    raw.rejected_files. Database errors and interrupts pass through: they fail the run."""
    shown = display_path(path)
    if shown != str(path):
        reason = "the file name is not valid UTF-8: rename the file"
    else:
        try:
            return load_file(
                con,
                path,
                run_id,
                scratch=scratch,
                embedder=embedder,
                chunk_records=chunk_records,
                progress=progress,
                on_chunk=on_chunk,
                project=project,
            )
        except UnreadableFile as exc:
            reason = exc.reason
    report = FileReport(path, file_rejected=reason)
    try:
        size: int | None = path.stat().st_size
    except OSError:
        size = None
    con.execute(
        "insert into raw.rejected_files values (?, ?, ?, ?, ?)",
        [run_id, shown, reason, size, _now()],
    )
    return report


def _finish_run(
    con: duckdb.DuckDBPyConnection, report: IngestReport, status: str, error: str | None
) -> None:
    embed = report.embed
    con.execute(
        """
        update raw.ingest_runs set finished_at = ?, status = ?, records_read = ?,
            records_loaded = ?, records_skipped = ?, records_rejected = ?,
            texts_embedded = ?, texts_cached = ?, error = ?
        where run_id = ?
        """,
        [
            _now(),
            status,
            report.total("read"),
            report.total("loaded"),
            report.total("skipped"),
            report.total("rejected"),
            embed.texts_embedded if embed else None,
            embed.texts_cached if embed else None,
            error,
            report.run_id,
        ],
    )


# ------------------------------------------------------------------------------ journal

JOURNAL_CHUNK_LINES = 20_000  # lines per transaction when taking the journal in


def load_journal(
    con: duckdb.DuckDBPyConnection,
    db_path: Path,
    run_id: str,
    *,
    chunk_lines: int = JOURNAL_CHUNK_LINES,
    after_chunk: ChunkHook | None = None,
) -> list[FileReport]:
    """Take in the lines written to the warehouse's journal since the last intake.

    Per segment, lines are read from the byte offset in raw.journal_offsets; each chunk of
    lines is loaded (patterns, events, recommendations) or quarantined and the new offset
    stored in ONE transaction, so a kill at any point loses or repeats nothing: the next
    intake starts exactly after the last committed line. Returns one report per segment
    with new lines (read = loaded + skipped + rejected, as for files)."""
    reports = []
    scratch = scratch_path(db_path, run_id)
    for segment in journal_segments(db_path):
        row = con.execute(
            "select byte_offset, lines from raw.journal_offsets where journal_file = ?",
            [segment.name],
        ).fetchone()
        offset, lines = (int(row[0]), int(row[1])) if row else (0, 0)
        if segment.stat().st_size <= offset:
            continue
        report = FileReport(segment)
        batch: list[JournalLine] = []
        for line in read_new_lines(segment, offset, lines + 1):
            batch.append(line)
            if len(batch) >= chunk_lines:
                _load_journal_chunk(con, scratch, segment, batch, report, run_id)
                lines += len(batch)
                batch = []
                if after_chunk:
                    after_chunk(segment, report.read)
        if batch:
            _load_journal_chunk(con, scratch, segment, batch, report, run_id)
        if report.read:
            reports.append(report)
    return reports


def _load_journal_chunk(
    con: duckdb.DuckDBPyConnection,
    scratch: Path,
    segment: Path,
    batch: list[JournalLine],
    report: FileReport,
    run_id: str,
) -> None:
    """One transaction: the rows of these lines, and the segment's new offset."""
    chunk = _Chunk()
    recommendations: list[tuple[int, RecommendationRow]] = []
    links: list[tuple[int, str, str]] = []  # (line, event_id, recommendation_id)
    for line in batch:
        report.read += 1
        try:
            kind, record = decode_entry(line.text)
        except Rejected as rejection:
            chunk.add(RawRecord(line.line_number, line.text, None, rejection.reason), None, report)
            continue
        if kind == "recommendation":
            try:
                recommendations.append((line.line_number, validate_recommendation(record)))
            except Rejected as rejection:
                chunk.rejects.append(
                    (line.line_number, kind, rejection.field, rejection.reason, line.text)
                )
            continue
        if kind == "event":
            try:
                link = check_recommendation_id(record.get("recommendation_id"))
            except Rejected as rejection:
                chunk.rejects.append(
                    (line.line_number, kind, rejection.field, rejection.reason, line.text)
                )
                continue
            before = len(chunk.events)
            chunk.add(RawRecord(line.line_number, line.text, record), kind, report)
            if link and len(chunk.events) > before:
                links.append((line.line_number, chunk.events[-1][1].event_id, link))
            continue
        chunk.add(RawRecord(line.line_number, line.text, record), kind, report)
    staging = _Staging(con, scratch, run_id)
    try:
        staging.stage(chunk, report)
        con.execute("begin transaction")
        try:
            _publish_journal_chunk(
                con, staging, segment, batch, report, run_id, recommendations, links
            )
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    finally:
        staging.close()


def _publish_journal_chunk(
    con: duckdb.DuckDBPyConnection,
    staging: _Staging,
    segment: Path,
    batch: list[JournalLine],
    report: FileReport,
    run_id: str,
    recommendations: list[tuple[int, RecommendationRow]],
    links: list[tuple[int, str, str]],
) -> None:
    """Inside the caller's transaction: the rows, the recommendations and links, and the
    segment's new offset."""
    staging.publish_rows(report, run_id)
    if recommendations:
        loaded = _flush_recommendations(con, recommendations, str(segment))
        report.loaded += loaded
        report.skipped += len(recommendations) - loaded
    if links:
        _flush_links(con, links, str(segment))
    con.execute("delete from raw.journal_offsets where journal_file = ?", [segment.name])
    con.execute(
        "insert into raw.journal_offsets values (?, ?, ?, ?)",
        [segment.name, batch[-1].end_offset, batch[-1].line_number, _now()],
    )


def _flush_recommendations(
    con: duckdb.DuckDBPyConnection, rows: list[tuple[int, RecommendationRow]], file: str
) -> int:
    """Insert recommendations whose id is new (the first line of an id wins), with their
    shown candidates."""
    now = _now()
    seen = {
        r[0]
        for r in con.execute(
            "select recommendation_id from raw.recommendations"
            " where recommendation_id in (select unnest(?::varchar[]))",
            [[row.recommendation_id for _, row in rows]],
        ).fetchall()
    }
    header, candidates = [], []
    for line, row in rows:
        if row.recommendation_id in seen:
            continue
        seen.add(row.recommendation_id)
        header.append(
            [
                row.recommendation_id,
                row.created_at,
                row.task,
                row.strategy,
                row.seed,
                len(row.candidates),
                file,
                line,
                now,
            ]
        )
        candidates += [
            [
                row.recommendation_id,
                c.rank,
                c.pattern_id,
                c.score,
                c.propensity,
                c.propensity_best,
                c.propensity_cautious,
                c.propensity_explore,
                c.predicted_success,
                c.declining,
            ]
            for c in row.candidates
        ]
    if header:
        con.executemany(
            "insert into raw.recommendations values (?, ?, ?, ?, ?, ?, ?, ?, ?)", header
        )
    if candidates:
        con.executemany(
            "insert into raw.recommendation_candidates values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            candidates,
        )
    return len(header)


def _flush_links(
    con: duckdb.DuckDBPyConnection, links: list[tuple[int, str, str]], file: str
) -> None:
    con.executemany(
        """
        insert into raw.recommendation_links
        select ?, ?, ?, ?, ?
        where not exists (select 1 from raw.recommendation_links where event_id = ?)
        """,
        [[event_id, rec_id, file, line, _now(), event_id] for line, event_id, rec_id in links],
    )
