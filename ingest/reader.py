"""Stream records out of input files without holding a file in memory.

JSON Lines are read one line at a time (a line over the size limit is consumed in pieces
and quarantined, never loaded whole). JSON files are the migration path from an agent's
existing memory files, which are small: they are read whole, and each element keeps the
line number where it starts. A `.json` file may hold several top-level arrays or objects one
after another (`[...]` then `[...]`, or `{...}{...}`): each is read; anything else after a
value is quarantined with its reason, never dropped.

What can go wrong is split in two, and nothing raises anything else:
- a record that cannot be decoded becomes a `RawRecord` with an `error` (the loader
  quarantines it); its `raw_text` is always storable (bad bytes appear as `\\xNN`);
- a file that cannot be read at all (permission denied, a folder or a pipe in its place,
  an I/O error, UTF-16 instead of UTF-8, too big to read whole) raises `UnreadableFile`,
  which the loader records as a rejected file before going on with the next one.
A UTF-8 byte order mark is accepted at the start of a file (and of any line or top-level
value, so files joined with `cat` still read).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import sys
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from ingest.contract import MAX_LINE_BYTES, storable_text

SUPPORTED_SUFFIXES = (".jsonl", ".json")
RAW_TEXT_LIMIT = 65_536  # characters of a bad record kept in quarantine
# A .json file is decoded whole; past this, its objects would not fit comfortably in memory.
MAX_JSON_FILE_BYTES = 256 << 20
UTF8_BOM = b"\xef\xbb\xbf"
# Byte order marks of encodings engram does not read (UTF-32 first: its LE mark starts
# with UTF-16's).
_FOREIGN_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
# Decoding with errors="surrogateescape" turns each byte that is not UTF-8 into one of
# these code points, and only those bytes: a strict UTF-8 decoder never yields a surrogate.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


class InputError(Exception):
    """A problem with the inputs as a whole (missing path, unsupported file)."""


class UnreadableFile(Exception):
    """A file that cannot be read at all; the run records it and goes on to the next file.

    Only file problems raise this (OSError while opening or reading, the wrong encoding, a
    file too big to read whole): a database error is never one, so it still fails the run.
    """

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = storable_text(reason)
        super().__init__(f"{display_path(path)}: {self.reason}")


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as read: either a decoded object, or the reason it could not be decoded."""

    line_number: int
    raw_text: str
    value: dict[str, Any] | None
    error: str | None = None


def display_path(path: Path) -> str:
    """The path as text that can be printed and stored: bytes of a file name that are not
    UTF-8 (Python keeps them as lone surrogates) appear as backslash escapes."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    return text


def _os_reason(exc: OSError) -> str:
    """An OSError as a reason: what failed, without the path (the row names the file)."""
    if isinstance(exc, PermissionError):
        return "permission denied: the file cannot be read"
    if isinstance(exc, IsADirectoryError):
        return "it is a directory, not a file"
    if isinstance(exc, FileNotFoundError):
        return "the file disappeared before it could be read"
    return f"cannot be read: {exc.strerror or exc}"


def _check_readable(path: Path) -> os.stat_result:
    """Refuse what is not a regular file before opening it: opening a FIFO blocks, and a
    device or a pipe cannot be read twice (once to hash, once to load)."""
    try:
        info = path.stat()
    except OSError as exc:
        raise UnreadableFile(path, _os_reason(exc)) from exc
    if stat.S_ISDIR(info.st_mode):
        raise UnreadableFile(path, "it is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise UnreadableFile(path, "not a regular file (a pipe, socket or device)")
    return info


def _open(path: Path) -> IO[bytes]:
    _check_readable(path)
    try:
        return path.open("rb")
    except OSError as exc:
        raise UnreadableFile(path, _os_reason(exc)) from exc


def _check_encoding(path: Path, head: bytes) -> None:
    for mark, encoding in _FOREIGN_BOMS:
        if head.startswith(mark):
            raise UnreadableFile(
                path,
                f"the file is {encoding} (it starts with a {encoding} byte order mark); "
                f"engram reads UTF-8: convert it, e.g. iconv -f {encoding} -t UTF-8",
            )


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
    """Content hash and size: the ledger key that makes re-ingesting a file a no-op.
    Raises UnreadableFile when the file cannot be read."""
    digest = hashlib.sha256()
    size = 0
    with _open(path) as handle:
        while chunk := _read(path, handle, 1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _read(path: Path, handle: IO[bytes], limit: int) -> bytes:
    try:
        return handle.read(limit)
    except OSError as exc:
        raise UnreadableFile(path, _os_reason(exc)) from exc


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
        return None, f"expected a JSON object, got {_json_kind(value)}"
    return value, None


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number" if isinstance(value, int | float) else type(value).__name__


def read_jsonl(path: Path) -> Iterator[RawRecord]:
    """One record per non-blank line; bad UTF-8, bad JSON and giant lines become errors.
    A UTF-8 byte order mark at the start of a line is dropped."""
    try:
        # One try around the loop rather than per read: an OSError can only come from the
        # file here (what the consumer does between records is not run inside it).
        yield from _jsonl_records(path)
    except OSError as exc:
        raise UnreadableFile(path, _os_reason(exc)) from exc


def _jsonl_records(path: Path) -> Iterator[RawRecord]:
    with _open(path) as handle:
        line_number = 0
        while True:
            line = handle.readline(MAX_LINE_BYTES + 1)
            if not line:
                return
            line_number += 1
            if line_number == 1:
                _check_encoding(path, line)
            if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                total = len(line)
                while True:  # consume the rest of the giant line without keeping it
                    more = handle.readline(1 << 20)
                    total += len(more)
                    if not more or more.endswith(b"\n"):
                        break
                text = line[:RAW_TEXT_LIMIT].decode("utf-8", errors="backslashreplace")
                yield RawRecord(
                    line_number,
                    text + f"... [truncated, {total} bytes in all]",
                    None,
                    f"line is {total} bytes long (limit {MAX_LINE_BYTES})",
                )
                continue
            if line.startswith(UTF8_BOM):
                line = line[len(UTF8_BOM) :]
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


def _read_whole(path: Path) -> bytes:
    """A .json file's bytes, refused (as a file) past MAX_JSON_FILE_BYTES."""
    size = _check_readable(path).st_size
    if size > MAX_JSON_FILE_BYTES:
        raise UnreadableFile(
            path,
            f"the file is {size} bytes; a .json file is read whole, and the limit is "
            f"{MAX_JSON_FILE_BYTES} bytes: write large logs as JSON Lines (.jsonl)",
        )
    with _open(path) as handle:
        data = _read(path, handle, MAX_JSON_FILE_BYTES + 1)
    if len(data) > MAX_JSON_FILE_BYTES:  # it grew after the stat
        raise UnreadableFile(path, f"the file is over {MAX_JSON_FILE_BYTES} bytes")
    return data


class _JsonText:
    """The text of one .json file and a cursor over it: whitespace, line numbers, and one
    element at a time (json.JSONDecoder.raw_decode gives each value's end).

    The bytes are decoded with errors="surrogateescape", so bytes that are not UTF-8 do not
    stop the file: only the element holding them is quarantined (its raw text shows them as
    `\\xNN`). NaN, Infinity and integers past Python's digit limit are likewise refused per
    element rather than ending the file. A number too big for a double (1e400) decodes to
    infinity, which the validators refuse wherever a number matters (quality, metadata)."""

    def __init__(self, data: bytes) -> None:
        self.text = data.decode("utf-8", errors="surrogateescape")
        self.length = len(self.text)
        self._counted = [0, 1]  # position up to which newlines are counted, and the line there
        self._refused: str | None = None  # set by the hooks while decoding one element
        self._decoder = json.JSONDecoder(parse_constant=self._constant, parse_int=self._int)
        # Bytes that were not UTF-8 are searched for per element only if there are any.
        self._escaped = not self.text.isascii() and bool(_ESCAPED_BYTE.search(self.text))

    def _constant(self, name: str) -> float:
        self._refused = self._refused or f"{name} is not valid JSON"
        return math.nan

    def _int(self, text: str) -> int | float:
        digits = len(text) - text.startswith("-")
        if digits > _MAX_INT_DIGITS:
            self._refused = self._refused or f"an integer of {digits} digits is too long"
            return math.inf
        return int(text)

    def skip_ws(self, pos: int, *, top_level: bool = False) -> int:
        """Past whitespace; at the top level also past byte order marks (joined files)."""
        blank = " \t\r\n\ufeff" if top_level else " \t\r\n"
        text, length = self.text, self.length
        while pos < length and text[pos] in blank:
            pos += 1
        return pos

    def line_of(self, pos: int) -> int:
        """1-based line at `pos`; positions only move forward, so count incrementally."""
        counted = self._counted
        if pos > counted[0]:
            counted[1] += self.text.count("\n", counted[0], pos)
            counted[0] = pos
        return counted[1]

    def byte_offset(self, pos: int) -> int:
        return len(self.text[:pos].encode("utf-8", errors="surrogateescape"))

    def raw(self, start: int, end: int) -> str:
        """Storable raw text: escaped bytes back to `\\xNN`, clipped."""
        text = self.text[start : min(end, start + RAW_TEXT_LIMIT)]
        if not text.isascii():
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        if end - start > RAW_TEXT_LIMIT:
            text += f"... [truncated, {end - start} characters in all]"
        return text

    def element(self, start: int) -> tuple[RawRecord, int]:
        """The value starting at `start` as a record, and where it ends. Raises
        json.JSONDecodeError / ValueError / RecursionError when its end cannot be found."""
        self._refused = None
        value, end = self._decoder.raw_decode(self.text, start)
        line = self.line_of(start)
        error: str | None = None
        if self._refused:
            error = f"malformed JSON: {self._refused}"
        elif self._escaped and (bad := _ESCAPED_BYTE.search(self.text, start, end)):
            error = f"invalid UTF-8 at byte {self.byte_offset(bad.start())} of the file"
        elif not isinstance(value, dict):
            error = f"expected a JSON object, got {_json_kind(value)}"
        if error:
            return RawRecord(line, self.raw(start, end), None, error), end
        return RawRecord(line, self.text[start:end], value), end

    def rest_is_bad(self, start: int, reason: str) -> RawRecord:
        """Everything from `start` on as one quarantined record (nothing silently lost)."""
        start = min(start, max(self.length - 1, 0))
        bad = _ESCAPED_BYTE.match(self.text, start)
        if bad:
            reason = f"invalid UTF-8 at byte {self.byte_offset(start)} of the file; " + reason
        return RawRecord(self.line_of(start), self.raw(start, self.length), None, reason)

    def undecodable(self, start: int, exc: Exception) -> RawRecord:
        """The element at `start` could not be decoded, so its end is unknown: the rest of
        the file from there is quarantined as one record, with the decoder's reason."""
        if isinstance(exc, RecursionError):
            why = "nested too deeply to decode (more levels than Python's JSON decoder follows)"
        else:
            why = str(exc)
        return self.rest_is_bad(
            start, f"malformed JSON: {why}; the rest of the file from this line was not read"
        )


# Python's default limit for int(str): longer digit strings cost quadratic time to convert.
_MAX_INT_DIGITS = min(sys.get_int_max_str_digits() or 4300, 4300)
_UNDECODABLE = (json.JSONDecodeError, ValueError, RecursionError)


def read_json_array(path: Path) -> Iterator[RawRecord]:
    """Elements of the top-level JSON arrays (or single objects) in a .json file, in order:
    several top-level values one after another are all read. A syntax error stops the file
    there: what remains is quarantined as one record, so nothing is silently lost."""
    data = _read_whole(path)
    _check_encoding(path, data[:4])
    doc = _JsonText(data)
    pos = doc.skip_ws(0, top_level=True)
    first = True
    while pos < doc.length:
        opener = doc.text[pos]
        if opener == "{":
            try:
                record, end = doc.element(pos)
            except _UNDECODABLE as exc:
                yield doc.undecodable(pos, exc)
                return
            yield record
        elif opener == "[":
            after = yield from _array_elements(doc, pos)
            if after is None:
                return
            end = after
        else:
            what = "an array or an object" if first else "another array or object"
            yield doc.rest_is_bad(
                pos, f"malformed JSON: expected {what} here; the rest of the file was not read"
            )
            return
        first = False
        pos = doc.skip_ws(end, top_level=True)


def _array_elements(doc: _JsonText, pos: int) -> Generator[RawRecord, None, int | None]:
    """The elements of the array opening at `pos`; returns the position after its `]`, or
    None when the file stopped being readable (the rest was quarantined)."""
    opened_on = doc.line_of(pos)
    last = pos  # where the unread rest starts if the file ends inside the array
    pos = doc.skip_ws(pos + 1)
    if pos < doc.length and doc.text[pos] == "]":
        return pos + 1
    while pos < doc.length:
        try:
            record, end = doc.element(pos)
        except _UNDECODABLE as exc:
            yield doc.undecodable(pos, exc)
            return None
        yield record
        last = end
        pos = doc.skip_ws(end)
        if pos < doc.length and doc.text[pos] == ",":
            pos = doc.skip_ws(pos + 1)
            continue
        if pos < doc.length and doc.text[pos] == "]":
            return pos + 1
        if pos < doc.length:
            yield doc.rest_is_bad(
                pos, "malformed JSON: expected ',' or ']' here; the rest of the file was not read"
            )
            return None
    yield doc.rest_is_bad(
        last, f"malformed JSON: the array opened on line {opened_on} is not closed"
    )
    return None


def read_records(path: Path) -> Iterator[RawRecord]:
    """The records of one file (by suffix). Raises UnreadableFile, and nothing else, when
    the file itself cannot be read."""
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    return read_json_array(path)
