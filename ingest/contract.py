"""The input contract: what a pattern and a usage event must look like.

Each validator turns one decoded JSON object into a clean row or raises `Rejected`
naming the field and the reason, so the loader can quarantine the record verbatim.
Validators raise nothing else, whatever the input: hostile values (timestamps that
overflow when shifted to UTC, 400-digit numbers, metadata orjson cannot write, lone
surrogates) get a reason of their own, and anything unforeseen is still turned into a
`Rejected` by the public `validate_*` functions, so one record can never stop a run.
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
    """A record that breaks the contract: `field` is None for whole-record problems.

    The reason is made storable (no lone surrogates), since it goes into the quarantine."""

    def __init__(self, field: str | None, reason: str) -> None:
        reason = storable_text(reason)
        super().__init__(reason)
        self.field = field
        self.reason = reason


def storable_text(text: str) -> str:
    """`text`, with any lone surrogate written as a backslash escape (`\\ud800`).

    Python strings can hold lone surrogates (JSON's `"\\ud800"` decodes to one; so does a
    file name that is not UTF-8), but UTF-8, DuckDB and Arrow cannot: anything kept in the
    quarantine goes through here first."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _lone_surrogate(value: str, field: str, where: str = "") -> Rejected | None:
    """A rejection when `value` is not valid Unicode (a lone surrogate), else None.
    ASCII strings (nearly all) are told in O(1) by `str.isascii`."""
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(value[exc.start])
        return Rejected(
            field,
            f"'{field}'{where} contains a lone surrogate \\u{code:04x} at character {exc.start}:"
            " not valid Unicode",
        )
    return None


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


def _digits(value: int) -> int:
    """Decimal digits of an integer, without `str()` (which refuses past 4,300 digits)."""
    return max(1, math.ceil(abs(value).bit_length() * math.log10(2)))


def _shown_number(value: int | float) -> str:
    if isinstance(value, int) and _digits(value) > 30:
        return f"an integer of about {_digits(value)} digits"
    return repr(value)


def _required_id(record: dict[str, Any], field: str, *, allow_int: bool) -> str:
    if field not in record or record[field] is None:
        raise Rejected(field, f"required field '{field}' is missing")
    value = record[field]
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        if _digits(value) > MAX_ID_CHARS:
            raise Rejected(
                field, f"'{field}' is {_shown_number(value)} (limit {MAX_ID_CHARS} characters)"
            )
        value = str(value)
    if not isinstance(value, str):
        wanted = "a string or an integer" if allow_int else "a string"
        raise Rejected(field, f"'{field}' must be {wanted}, got {_type_name(value)}")
    value = value.strip()
    if not value:
        raise Rejected(field, f"'{field}' must not be empty")
    if len(value) > MAX_ID_CHARS:
        raise Rejected(field, f"'{field}' is {len(value)} characters long (limit {MAX_ID_CHARS})")
    if not value.isascii() and (problem := _lone_surrogate(value, field)):
        raise problem
    return value


def _optional_text(record: dict[str, Any], field: str, limit: int) -> str | None:
    value = record.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Rejected(field, f"'{field}' must be a string, got {_type_name(value)}")
    if len(value) > limit:
        raise Rejected(field, f"'{field}' is {len(value)} characters long (limit {limit})")
    if not value.isascii() and (problem := _lone_surrogate(value, field)):
        raise problem
    value = value.strip()
    return value or None


def _shown_text(text: str) -> str:
    """A value quoted in a reason: short, and escaped (repr) so control characters and
    surrogates cannot reach a terminal or the quarantine raw."""
    return repr(text if len(text) <= 60 else text[:57] + "...")


def parse_timestamp(value: Any, field: str) -> datetime:
    """ISO-8601 with or without a zone; no zone means UTC. Returned naive, in UTC."""
    if not isinstance(value, str):
        raise Rejected(field, f"'{field}' must be an ISO-8601 string, got {_type_name(value)}")
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise Rejected(
            field, f"'{field}' is not an ISO-8601 timestamp: {_shown_text(text)}"
        ) from None
    if parsed.tzinfo is not None:
        try:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:  # 0001-01-01T00:00+01:00 or 9999-12-31T23:59-01:00
            raise Rejected(
                field,
                f"'{field}' {_shown_text(text)} is outside {MIN_YEAR}..{MAX_YEAR} "
                "(it overflows when converted to UTC)",
            ) from None
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
        if not item.isascii() and (problem := _lone_surrogate(item, field, f"[{position}]")):
            raise problem
        items.append(item)
    return items


def _unforeseen(exc: Exception) -> Rejected:
    """The last line of defence: an error no check above foresaw still rejects only the
    record (with the error named), never the run. The fuzz tests assert it is not reached."""
    if isinstance(exc, MemoryError):
        raise exc
    detail = " ".join(str(exc).split())[:200]
    return Rejected(None, f"cannot validate this record ({type(exc).__name__}: {detail})")


def validate_pattern(record: dict[str, Any]) -> PatternRow:
    """A clean pattern row, or `Rejected` (and nothing else) naming the field and why."""
    try:
        return _validate_pattern(record)
    except Rejected:
        raise
    except Exception as exc:
        raise _unforeseen(exc) from exc


def validate_event(record: dict[str, Any], default_project: str = "default") -> EventRow:
    """A clean event row, or `Rejected` (and nothing else) naming the field and why.
    A record without a project_id gets `default_project` (ingest/project_identity.py)."""
    try:
        return _validate_event(record, default_project)
    except Rejected:
        raise
    except Exception as exc:
        raise _unforeseen(exc) from exc


_ENCODE_PROBLEMS = {  # orjson's words -> ours
    "Recursion limit reached": "is nested too deeply to store (more than 254 levels)",
    "Integer exceeds 64-bit range": "holds an integer beyond the 64-bit range",
    "str is not valid UTF-8: surrogates not allowed": (
        "holds a string with a lone surrogate (not valid Unicode)"
    ),
}


def _metadata_json(metadata: dict[str, Any]) -> str:
    """Metadata as sorted JSON text, or Rejected when it cannot be stored as JSON: orjson
    writes at most 254 levels (the metadata object counts) and 64-bit integers, refuses
    lone surrogates, and would silently write NaN and infinity as null (refused here)."""
    try:
        encoded = orjson.dumps(metadata, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:
        problem = _ENCODE_PROBLEMS.get(str(exc), f"cannot be written as JSON ({exc})")
        raise Rejected("metadata", f"'metadata' {problem}") from None
    if len(encoded) > MAX_METADATA_BYTES:
        raise Rejected(
            "metadata", f"'metadata' is {len(encoded)} bytes (limit {MAX_METADATA_BYTES})"
        )
    if b"null" in encoded and _has_non_finite(metadata):
        raise Rejected("metadata", "'metadata' holds NaN or an infinite number (not JSON)")
    return encoded.decode()


def _has_non_finite(value: Any) -> bool:
    """Any NaN or infinite float inside, walked without recursion (depth is bounded by the
    successful orjson.dumps before it, but a loop needs no bound at all)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _validate_pattern(record: dict[str, Any]) -> PatternRow:
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
        metadata_json = _metadata_json(metadata)
    return PatternRow(pattern_id, description, pattern_type, first_seen_at, metadata_json)


def _quality(record: dict[str, Any]) -> float:
    if record.get("outcome_quality") is None:
        raise Rejected("outcome_quality", "required field 'outcome_quality' is missing")
    value = record["outcome_quality"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Rejected(
            "outcome_quality", f"'outcome_quality' must be a number, got {_type_name(value)}"
        )
    try:
        quality = float(value)
    except OverflowError:  # an integer of hundreds of digits
        quality = math.inf
    if not math.isfinite(quality) or not 0.0 <= quality <= 1.0:
        raise Rejected(
            "outcome_quality", f"'outcome_quality' is {_shown_number(value)}, outside [0, 1]"
        )
    return quality


def _validate_event(record: dict[str, Any], default_project: str) -> EventRow:
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
    project_id = _optional_text(record, "project_id", MAX_ID_CHARS) or default_project
    return EventRow(
        event_id, pattern_id, session_id, occurred_at, quality, files, tools, context, project_id
    )
