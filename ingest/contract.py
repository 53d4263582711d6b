"""The input contract: what a pattern and a usage event must look like.

Each validator turns one decoded JSON object into a clean row or raises `Rejected`
naming the field and the reason, so the loader can quarantine the record verbatim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

RecordKind = Literal["pattern", "event"]

# Limits that keep one bad record from hurting everyone ("absurdly long strings").
MAX_LINE_BYTES = 1_000_000
MAX_ID_CHARS = 256
MAX_DESCRIPTION_CHARS = 10_000
MAX_CONTEXT_CHARS = 20_000
MAX_TYPE_CHARS = 256
MAX_PATH_CHARS = 1_024
MAX_LIST_ITEMS = 1_000
MAX_METADATA_BYTES = 65_536
MIN_YEAR, MAX_YEAR = 1970, 2100

EVENT_FIELDS = frozenset({"event_id", "session_id", "outcome_quality", "timestamp"})
PATTERN_FIELDS = frozenset({"description", "pattern_type", "first_seen"})


class Rejected(Exception):
    """A record that breaks the contract: `field` is None for whole-record problems."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PatternRow:
    pattern_id: str
    description: str
    pattern_type: str | None
    first_seen: datetime | None
    metadata: str | None  # JSON text


@dataclass(frozen=True, slots=True)
class EventRow:
    event_id: str
    pattern_id: str
    session_id: str
    occurred_at: datetime  # naive, UTC
    outcome_quality: float
    files_involved: list[str]
    tools_used: list[str]
    context: str | None
    project_id: str


def kind_from_filename(name: str) -> RecordKind | None:
    """`patterns*` files hold patterns and `events*` files hold events; other names: by fields."""
    lowered = name.lower()
    if lowered.startswith("patterns"):
        return "pattern"
    if lowered.startswith("events") or lowered.startswith("usage_events"):
        return "event"
    return None


def kind_from_fields(record: dict[str, Any]) -> RecordKind:
    """Any event-only field makes an event; otherwise a description makes a pattern."""
    if EVENT_FIELDS & record.keys():
        return "event"
    if PATTERN_FIELDS & record.keys():
        return "pattern"
    raise Rejected(
        None,
        "cannot tell whether this is a pattern or a usage event: expected pattern fields "
        "(pattern_id, description) or event fields (event_id, session_id, timestamp, "
        "outcome_quality); name the file patterns*.jsonl or events*.jsonl to say which",
    )


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _required_id(record: dict[str, Any], field: str, *, allow_int: bool) -> str:
    if field not in record or record[field] is None:
        raise Rejected(field, f"required field '{field}' is missing")
    value = record[field]
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        wanted = "a string or an integer" if allow_int else "a string"
        raise Rejected(field, f"'{field}' must be {wanted}, got {_type_name(value)}")
    value = value.strip()
    if not value:
        raise Rejected(field, f"'{field}' must not be empty")
    if len(value) > MAX_ID_CHARS:
        raise Rejected(field, f"'{field}' is {len(value)} characters long (limit {MAX_ID_CHARS})")
    return value


def _optional_text(record: dict[str, Any], field: str, limit: int) -> str | None:
    value = record.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Rejected(field, f"'{field}' must be a string, got {_type_name(value)}")
    if len(value) > limit:
        raise Rejected(field, f"'{field}' is {len(value)} characters long (limit {limit})")
    value = value.strip()
    return value or None


def parse_timestamp(value: Any, field: str) -> datetime:
    """ISO-8601 with or without a zone; no zone means UTC. Returned naive, in UTC."""
    if not isinstance(value, str):
        raise Rejected(field, f"'{field}' must be an ISO-8601 string, got {_type_name(value)}")
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise Rejected(field, f"'{field}' is not an ISO-8601 timestamp: {shown!r}") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise Rejected(field, f"'{field}' year {parsed.year} is outside {MIN_YEAR}..{MAX_YEAR}")
    return parsed


def _string_list(record: dict[str, Any], field: str, item_limit: int) -> list[str]:
    value = record.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise Rejected(field, f"'{field}' must be a list of strings, got {_type_name(value)}")
    if len(value) > MAX_LIST_ITEMS:
        raise Rejected(field, f"'{field}' has {len(value)} items (limit {MAX_LIST_ITEMS})")
    items: list[str] = []
    for position, item in enumerate(value):
        if not isinstance(item, str):
            raise Rejected(field, f"'{field}'[{position}] must be a string, got {_type_name(item)}")
        item = item.strip()
        if not item:
            raise Rejected(field, f"'{field}'[{position}] is an empty string")
        if len(item) > item_limit:
            raise Rejected(
                field, f"'{field}'[{position}] is {len(item)} characters long (limit {item_limit})"
            )
        items.append(item)
    return items


def validate_pattern(record: dict[str, Any]) -> PatternRow:
    pattern_id = _required_id(record, "pattern_id", allow_int=False)
    if record.get("description") is None:
        raise Rejected("description", "required field 'description' is missing")
    description = _optional_text(record, "description", MAX_DESCRIPTION_CHARS)
    if description is None:
        raise Rejected("description", "'description' must not be empty")
    pattern_type = _optional_text(record, "pattern_type", MAX_TYPE_CHARS)
    first_seen = record.get("first_seen")
    first_seen_at = None if first_seen is None else parse_timestamp(first_seen, "first_seen")
    metadata = record.get("metadata")
    metadata_json: str | None = None
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise Rejected("metadata", f"'metadata' must be an object, got {_type_name(metadata)}")
        encoded = orjson.dumps(metadata, option=orjson.OPT_SORT_KEYS)
        if len(encoded) > MAX_METADATA_BYTES:
            raise Rejected(
                "metadata", f"'metadata' is {len(encoded)} bytes (limit {MAX_METADATA_BYTES})"
            )
        metadata_json = encoded.decode()
    return PatternRow(pattern_id, description, pattern_type, first_seen_at, metadata_json)


def _quality(record: dict[str, Any]) -> float:
    if record.get("outcome_quality") is None:
        raise Rejected("outcome_quality", "required field 'outcome_quality' is missing")
    value = record["outcome_quality"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Rejected(
            "outcome_quality", f"'outcome_quality' must be a number, got {_type_name(value)}"
        )
    quality = float(value)
    if not math.isfinite(quality) or not 0.0 <= quality <= 1.0:
        raise Rejected("outcome_quality", f"'outcome_quality' is {value}, outside [0, 1]")
    return quality


def validate_event(record: dict[str, Any]) -> EventRow:
    event_id = _required_id(record, "event_id", allow_int=True)
    pattern_id = _required_id(record, "pattern_id", allow_int=False)
    session_id = _required_id(record, "session_id", allow_int=True)
    if record.get("timestamp") is None:
        raise Rejected("timestamp", "required field 'timestamp' is missing")
    occurred_at = parse_timestamp(record["timestamp"], "timestamp")
    quality = _quality(record)
    files = _string_list(record, "files_involved", MAX_PATH_CHARS)
    tools = _string_list(record, "tools_used", MAX_ID_CHARS)
    context = _optional_text(record, "context", MAX_CONTEXT_CHARS)
    project_id = _optional_text(record, "project_id", MAX_ID_CHARS) or "default"
    return EventRow(
        event_id, pattern_id, session_id, occurred_at, quality, files, tools, context, project_id
    )
