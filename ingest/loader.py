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
from ingest.embeddings import EmbedStats, embed_missing
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
from ingest.reader import (
    RawRecord,
    UnreadableFile,
    discover_files,
    display_path,
    file_sha256,
    read_records,
)
from ingest.warehouse import connect_for_write

DEFAULT_CHUNK_RECORDS = 50_000
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

    def __init__(self) -> None:
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
                self.events.append((raw.line_number, validate_event(raw.value)))
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


def _flush_patterns(
    con: duckdb.DuckDBPyConnection, rows: list[tuple[int, PatternRow]], file: str, run_id: str
) -> int:
    """Upsert: new ids are inserted, changed ones replaced (and so re-embedded via a new
    description hash), unchanged ones left alone. Within a file the last line wins."""
    con.register("_pattern_rows", _patterns_table(rows))
    con.execute(
        """
        create or replace temp table _pattern_chunk as
        select * from _pattern_rows
        qualify row_number() over (partition by pattern_id order by source_line desc) = 1
        """
    )
    con.unregister("_pattern_rows")
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
        from _pattern_chunk as c
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
        from _pattern_chunk as c
        anti join raw.patterns as p on p.pattern_id = c.pattern_id
        """,
        [file, run_id, now],
    )
    return updated + inserted


def _flush_events(
    con: duckdb.DuckDBPyConnection, rows: list[tuple[int, EventRow]], file: str, run_id: str
) -> int:
    """Insert events whose id is new; the first occurrence of an id wins (events are facts)."""
    con.register("_event_rows", _events_table(rows))
    inserted = _count(
        con,
        """
        insert into raw.usage_events
        with chunk as (
            select * from _event_rows
            qualify row_number() over (partition by event_id order by source_line) = 1
        )
        select c.event_id, c.pattern_id, c.session_id, c.occurred_at, c.outcome_quality,
               c.files_involved, c.tools_used, c.context, sha256(c.context), c.project_id,
               ?, c.source_line, ?, ?
        from chunk as c
        anti join raw.usage_events as e on e.event_id = c.event_id
        """,
        [file, run_id, _now()],
    )
    con.unregister("_event_rows")
    return inserted


def _flush_rejects(
    con: duckdb.DuckDBPyConnection,
    rows: list[tuple[int, str | None, str | None, str, str]],
    file: str,
    run_id: str,
) -> int:
    """Quarantine; the same bad record from the same place is kept once."""
    con.register("_reject_rows", _rejects_table(rows))
    inserted = _count(
        con,
        """
        insert into raw.rejected_records
        select ?, ?, r.line_number, r.record_kind, r.field, r.reason, r.raw_text, r.raw_hash, ?
        from _reject_rows as r
        anti join raw.rejected_records as q
            on q.source_file = ? and q.line_number = r.line_number and q.raw_hash = r.raw_hash
        """,
        [run_id, file, _now(), file],
    )
    con.unregister("_reject_rows")
    return inserted


def _flush(con: duckdb.DuckDBPyConnection, chunk: _Chunk, report: FileReport, run_id: str) -> None:
    file = str(report.path)
    if chunk.patterns:
        loaded = _flush_patterns(con, chunk.patterns, file, run_id)
        report.loaded += loaded
        report.skipped += len(chunk.patterns) - loaded
    if chunk.events:
        loaded = _flush_events(con, chunk.events, file, run_id)
        report.loaded += loaded
        report.skipped += len(chunk.events) - loaded
    if chunk.rejects:
        quarantined = _flush_rejects(con, chunk.rejects, file, run_id)
        report.rejected += quarantined
        report.skipped += len(chunk.rejects) - quarantined
        for line, _kind, field_name, reason, _raw in chunk.rejects:
            if len(report.examples) < 5:
                label = f"{field_name}: " if field_name else ""
                report.examples.append(f"line {line}: {label}{reason}")


def load_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    run_id: str,
    *,
    chunk_records: int = DEFAULT_CHUNK_RECORDS,
    progress: ProgressFactory | None = None,
    on_chunk: ChunkHook | None = None,
) -> FileReport:
    """Load one file in one transaction (see the module docstring for the guarantees)."""
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
    con.execute("begin transaction")
    try:
        chunk = _Chunk()
        for raw in read_records(path):
            report.read += 1
            chunk.add(raw, hint, report)
            if bar:
                bar.update(len(raw.raw_text) + 1)
            if len(chunk) >= chunk_records:
                _flush(con, chunk, report, run_id)
                chunk = _Chunk()
                if on_chunk:
                    on_chunk(path, report.read)
        _flush(con, chunk, report, run_id)
        con.execute(
            "insert into raw.ingested_files values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                run_id,
                str(path),
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
        raise
    finally:
        if bar:
            bar.close()
    return report


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
) -> IngestReport:
    """Ingest files and folders into the warehouse, then embed texts not yet cached.

    A file that cannot be read is recorded in raw.rejected_files and the run goes on (see
    the module docstring); any other error fails the run and is raised."""
    files = discover_files(list(paths))
    run_id = uuid.uuid4().hex[:12]
    con = connect_for_write(db_path)
    _LIVE_RUNS.add(run_id)
    try:
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
                    chunk_records=chunk_records,
                    progress=progress,
                    on_chunk=on_chunk,
                )
                report.files.append(file_report)
                if on_file:
                    on_file(file_report)
            if journal:  # what agents recorded since the last intake (ingest/journal.py)
                for file_report in load_journal(con, db_path, run_id):
                    report.files.append(file_report)
                    if on_file:
                        on_file(file_report)
            if embed:
                report.embed = embed_missing(con, embedder or Embedder(), progress=progress)
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
    chunk_records: int,
    progress: ProgressFactory | None,
    on_chunk: ChunkHook | None,
) -> FileReport:
    """`load_file`, except that a file which cannot be read (UnreadableFile, raised only
    for file problems, after load_file has rolled its transaction back) becomes a row in
    raw.rejected_files. Database errors and interrupts pass through: they fail the run."""
    shown = display_path(path)
    if shown != str(path):
        reason = "the file name is not valid UTF-8: rename the file"
    else:
        try:
            return load_file(
                con, path, run_id, chunk_records=chunk_records, progress=progress, on_chunk=on_chunk
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
                _load_journal_chunk(con, segment, batch, report, run_id)
                lines += len(batch)
                batch = []
                if after_chunk:
                    after_chunk(segment, report.read)
        if batch:
            _load_journal_chunk(con, segment, batch, report, run_id)
        if report.read:
            reports.append(report)
    return reports


def _load_journal_chunk(
    con: duckdb.DuckDBPyConnection,
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
    con.execute("begin transaction")
    try:
        _flush(con, chunk, report, run_id)
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
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


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
