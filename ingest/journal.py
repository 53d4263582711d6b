"""The journal: where agents write while they work, without ever waiting for the warehouse.

DuckDB lets one process write a file at a time, and a build holds the warehouse for
minutes; an agent recording "this pattern worked" cannot wait that long. So writes go to
append-only JSON Lines files beside the warehouse:

    <warehouse dir>/<warehouse stem>.journal/journal-YYYYMMDD.jsonl    (one segment per UTC day)

Each entry is one line written by a single `os.write` on a descriptor opened with
O_APPEND, then `fsync`ed before the call returns. On a local file system O_APPEND makes
the kernel pick the offset and write the bytes in one step, so lines from any number of
concurrent writer processes never interleave, and no lock (file or warehouse) is taken.

A line is {"kind": "pattern" | "event" | "recommendation", "record": {...},
"journaled_at": ISO-8601}. Records are validated with the ingest contract before they are
written (the caller gets the same error message ingest would give), and again when
`engram ingest` / `engram build` / Dagster take the journal in (ingest.loader.load_journal):
that side reads each segment from the byte offset stored in raw.journal_offsets up to the
last complete line, and stores the new offset in the same transaction as the rows, so each
line is loaded or quarantined exactly once even if the process is killed at any point.
A line still being written (no newline yet) is left for the next intake.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from ingest.contract import (
    MAX_ID_CHARS,
    MAX_LINE_BYTES,
    EventRow,
    PatternRow,
    Rejected,
    parse_timestamp,
    validate_event,
    validate_pattern,
)

EntryKind = Literal["pattern", "event", "recommendation"]
ENTRY_KINDS: tuple[EntryKind, ...] = ("pattern", "event", "recommendation")
SEGMENT_PREFIX = "journal-"
SEGMENT_SUFFIX = ".jsonl"
READ_BLOCK = 8 << 20  # bytes read per step when taking a segment in


def journal_dir(db_path: Path) -> Path:
    """The folder of a warehouse's journal segments (one journal per warehouse file)."""
    db_path = Path(db_path)
    return db_path.parent / f"{db_path.stem}.journal"


def segments(db_path: Path) -> list[Path]:
    """The journal's segment files, oldest first (their names sort by date)."""
    folder = journal_dir(db_path)
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.name.startswith(SEGMENT_PREFIX) and p.name.endswith(SEGMENT_SUFFIX) and p.is_file()
    )


def new_id(prefix: str) -> str:
    """A fresh id for a record written without one: prefix + 20 hex characters (random)."""
    return f"{prefix}{uuid.uuid4().hex[:20]}"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def prepare_pattern(record: dict[str, Any]) -> tuple[dict[str, Any], PatternRow]:
    """The record with a generated pattern_id when it has none, validated by the contract
    (raises `Rejected` with ingest's message otherwise)."""
    record = {k: v for k, v in record.items() if v is not None}
    record.setdefault("pattern_id", new_id("pat-"))
    record.setdefault("first_seen", now_iso())
    return record, validate_pattern(record)


def prepare_event(record: dict[str, Any]) -> tuple[dict[str, Any], EventRow]:
    """A usage event with generated event_id / timestamp / session_id where missing,
    validated by the contract; `recommendation_id` (optional) links it to the advice given."""
    record = {k: v for k, v in record.items() if v is not None}
    record.setdefault("event_id", new_id("evt-"))
    record.setdefault("timestamp", now_iso())
    record.setdefault("session_id", os.environ.get("ENGRAM_SESSION_ID") or f"pid-{os.getpid()}")
    row = validate_event(record)
    check_recommendation_id(record.get("recommendation_id"))
    return record, row


def check_recommendation_id(value: Any) -> str | None:
    """None, or a non-empty id string of at most MAX_ID_CHARS (raises `Rejected`)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise Rejected("recommendation_id", "'recommendation_id' must be a non-empty string")
    if len(value) > MAX_ID_CHARS:
        raise Rejected(
            "recommendation_id",
            f"'recommendation_id' is {len(value)} characters long (limit {MAX_ID_CHARS})",
        )
    return value.strip()


class Journal:
    """Appends entries to one warehouse's journal; safe from any number of processes."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        self.folder = journal_dir(self.db_path)

    def segment_for(self, when: datetime) -> Path:
        return self.folder / f"{SEGMENT_PREFIX}{when:%Y%m%d}{SEGMENT_SUFFIX}"

    def append(self, kind: EntryKind, record: dict[str, Any]) -> None:
        """Write one entry durably: one O_APPEND write of the whole line, then fsync."""
        self.append_many([(kind, record)])

    def append_many(self, entries: list[tuple[EntryKind, dict[str, Any]]]) -> None:
        """Several entries, each its own line, in one write and one fsync (a batch from
        stdin costs one disk flush, not one per line)."""
        if not entries:
            return
        stamp = now_iso()
        data = b"".join(
            orjson.dumps(
                {"kind": kind, "record": record, "journaled_at": stamp},
                option=orjson.OPT_APPEND_NEWLINE,
            )
            for kind, record in entries
        )
        for kind, _ in entries:
            if kind not in ENTRY_KINDS:
                raise ValueError(f"unknown journal entry kind {kind!r}")
        if len(data) > MAX_LINE_BYTES * len(entries):
            raise Rejected(None, f"journal entry is over {MAX_LINE_BYTES} bytes")
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.segment_for(datetime.now(UTC))
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, data)
            while written < len(data):  # a short write (full disk, signal): finish the line
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass(frozen=True, slots=True)
class JournalLine:
    """One complete line of a segment: its 1-based line number, text, and the byte offset
    just past its newline (what raw.journal_offsets stores once it is loaded)."""

    line_number: int
    text: str
    end_offset: int


def read_new_lines(path: Path, offset: int, first_line: int) -> Iterator[JournalLine]:
    """Complete lines of a segment from byte `offset` on (`first_line` is the number of the
    line starting there); a trailing line without its newline is not yielded (a writer may
    be in the middle of it)."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        pending = b""
        position = offset
        line_number = first_line
        while True:
            block = handle.read(READ_BLOCK)
            if not block:
                return
            pending += block
            start = 0
            while True:
                end = pending.find(b"\n", start)
                if end < 0:
                    break
                raw = pending[start:end]
                position += end + 1 - start
                text = raw.decode("utf-8", "backslashreplace")
                yield JournalLine(line_number, text, position)
                line_number += 1
                start = end + 1
            pending = pending[start:]


def decode_entry(text: str) -> tuple[EntryKind, dict[str, Any]]:
    """(kind, record) of a journal line, or `Rejected` saying what is wrong with it."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise Rejected(None, f"malformed JSON in the journal: {exc}") from None
    if not isinstance(value, dict):
        raise Rejected(None, "journal line is not an object")
    kind = value.get("kind")
    record = value.get("record")
    if kind not in ENTRY_KINDS:
        raise Rejected("kind", f"journal line has unknown kind {kind!r}")
    if not isinstance(record, dict):
        raise Rejected("record", "journal line has no 'record' object")
    return kind, record


@dataclass(frozen=True, slots=True)
class CandidateRow:
    pattern_id: str
    rank: int
    score: float
    propensity: float
    propensity_best: float | None
    propensity_cautious: float | None
    propensity_explore: float | None
    predicted_success: float | None
    declining: bool


@dataclass(frozen=True, slots=True)
class RecommendationRow:
    recommendation_id: str
    created_at: datetime  # naive UTC
    task: str
    strategy: str
    seed: int | None
    candidates: tuple[CandidateRow, ...]


STRATEGIES = ("best", "cautious", "explore")


def _probability(value: Any, field: str, *, required: bool) -> float | None:
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Rejected(field, f"'{field}' must be a number in [0, 1]")
    if not 0.0 <= float(value) <= 1.0:
        raise Rejected(field, f"'{field}' is {value!r}, outside [0, 1]")
    return float(value)


def validate_recommendation(record: dict[str, Any]) -> RecommendationRow:
    """A logged recommendation (see engram.query.recommend), or `Rejected` naming the field."""
    rec_id = check_recommendation_id(record.get("recommendation_id"))
    if rec_id is None:
        raise Rejected("recommendation_id", "required field 'recommendation_id' is missing")
    if record.get("created_at") is None:
        raise Rejected("created_at", "required field 'created_at' is missing")
    created = parse_timestamp(record["created_at"], "created_at")
    task = record.get("task")
    if not isinstance(task, str) or not task.strip():
        raise Rejected("task", "'task' must be a non-empty string")
    strategy = record.get("strategy")
    if strategy not in STRATEGIES:
        raise Rejected("strategy", f"'strategy' must be one of {', '.join(STRATEGIES)}")
    seed = record.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise Rejected("seed", "'seed' must be an integer")
    raw_candidates = record.get("candidates")
    if not isinstance(raw_candidates, list):
        raise Rejected("candidates", "'candidates' must be a list")
    candidates = []
    for position, item in enumerate(raw_candidates):
        where = f"candidates[{position}]"
        if not isinstance(item, dict):
            raise Rejected("candidates", f"'{where}' must be an object")
        pattern_id = item.get("pattern_id")
        if not isinstance(pattern_id, str) or not pattern_id.strip():
            raise Rejected("candidates", f"'{where}.pattern_id' must be a non-empty string")
        rank = item.get("rank")
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise Rejected("candidates", f"'{where}.rank' must be a positive integer")
        score = item.get("score")
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise Rejected("candidates", f"'{where}.score' must be a number")
        candidates.append(
            CandidateRow(
                pattern_id.strip(),
                rank,
                float(score),
                _probability(item.get("propensity"), f"{where}.propensity", required=True),  # type: ignore[arg-type]
                _probability(
                    item.get("propensity_best"), f"{where}.propensity_best", required=False
                ),
                _probability(
                    item.get("propensity_cautious"), f"{where}.propensity_cautious", required=False
                ),
                _probability(
                    item.get("propensity_explore"), f"{where}.propensity_explore", required=False
                ),
                _probability(
                    item.get("predicted_success"), f"{where}.predicted_success", required=False
                ),
                bool(item.get("declining", False)),
            )
        )
    return RecommendationRow(rec_id, created, task.strip(), strategy, seed, tuple(candidates))
