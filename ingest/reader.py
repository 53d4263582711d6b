"""Stream records out of input files without holding a file in memory.

JSON Lines are read one line at a time (a line over the size limit is consumed in pieces
and quarantined, never loaded whole). JSON arrays are the migration path from an agent's
existing memory files, which are small: they are read whole, and each element keeps the
line number where it starts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ingest.contract import MAX_LINE_BYTES

SUPPORTED_SUFFIXES = (".jsonl", ".json")
RAW_TEXT_LIMIT = 65_536  # characters of a bad record kept in quarantine


class InputError(Exception):
    """A problem with the inputs as a whole (missing path, unsupported file)."""


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as read: either a decoded object, or the reason it could not be decoded."""

    line_number: int
    raw_text: str
    value: dict[str, Any] | None
    error: str | None = None


def discover_files(paths: list[Path]) -> list[Path]:
    """Expand folders to their *.jsonl / *.json files; patterns files first, then others,
    then events, so that a run's events find their patterns."""
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        if path.is_dir():
            found.extend(
                p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix in SUPPORTED_SUFFIXES
            )
        elif path.suffix in SUPPORTED_SUFFIXES:
            found.append(path)
        else:
            raise InputError(f"{path}: unsupported file type (expected .jsonl or .json)")
    unique = list(dict.fromkeys(p.resolve() for p in found))

    def order(p: Path) -> tuple[int, str]:
        name = p.name.lower()
        rank = 0 if name.startswith("patterns") else 2 if name.startswith("events") else 1
        return rank, str(p)

    return sorted(unique, key=order)


def file_sha256(path: Path) -> tuple[str, int]:
    """Content hash and size: the ledger key that makes re-ingesting a file a no-op."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def clip(text: str) -> str:
    if len(text) <= RAW_TEXT_LIMIT:
        return text
    return text[:RAW_TEXT_LIMIT] + f"... [truncated, {len(text)} characters in all]"


def _decode_object(text: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return None, f"malformed JSON: {exc}"
    if not isinstance(value, dict):
        kind = "array" if isinstance(value, list) else type(value).__name__
        return None, f"expected a JSON object, got {kind}"
    return value, None


def read_jsonl(path: Path) -> Iterator[RawRecord]:
    """One record per non-blank line; bad UTF-8, bad JSON and giant lines become errors."""
    with path.open("rb") as handle:
        line_number = 0
        while True:
            line = handle.readline(MAX_LINE_BYTES + 1)
            if not line:
                return
            line_number += 1
            if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                total = len(line)
                while True:  # consume the rest of the giant line without keeping it
                    more = handle.readline(1 << 20)
                    total += len(more)
                    if not more or more.endswith(b"\n"):
                        break
                text = line[:RAW_TEXT_LIMIT].decode("utf-8", errors="replace")
                yield RawRecord(
                    line_number,
                    text + f"... [truncated, {total} bytes in all]",
                    None,
                    f"line is {total} bytes long (limit {MAX_LINE_BYTES})",
                )
                continue
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield RawRecord(
                    line_number,
                    clip(line.decode("utf-8", errors="backslashreplace").rstrip("\r\n")),
                    None,
                    f"invalid UTF-8 at byte {exc.start} of the line",
                )
                continue
            text = text.rstrip("\r\n")
            value, error = _decode_object(text)
            yield RawRecord(line_number, clip(text) if error else text, value, error)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def read_json_array(path: Path) -> Iterator[RawRecord]:
    """Elements of a top-level JSON array (or a single object). A syntax error stops the
    file there: what remains is quarantined as one record, so nothing is silently lost."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        yield RawRecord(
            line,
            clip(data.decode("utf-8", errors="backslashreplace")),
            None,
            f"invalid UTF-8 at byte {exc.start} of the file; the file was not read",
        )
        return
    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    length = len(text)

    def skip_ws(pos: int) -> int:
        while pos < length and text[pos] in " \t\r\n":
            pos += 1
        return pos

    counted = [0, 1]  # position up to which newlines are counted, and the line there

    def line_of(pos: int) -> int:  # positions only move forward, so count incrementally
        counted[1] += text.count("\n", counted[0], pos)
        counted[0] = pos
        return counted[1]

    def element(start: int) -> tuple[RawRecord, int]:
        value, end = decoder.raw_decode(text, start)
        raw = text[start:end]
        if isinstance(value, dict):
            return RawRecord(line_of(start), raw, value), end
        kind = "array" if isinstance(value, list) else type(value).__name__
        return RawRecord(
            line_of(start), clip(raw), None, f"expected a JSON object, got {kind}"
        ), end

    def rest_is_bad(start: int, reason: str) -> RawRecord:
        return RawRecord(line_of(start), clip(text[start:]), None, reason)

    pos = skip_ws(0)
    if pos == length:
        return
    opener = text[pos]
    if opener not in "[{":
        yield rest_is_bad(pos, "malformed JSON: expected an array or an object")
        return
    if opener == "{":  # a single object
        try:
            record, end = element(pos)
        except (json.JSONDecodeError, ValueError) as exc:
            yield rest_is_bad(pos, f"malformed JSON: {exc}")
            return
        yield record
        if skip_ws(end) != length:
            yield rest_is_bad(skip_ws(end), "malformed JSON: extra data after the object")
        return
    pos = skip_ws(pos + 1)
    if pos < length and text[pos] == "]":
        return
    while pos < length:
        try:
            record, end = element(pos)
        except (json.JSONDecodeError, ValueError) as exc:
            yield rest_is_bad(
                pos, f"malformed JSON: {exc}; the rest of the file from this line was not read"
            )
            return
        yield record
        pos = skip_ws(end)
        if pos < length and text[pos] == ",":
            pos = skip_ws(pos + 1)
            continue
        if pos < length and text[pos] == "]":
            return
        yield rest_is_bad(
            pos, "malformed JSON: expected ',' or ']' here; the rest of the file was not read"
        )
        return
    yield rest_is_bad(len(text) - 1, "malformed JSON: the array is not closed")


def read_records(path: Path) -> Iterator[RawRecord]:
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    return read_json_array(path)
