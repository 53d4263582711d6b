"""The write path: record a pattern or an outcome while working, without the warehouse lock.

Records are checked with the ingest contract (ingest/contract.py: same rules, same
messages) and appended durably to the warehouse's journal (ingest/journal.py). They reach
the marts with the next `engram ingest` / `engram build` / Dagster run; until then the
read-your-writes overlay (engram/query/overlay.py) shows them to `similar` and `recommend`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from engram.query.errors import InvalidQuery
from ingest.contract import Rejected
from ingest.journal import EntryKind, Journal, prepare_event, prepare_pattern

RecordKind = Literal["pattern", "outcome"]


class InvalidRecord(InvalidQuery):
    """A record that breaks the contract: `field` and `reason` as ingest would quarantine it;
    `line` is the stdin line number for batches."""

    def __init__(self, field: str | None, reason: str, line: int | None = None) -> None:
        self.field = field
        self.reason = reason
        self.line = line
        where = f"line {line}: " if line is not None else ""
        label = f"{field}: " if field else ""
        super().__init__(f"{where}{label}{reason}")


@dataclass(frozen=True)
class Recorded:
    """What was written: the kind, the id (given or generated) and the full record."""

    kind: RecordKind
    id: str
    record: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        key = "pattern_id" if self.kind == "pattern" else "event_id"
        return {"kind": self.kind, key: self.id, "record": self.record}


def prepare(kind: RecordKind, record: dict[str, Any], line: int | None = None) -> Recorded:
    """Fill generated fields and validate, raising InvalidRecord with ingest's message."""
    try:
        if kind == "pattern":
            full, row = prepare_pattern(record)
            return Recorded("pattern", row.pattern_id, full)
        if kind == "outcome":
            full, event = prepare_event(record)
            return Recorded("outcome", event.event_id, full)
    except Rejected as rejection:
        raise InvalidRecord(rejection.field, rejection.reason, line) from None
    raise InvalidQuery(f"unknown record kind {kind!r}: expected pattern or outcome")


def write(db_path: Path, recorded: Iterable[Recorded]) -> list[Recorded]:
    """Append prepared records to the journal: one write and one fsync for all of them."""
    items = list(recorded)
    kinds: dict[RecordKind, EntryKind] = {"pattern": "pattern", "outcome": "event"}
    Journal(db_path).append_many([(kinds[r.kind], r.record) for r in items])
    return items


def record_pattern(
    db_path: Path,
    description: str,
    *,
    pattern_type: str | None = None,
    metadata: dict[str, Any] | None = None,
    pattern_id: str | None = None,
    first_seen: str | None = None,
) -> Recorded:
    """Record a pattern (id generated when not given); durable when this returns."""
    record = {
        "pattern_id": pattern_id,
        "description": description,
        "pattern_type": pattern_type,
        "metadata": metadata,
        "first_seen": first_seen,
    }
    return write(db_path, [prepare("pattern", record)])[0]


def record_outcome(
    db_path: Path,
    pattern_id: str,
    outcome_quality: float,
    *,
    task: str | None = None,
    files: list[str] | None = None,
    tools: list[str] | None = None,
    session_id: str | None = None,
    recommendation_id: str | None = None,
    event_id: str | None = None,
    timestamp: str | None = None,
    project_id: str | None = None,
) -> Recorded:
    """Record a usage event: `pattern_id` was used for `task` and went this well (0..1)."""
    record = {
        "event_id": event_id,
        "pattern_id": pattern_id,
        "session_id": session_id,
        "timestamp": timestamp,
        "outcome_quality": outcome_quality,
        "files_involved": files,
        "tools_used": tools,
        "context": task,
        "project_id": project_id,
        "recommendation_id": recommendation_id,
    }
    return write(db_path, [prepare("outcome", record)])[0]


def record_json_lines(db_path: Path, kind: RecordKind, lines: Iterable[str]) -> list[Recorded]:
    """Record every JSON object of `lines` (blank lines skipped), all or nothing: when any
    line is bad, nothing is written and InvalidRecord names the first bad line; use
    `check_json_lines` to get every problem."""
    prepared, problems = check_json_lines(kind, lines)
    if problems:
        raise problems[0]
    return write(db_path, prepared)


def check_json_lines(
    kind: RecordKind, lines: Iterable[str], project: str | None = None
) -> tuple[list[Recorded], list[InvalidRecord]]:
    """Each line prepared, or its problem (line numbers are 1-based). Outcomes without a
    project_id get `project` when given (`engram record --project`)."""
    prepared: list[Recorded] = []
    problems: list[InvalidRecord] = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            problems.append(InvalidRecord(None, f"malformed JSON: {exc}", number))
            continue
        if not isinstance(value, dict):
            problems.append(InvalidRecord(None, "expected a JSON object", number))
            continue
        if kind == "outcome" and "task" in value and "context" not in value:
            value["context"] = value.pop("task")
        if kind == "outcome" and project is not None and value.get("project_id") is None:
            value["project_id"] = project
        try:
            prepared.append(prepare(kind, value, number))
        except InvalidRecord as problem:
            problems.append(problem)
    return prepared, problems
