"""Property-based fuzzing of the ingest: records and raw bytes, field by field.

Every field of the contract (ingest/contract.py) is drawn valid, at its limits, or hostile:
wrong types, huge, negative, NaN and infinite numbers, integers of hundreds of digits,
overlong strings, deep nesting, lone surrogates, control characters, byte order marks, bad
UTF-8 and truncated JSON. Most examples drive `ingest.contract` and `ingest.reader` directly
(fast); a bounded number run the whole `ingest_paths` on a real DuckDB file (embed=False).

The properties are the ingest's promises: a validator returns a clean, storable row or
raises `Rejected` naming a field (never anything else, and never through the catch-all);
a reader yields one record per line or element, each decoded or carrying its reason, with
storable raw text, and raises nothing but `UnreadableFile` (only for a foreign encoding);
a load accounts for every record (loaded + skipped + rejected = read) and quarantines each
bad one with file, line and reason, and the files after it still load.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.contract import (
    MAX_CONTEXT_CHARS,
    MAX_DESCRIPTION_CHARS,
    MAX_ID_CHARS,
    MAX_LIST_ITEMS,
    MAX_METADATA_BYTES,
    MAX_PATH_CHARS,
    MAX_TYPE_CHARS,
    MAX_YEAR,
    MIN_YEAR,
    EventRow,
    PatternRow,
    Rejected,
    kind_from_fields,
    validate_event,
    validate_pattern,
)
from ingest.loader import ingest_paths
from ingest.reader import UnreadableFile, read_json_array, read_jsonl

FAST = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
BYTES = settings(FAST, max_examples=100)
WAREHOUSE = settings(FAST, max_examples=10)  # each example is a real DuckDB file

EVENT_FIELDS = (
    "event_id",
    "pattern_id",
    "session_id",
    "timestamp",
    "outcome_quality",
    "files_involved",
    "tools_used",
    "context",
    "project_id",
)
PATTERN_FIELDS = ("pattern_id", "description", "pattern_type", "first_seen", "metadata")
BOM = b"\xef\xbb\xbf"
FOREIGN_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")

# --- values ---------------------------------------------------------------------------

ANY_CHAR = st.characters(exclude_categories=())  # control characters and surrogates too
SPECIAL_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\t\r\n ",
        "\x00",
        "a\x00b",
        "\ud800",
        "\udfff",
        "x\udc80y",
        "\ud83d",
        "\U0001f600",
        "\ufeff",
        "\ufeffid",
        "\u202eevil",
        "\x1b[31mred",
        "\x7f\x85\u2028",
        "null",
        "NaN",
        "../../etc/passwd",
        "'; drop table raw.patterns; --",
    ]
)
LIMITS = (
    MAX_ID_CHARS,
    MAX_TYPE_CHARS,
    MAX_PATH_CHARS,
    MAX_DESCRIPTION_CHARS,
    MAX_CONTEXT_CHARS,
)
OVERLONG = st.builds(
    lambda limit, delta, char: char * (limit + delta),
    st.sampled_from(LIMITS),
    st.sampled_from([-1, 0, 1, 1000]),
    st.sampled_from(["x", "é", "\U0001f600", " "]),
)
TEXT = st.one_of(st.text(ANY_CHAR, max_size=30), SPECIAL_TEXT, OVERLONG)
NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [0, 1, -1, 0.0, -0.0, 1.0, 0.5, 1.0000000001, -1e-300, 5e-324, 1e308, 10**30, 10**400]
    ),
    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1]),
    st.booleans(),
)
LEAVES = st.one_of(st.none(), NUMBERS, TEXT)
JSON_VALUES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=6,
)


def nest(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


DEEP = st.integers(min_value=200, max_value=400).map(nest)  # json.dumps recurses: stay < 1000
HOSTILE = st.one_of(JSON_VALUES, DEEP, TEXT, NUMBERS)


def _iso(moment: datetime, offset: timedelta | None, sep: str) -> str:
    if offset is not None:
        moment = moment.replace(tzinfo=timezone(offset))
    return moment.isoformat(sep=sep)


OFFSETS = st.one_of(
    st.none(),
    st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23)),
)
TIMESTAMPS = st.builds(
    _iso,
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 12, 30)),
    OFFSETS,
    st.sampled_from(["T", " "]),
)
BOUNDARY_TIMESTAMPS = st.sampled_from(
    [
        "1970-01-01T00:00:00",
        "1970-01-01T00:00:00Z",
        "1970-01-01T00:30:00+01:00",
        "1969-12-31T23:30:00-01:00",
        "2100-12-31T23:59:59.999999",
        "2100-12-31T23:30:00-01:00",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "0001-01-01",
        "9999-12-31",
        "2025-02-30T00:00:00",
        "2025-01-01T24:00:00",
        "2025-01-01T00:00:00+24:00",
        "2025-01-01T00:00:00\x00",
        "2025-01-01T00:00:00\ud800",
        " 2025-01-01 ",
        "",
        "now",
    ]
)
WORDS = st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=12)
PATHS = st.lists(st.one_of(WORDS, TEXT), max_size=5)

# field -> (valid values, boundary values, hostile values)
FIELD_VALUES: dict[str, tuple[st.SearchStrategy[Any], ...]] = {
    "event_id": (WORDS, st.integers(min_value=-(10**300), max_value=10**300), HOSTILE),
    "pattern_id": (WORDS, OVERLONG, HOSTILE),
    "session_id": (WORDS, st.integers(), HOSTILE),
    "timestamp": (TIMESTAMPS, BOUNDARY_TIMESTAMPS, HOSTILE),
    "first_seen": (TIMESTAMPS, BOUNDARY_TIMESTAMPS, HOSTILE),
    "outcome_quality": (
        st.floats(min_value=0, max_value=1),
        st.sampled_from([0, 1, 0.0, 1.0, -0.0, 5e-324, 1.0000000000000002, -5e-324]),
        HOSTILE,
    ),
    "files_involved": (
        st.lists(WORDS, max_size=4),
        st.sampled_from(
            [
                [],
                ["f" * MAX_PATH_CHARS],
                ["f" * (MAX_PATH_CHARS + 1)],
                [str(i) for i in range(MAX_LIST_ITEMS)],
                [str(i) for i in range(MAX_LIST_ITEMS + 1)],
                ["  "],
            ]
        ),
        st.one_of(PATHS, HOSTILE),
    ),
    "tools_used": (st.lists(WORDS, max_size=3), PATHS, HOSTILE),
    "context": (st.text(max_size=60), OVERLONG, HOSTILE),
    "project_id": (WORDS, OVERLONG, HOSTILE),
    "description": (st.text(min_size=1, max_size=60), OVERLONG, HOSTILE),
    "pattern_type": (WORDS, OVERLONG, HOSTILE),
    "metadata": (
        st.dictionaries(WORDS, st.one_of(LEAVES, st.lists(LEAVES, max_size=3)), max_size=3),
        st.sampled_from(
            [
                {},
                {"m": nest(253)},  # 254 levels with the metadata object: the most orjson writes
                {"m": nest(254)},
                {"m": {"n": nest(300)}},
                {"n": 2**64 - 1},
                {"n": -(2**63)},
                {"n": 2**64},
                {"x": "y" * MAX_METADATA_BYTES},
                {"f": math.nan},
                {"f": [math.inf]},
                {"\ud800": 1},
            ]
        ),
        HOSTILE,
    ),
}


@st.composite
def records(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    """A record whose fields are valid except, usually, one that is absent, at a limit or
    hostile (so that each field's own rejection is reached), and sometimes several."""
    names = EVENT_FIELDS if kind == "event" else PATTERN_FIELDS
    odd = {draw(st.sampled_from(names))} if draw(st.booleans()) else set()
    record: dict[str, Any] = {}
    for name in names:
        if name in odd:
            choice = draw(st.sampled_from(["absent", "boundary", "boundary", "hostile"]))
        else:
            choice = draw(st.sampled_from(["valid"] * 12 + ["absent", "boundary", "hostile"]))
        if choice == "absent":
            continue
        valid, boundary, hostile = FIELD_VALUES[name]
        strategy = {"valid": valid, "boundary": boundary, "hostile": hostile}[choice]
        record[name] = draw(strategy)
    record.update(draw(st.dictionaries(TEXT, JSON_VALUES, max_size=1)))  # odd extra keys
    return record


ANY_RECORD = st.sampled_from(["event", "pattern"]).flatmap(records)

# --- what a clean row must be ---------------------------------------------------------


def storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(value: str | None, limit: int, *, required: bool) -> None:
    if value is None:
        assert not required
        return
    assert isinstance(value, str) and storable(value)
    assert value == value.strip() and value
    assert len(value) <= limit


def check_row(row: EventRow | PatternRow, record: dict[str, Any]) -> None:
    if isinstance(row, EventRow):
        for name in ("event_id", "pattern_id", "session_id", "project_id"):
            check_text(getattr(row, name), MAX_ID_CHARS, required=True)
        check_text(row.context, MAX_CONTEXT_CHARS, required=False)
        assert MIN_YEAR <= row.occurred_at.year <= MAX_YEAR and row.occurred_at.tzinfo is None
        assert math.isfinite(row.outcome_quality) and 0 <= row.outcome_quality <= 1
        for items, limit in ((row.files_involved, MAX_PATH_CHARS), (row.tools_used, MAX_ID_CHARS)):
            assert len(items) <= MAX_LIST_ITEMS
            for item in items:
                check_text(item, limit, required=True)
        return
    check_text(row.pattern_id, MAX_ID_CHARS, required=True)
    check_text(row.description, MAX_DESCRIPTION_CHARS, required=True)
    check_text(row.pattern_type, MAX_TYPE_CHARS, required=False)
    if row.first_seen is not None:
        assert MIN_YEAR <= row.first_seen.year <= MAX_YEAR
    if row.metadata is not None:
        assert storable(row.metadata) and len(row.metadata.encode()) <= MAX_METADATA_BYTES
        assert orjson.loads(row.metadata) == record["metadata"]  # stored exactly as sent


def validate(record: dict[str, Any], kind: str | None) -> EventRow | PatternRow:
    """What the loader does with a decoded object: the file's kind, else told by fields."""
    told = kind or kind_from_fields(record)
    return validate_event(record) if told == "event" else validate_pattern(record)


def check_rejection(rejection: Rejected, record: dict[str, Any]) -> None:
    assert isinstance(rejection.reason, str) and rejection.reason and storable(rejection.reason)
    assert rejection.field is None or rejection.field in {*EVENT_FIELDS, *PATTERN_FIELDS}
    assert not rejection.reason.startswith("cannot validate"), (rejection.reason, record)


# --- the contract ---------------------------------------------------------------------


@FAST
@given(st.sampled_from(["event", "pattern", None]), st.data())
def test_validators_give_a_clean_row_or_a_rejection_naming_the_field(
    kind: str | None, data: st.DataObject
) -> None:
    record = data.draw(records(kind or data.draw(st.sampled_from(["event", "pattern"]))))
    try:
        row = validate(record, kind)
    except Rejected as rejection:
        check_rejection(rejection, record)
        return
    check_row(row, record)


@FAST
@given(HOSTILE)
def test_anything_that_is_not_a_record_is_rejected_not_raised(value: Any) -> None:
    for check in (validate_event, validate_pattern):
        try:
            check(value if isinstance(value, dict) else {"pattern_id": value, "event_id": value})
        except Rejected as rejection:
            check_rejection(rejection, {})


@FAST
@given(
    st.sampled_from(["timestamp", "first_seen"]),
    st.one_of(TIMESTAMPS, BOUNDARY_TIMESTAMPS, TEXT),
)
def test_timestamps_are_utc_in_range_or_rejected_on_their_field(field: str, text: str) -> None:
    record: dict[str, Any] = {"pattern_id": "p", "description": "d", field: text}
    record |= {"event_id": "e", "session_id": "s", "outcome_quality": 0.5}
    check = validate_event if field == "timestamp" else validate_pattern
    try:
        row = check(record)
    except Rejected as rejection:
        assert rejection.field == field, rejection.reason
        assert storable(rejection.reason)
        return
    moment = row.occurred_at if isinstance(row, EventRow) else row.first_seen
    assert moment is not None and MIN_YEAR <= moment.year <= MAX_YEAR
    parsed = datetime.fromisoformat(text.strip())
    if parsed.tzinfo is not None:
        assert moment == parsed.astimezone(UTC).replace(tzinfo=None)


# --- the readers, on raw bytes ----------------------------------------------------------


def _json_text(value: Any, ensure_ascii: bool) -> bytes:
    """JSON the way a careless writer makes it: NaN allowed, lone surrogates either escaped
    (ensure_ascii) or written raw as the bytes UTF-8 forbids."""
    return json.dumps(value, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")


@st.composite
def line_bytes(draw: st.DrawFn) -> bytes:
    """One line of a .jsonl file: a serialized record, then perhaps damaged."""
    base = _json_text(draw(ANY_RECORD), draw(st.booleans()))
    damage = draw(
        st.sampled_from(
            ["none"] * 4 + ["truncate", "insert", "bom", "cr", "binary", "bomb", "blank"]
        )
    )
    if damage == "truncate":
        base = base[: draw(st.integers(0, max(len(base) - 1, 0)))]
    elif damage == "insert":
        at = draw(st.integers(0, len(base)))
        base = base[:at] + draw(st.binary(min_size=1, max_size=4)) + base[at:]
    elif damage == "bom":
        base = BOM + base
    elif damage == "cr":
        base += b"\r"
    elif damage == "binary":
        base = draw(st.binary(max_size=40))
    elif damage == "bomb":
        depth = draw(st.sampled_from([1000, 1025, 10_000]))
        base = b"[" * depth + b"]" * depth
    elif damage == "blank":
        base = draw(st.sampled_from([b"", b"  ", b"\t", b"\r", BOM, BOM + b" "]))
    return base.replace(b"\n", b"")


def _content(line: bytes) -> bytes:
    return line[len(BOM) :] if line.startswith(BOM) else line


@BYTES
@given(st.lists(line_bytes(), max_size=6), st.sampled_from([b"\n", b"\r\n"]), st.booleans())
def test_jsonl_reader_yields_one_record_per_line_with_its_reason(
    lines: list[bytes], newline: bytes, final_newline: bool
) -> None:
    data = newline.join(lines) + (newline if final_newline and lines else b"")
    expected = [n for n, line in enumerate(lines, 1) if _content(line).strip()]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.jsonl"
        path.write_bytes(data)
        try:
            got = list(read_jsonl(path))
        except UnreadableFile as exc:  # only a file that starts with a foreign byte order mark
            assert data.startswith(FOREIGN_BOMS), exc
            return
    assert [r.line_number for r in got] == expected
    for record in got:
        line = _content(lines[record.line_number - 1]).rstrip(b"\r")
        assert storable(record.raw_text)
        assert (record.value is None) != (record.error is None)
        if record.error is not None:
            continue
        assert record.value == orjson.loads(line)  # decoded exactly, nothing made up


@st.composite
def json_documents(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, Any]]]:
    """A .json file of several top-level arrays and objects, and per element what the
    reader must make of it: ("value", v), ("bad", reason part) or ("rest", reason part)."""
    ensure_ascii = draw(st.booleans())
    pieces: list[bytes] = []
    expected: list[tuple[str, Any]] = []

    def element(value: Any) -> bytes:
        text = _json_text(value, ensure_ascii)
        if _has_non_finite(value):  # written as NaN / Infinity
            expected.append(("bad", "malformed JSON"))
        elif not storable(text.decode("utf-8", "surrogatepass")):
            expected.append(("bad", "invalid UTF-8"))
        elif not isinstance(value, dict):
            expected.append(("bad", "expected a JSON object"))
        else:  # as JSON gives it back (an escaped surrogate pair becomes one character)
            expected.append(("value", json.loads(text)))
        return text

    for _ in range(draw(st.integers(1, 3))):
        sep = draw(st.sampled_from([b"", b"\n", b" \r\n", BOM, b"\n" + BOM]))
        if draw(st.booleans()):
            pieces.append(sep + element(draw(ANY_RECORD)))
            continue
        items = []
        for _ in range(draw(st.integers(0, 4))):
            if draw(st.integers(0, 9)) == 0:
                items.append(b"[" * 10_000 + b"]" * 10_000)
                expected.append(("rest", "nested too deeply"))
                break
            items.append(element(draw(st.one_of(ANY_RECORD, ANY_RECORD, HOSTILE))))
        pieces.append(sep + b"[" + b",\n".join(items) + b"]")
        if expected and expected[-1][0] == "rest":
            break
    data = draw(st.sampled_from([b"", BOM])) + b"".join(pieces)
    return data, expected


def _has_non_finite(value: Any) -> bool:
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


@BYTES
@given(json_documents())
def test_json_reader_reads_every_top_level_value_and_element(
    document: tuple[bytes, list[tuple[str, Any]]],
) -> None:
    data, expected = document
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.json"
        path.write_bytes(data)
        got = list(read_json_array(path))
    assert len(got) == len(expected), [r.error for r in got]
    for record, (what, want) in zip(got, expected, strict=True):
        assert storable(record.raw_text)
        if what == "value":
            assert record.error is None and record.value == want
        else:
            assert record.value is None and want in (record.error or ""), record.error
    lines = data.count(b"\n") + 1
    assert all(1 <= r.line_number <= lines for r in got)
    assert [r.line_number for r in got] == sorted(r.line_number for r in got)


@BYTES
@given(json_documents(), st.data())
def test_damaged_json_files_still_give_storable_records_and_never_raise(
    document: tuple[bytes, list[tuple[str, Any]]], data: st.DataObject
) -> None:
    text, _ = document
    damage = data.draw(st.sampled_from(["truncate", "insert", "replace"]))
    at = data.draw(st.integers(0, len(text)))
    junk = data.draw(st.binary(min_size=1, max_size=6))
    if damage == "truncate":
        text = text[:at]
    elif damage == "insert":
        text = text[:at] + junk + text[at:]
    else:
        text = text[:at] + junk + text[at + len(junk) :]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.json"
        path.write_bytes(text)
        try:
            got = list(read_json_array(path))
        except UnreadableFile:
            assert text.startswith(FOREIGN_BOMS)
            return
    for record in got:
        assert storable(record.raw_text)
        assert (record.value is None) != (record.error is None)
    if re.sub(rb"\[[ \t\r\n]*\]", b"", text).strip(b" \t\r\n" + BOM):
        assert got  # something there besides empty arrays: it is read or quarantined
    numbers = [r.line_number for r in got]
    assert numbers == sorted(numbers) and all(n >= 1 for n in numbers)


# --- the whole load, on a real warehouse --------------------------------------------------


def _prefixed(record: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Ids made unique per file, so per-file counts are exact: string ids get a prefix no
    drawn text plausibly starts with, and integer event ids become such strings."""
    out = dict(record)
    event_id = out.get("event_id")
    if isinstance(event_id, int) and not isinstance(event_id, bool):
        out["event_id"] = prefix + str(event_id)
    for key in ("event_id", "pattern_id"):
        if isinstance(out.get(key), str):
            out[key] = prefix + out[key]
    return out


def _expected(path: Path, reader: Any) -> tuple[int, int, set[str], set[str]]:
    """Read and rejected counts and the distinct event / pattern ids that must load,
    computed record by record with the reader and the validators (the loader's oracle)."""
    read = rejected = 0
    events: set[str] = set()
    patterns: set[str] = set()
    for raw in reader(path):
        read += 1
        try:
            if raw.value is None:
                raise Rejected(None, raw.error or "")
            row = validate(raw.value, None)
        except Rejected:
            rejected += 1
            continue
        if isinstance(row, EventRow):
            events.add(row.event_id)
        else:
            patterns.add(row.pattern_id)
    return read, rejected, events, patterns


@WAREHOUSE
@given(
    st.lists(ANY_RECORD, max_size=12),
    st.lists(line_bytes(), max_size=4),
    st.lists(ANY_RECORD, max_size=8),
)
def test_a_real_load_accounts_for_every_record_and_the_next_file_loads(
    jsonl_records: list[dict[str, Any]],
    damaged_lines: list[bytes],
    json_records: list[dict[str, Any]],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        first = root / "a_fuzz.jsonl"
        lines = [_json_text(_prefixed(r, "«jsonl»"), True) for r in jsonl_records]
        lines += damaged_lines  # unprefixed, so their ids never meet the .json file's
        first.write_bytes(b"\n".join(line.replace(b"\n", b"") for line in lines) + b"\n")
        second = root / "b_fuzz.json"
        second.write_bytes(_json_text([_prefixed(r, "«json»") for r in json_records], False))
        good = root / "c_good.jsonl"
        good.write_text(
            "\n".join(
                json.dumps(
                    {
                        "event_id": f"good-{n}",
                        "pattern_id": "p",
                        "session_id": "s",
                        "timestamp": "2025-01-06T12:00:00Z",
                        "outcome_quality": 0.5,
                    }
                )
                for n in range(3)
            )
        )
        db = root / "wh.duckdb"

        report = ingest_paths([first, second, good], db, embed=False)

        con = duckdb.connect(str(db), read_only=True)
        try:
            for file, reader in ((first, read_jsonl), (second, read_json_array)):
                (got,) = [f for f in report.files if f.path.name == file.name]
                if file.read_bytes().startswith(FOREIGN_BOMS):  # a damaged first line can
                    assert got.file_rejected and "UTF-16" in got.file_rejected
                    continue
                read, rejected, events, patterns = _expected(file, reader)
                assert got.file_rejected is None
                assert got.read == got.loaded + got.skipped + got.rejected == read
                assert got.rejected == rejected
                assert got.loaded == len(events) + len(patterns)
                source = str(file.resolve())
                counts = con.execute(
                    """
                    select (select count(*) from raw.usage_events where source_file = $f),
                           (select count(*) from raw.patterns where source_file = $f),
                           (select count(*) from raw.rejected_records where source_file = $f)
                    """,
                    {"f": source},
                ).fetchone()
                assert counts == (len(events), len(patterns), rejected)
                bad_rows = con.execute(
                    "select count(*) from raw.rejected_records where source_file = ?"
                    " and (line_number < 1 or reason = '' or raw_text is null)",
                    [source],
                ).fetchone()
                assert bad_rows == (0,)
            (last,) = [f for f in report.files if f.path.name == good.name]
            assert (last.read, last.loaded) == (3, 3)
            runs = con.execute("select status from raw.ingest_runs").fetchall()
            assert runs == [("succeeded",)]
        finally:
            con.close()
