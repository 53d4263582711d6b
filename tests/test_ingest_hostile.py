"""A corpus of hostile input files, run through the real `engram ingest` in a subprocess.

Each case is a file an attacker or a careless user could hand to ingest, with what must
become of it: how many records are read and loaded, which records are quarantined (line,
field, reason) or why the whole file is rejected. The corpus is generated here from one
table rather than committed under tests/data/: several cases are big (a 2 MB line, nesting
bombs), several are bytes that do not survive an editor or git attributes (bad UTF-8, NUL,
UTF-16, CRLF), two are not regular files (a FIFO, a file nobody may read) and one has a
name that is not UTF-8; keeping case and expectation on one line keeps them in step.

Invariants checked for every case: no traceback, the documented exit code, loaded +
skipped + rejected = read, every bad record in raw.rejected_records with file, line, field
and reason, every unreadable file in raw.rejected_files, the warehouse still opens, and the
good file placed right after each hostile one in the same run loads completely.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import pytest

from ingest.reader import UnreadableFile, read_records
from ingest.warehouse import CHECKOUT_ROOT

Reject = tuple[int, str | None, str]  # line, field (None: whole record), part of the reason


def ev(tag: str, n: int = 0, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": f"{tag}-{n}",
        "pattern_id": f"p-{tag}",
        "session_id": "s1",
        "timestamp": "2025-01-06T12:00:00Z",
        "outcome_quality": 0.5,
        "files_involved": ["src/app.py"],
        "tools_used": ["pytest"],
        "context": "flaky test",
    }
    record.update(overrides)
    return record


def pat(tag: str, n: int = 0, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"pattern_id": f"p-{tag}-{n}", "description": f"approach {tag} {n}"}
    record.update(overrides)
    return record


def E(tag: str, n: int = 0, **overrides: Any) -> str:
    return json.dumps(ev(tag, n, **overrides))


def P(tag: str, n: int = 0, **overrides: Any) -> str:
    return json.dumps(pat(tag, n, **overrides))


def lines(*texts: str) -> bytes:
    return ("\n".join(texts) + "\n").encode()


def array(*texts: str) -> bytes:
    """A JSON array with one element per line: element k (0-based) starts on line k + 2."""
    return ("[\n" + ",\n".join(texts) + "\n]\n").encode()


def nest(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def with_raw(record: str, key: str, raw: str) -> str:
    """`record` (JSON text) with the value of `key` replaced by raw JSON text."""
    return re.sub(rf'"{key}": [^,}}]+', f'"{key}": {raw}', record)


BOMB = b"[" * 10_000 + b"]" * 10_000
BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Case:
    name: str  # file name: its suffix picks the reader, a patterns*/events* prefix the kind
    data: Callable[[str], bytes]  # tag -> content (the tag keeps ids unique per case)
    read: int = 0
    loaded: int = 0
    skipped: int = 0
    rejects: tuple[Reject, ...] = ()
    file_reason: str | None = None  # the whole file is rejected, with this in the reason
    special: str | None = None  # "fifo" or "unreadable": made on disk specially

    @property
    def kind_prefix(self) -> str:
        for prefix in ("patterns", "events"):
            if self.name.startswith(prefix):
                return prefix
        return ""


def _cases() -> list[Case]:
    q400 = "1" * 400
    return [
        Case("empty.jsonl", lambda t: b""),
        Case("empty.json", lambda t: b""),
        Case("whitespace.jsonl", lambda t: b" \n\t\n\r\n\n"),
        Case("whitespace.json", lambda t: b" \n\t \r\n"),
        Case("only_bom.jsonl", lambda t: BOM),
        Case("lone_bracket.json", lambda t: b"[", 1, 0, rejects=((1, None, "not closed"),)),
        Case("lone_bracket.jsonl", lambda t: b"[\n", 1, 0, rejects=((1, None, "malformed"),)),
        Case(
            "close_close.json",
            lambda t: b"]]",
            1,
            0,
            rejects=((1, None, "expected an array or an object"),),
        ),
        Case(
            "numbers.json",
            lambda t: b"[1,2]",
            2,
            0,
            rejects=((1, None, "got number"), (1, None, "got number")),
        ),
        Case("numbers.jsonl", lambda t: b"[1,2]\n", 1, 0, rejects=((1, None, "got array"),)),
        Case(
            "nested_arrays.json",
            lambda t: f"[[{E(t, 1)}],\n[{E(t, 2)}]]".encode(),
            2,
            0,
            rejects=((1, None, "got array"), (2, None, "got array")),
        ),
        Case(
            "mixed_elements.json",
            lambda t: array(E(t, 1), "1", '"s"', "null", "true", "{}", E(t, 2)),
            7,
            2,
            rejects=(
                (3, None, "got number"),
                (4, None, "got string"),
                (5, None, "got null"),
                (6, None, "got boolean"),
                (7, None, "cannot tell"),
            ),
        ),
        Case(
            "null_bytes.jsonl",
            lambda t: b'{"event_id": "x\x00"}\n\x00\n' + lines(E(t, 1), E(t, 2, context="a\0b")),
            4,
            2,
            rejects=((1, None, "malformed JSON"), (2, None, "malformed JSON")),
        ),
        Case(
            "null_bytes.json",
            lambda t: f"[{E(t, 1)}]".encode() + b"\x00",
            2,
            1,
            rejects=((1, None, "another array or object"),),
        ),
        Case("crlf.jsonl", lambda t: f"{E(t, 1)}\r\n{E(t, 2)}\r\n".encode(), 2, 2),
        Case("crlf.json", lambda t: f"[\r\n{E(t, 1)},\r\n{E(t, 2)}\r\n]\r\n".encode(), 2, 2),
        Case(
            "giant_line.jsonl",
            lambda t: b'{"context": "' + b"x" * 2_000_000 + b'"}\n' + lines(E(t, 1)),
            2,
            1,
            rejects=((1, None, "bytes long"),),
        ),
        Case(
            "bomb.jsonl",
            lambda t: BOMB + b"\n" + lines(E(t, 1)),
            2,
            1,
            rejects=((1, None, "malformed JSON"),),
        ),
        Case("bomb.json", lambda t: BOMB, 1, 0, rejects=((1, None, "nested too deeply"),)),
        Case(
            "bomb_in_array.json",  # its end cannot be found: the rest is quarantined as one
            lambda t: f"[\n{E(t, 1)},\n".encode() + b'{"a": ' + BOMB + f"}},\n{E(t, 2)}]".encode(),
            2,
            1,
            rejects=((3, None, "nested too deeply"),),
        ),
        Case(
            "duplicate_ids.jsonl",
            lambda t: lines(E(t, 1), E(t, 1), E(t, 1, outcome_quality=0.9)),
            3,
            1,
            skipped=2,
        ),
        Case(
            "odd_keys.jsonl",
            lambda t: lines(
                json.dumps(
                    {**ev(t, 1), "": 1, "\0": 2, "💥": 3, "k" * 1000: 4, "__proto__": {}, " ": 5}
                ),
                P(t, 2, metadata={"": 1, "\0": [], "💥": None, "a.b": {"$ref": "#"}, "'": '"'}),
            ),
            2,
            2,
        ),
        Case(
            "ts_overflow.jsonl",
            lambda t: lines(
                E(t, 1, timestamp="0001-01-01T00:00:00+01:00"),
                E(t, 2, timestamp="9999-12-31T23:59:59-01:00"),
                E(t, 3),
            ),
            3,
            1,
            rejects=((1, "timestamp", "overflows"), (2, "timestamp", "overflows")),
        ),
        Case(
            "ts_overflow.json",
            lambda t: array(
                E(t, 1, timestamp="0001-01-01T00:00:00+01:00"),
                P(t, 2, first_seen="9999-12-31T23:59:59-01:00"),
                E(t, 3),
            ),
            3,
            1,
            rejects=((2, "timestamp", "overflows"), (3, "first_seen", "overflows")),
        ),
        Case(
            "deep_metadata.jsonl",
            lambda t: lines(P(t, 1, metadata={"m": nest(300)}), P(t, 2, metadata={"m": nest(20)})),
            2,
            1,
            rejects=((1, "metadata", "nested too deeply"),),
        ),
        Case(
            "deep_metadata.json",
            lambda t: array(P(t, 1, metadata={"m": nest(300)}), P(t, 2, metadata={"m": nest(20)})),
            2,
            1,
            rejects=((2, "metadata", "nested too deeply"),),
        ),
        Case(
            "deep_unknown_field.jsonl",  # unknown fields are ignored, however deep
            lambda t: lines(json.dumps({**ev(t, 1), "extra": nest(300)})),
            1,
            1,
        ),
        Case(
            "quality_400_digits.json",
            lambda t: array(with_raw(E(t, 1), "outcome_quality", q400), E(t, 2)),
            2,
            1,
            rejects=((2, "outcome_quality", "400 digits"),),
        ),
        Case(
            "quality_400_digits.jsonl",  # orjson refuses the number: the line is malformed
            lambda t: lines(with_raw(E(t, 1), "outcome_quality", q400), E(t, 2)),
            2,
            1,
            rejects=((1, None, "malformed JSON"),),
        ),
        Case(
            "metadata_bigint.json",
            lambda t: array(P(t, 1, metadata={"n": 10**30}), P(t, 2, metadata={"n": 2**63 - 1})),
            2,
            1,
            rejects=((2, "metadata", "64-bit"),),
        ),
        Case(
            "metadata_bigint.jsonl",  # orjson reads integers past 64 bits as doubles: 1e30
            lambda t: lines(P(t, 1, metadata={"n": 10**30})),
            1,
            1,
        ),
        Case(
            "huge_int_id.json",
            lambda t: array(E(t, 1, event_id=10**300), E(t, 2, event_id=10**30 + len(t))),
            2,
            1,
            rejects=((2, "event_id", "limit 256"),),
        ),
        Case(
            "two_arrays.json",  # the reader used to stop at the first ']' and drop e2, e3
            lambda t: f"[{E(t, 1)}]\n[{E(t, 2)},{E(t, 3)}]".encode(),
            3,
            3,
        ),
        Case("objects.json", lambda t: f"{E(t, 1)}{E(t, 2)}\n{E(t, 3)}".encode(), 3, 3),
        Case(
            "trailing_garbage.json",
            lambda t: f"[{E(t, 1)}] garbage".encode(),
            2,
            1,
            rejects=((1, None, "another array or object"),),
        ),
        Case(
            "trailing_comma.json",
            lambda t: f"[\n{E(t, 1)},\n]".encode(),
            2,
            1,
            rejects=((3, None, "malformed JSON"),),
        ),
        Case(
            "truncated.json",
            lambda t: f"[\n{E(t, 1)},\n{E(t, 2)[:30]}".encode(),
            2,
            1,
            rejects=((3, None, "malformed JSON"),),
        ),
        Case(
            "truncated.jsonl",
            lambda t: f"{E(t, 1)}\n{E(t, 2)[:30]}".encode(),
            2,
            1,
            rejects=((2, None, "malformed JSON"),),
        ),
        Case(
            "surrogates.json",  # json.dumps writes lone surrogates as \\ud800 escapes
            lambda t: array(
                E(t, 1, pattern_id="p\ud800"),
                E(t, 2, context="\udfff"),
                P(t, 3, metadata={"\ud800": 1}),
                E(t, 4, files_involved=["ok.py", "\ud83d"]),
                E(t, 5, context="a valid pair: \ud83d\ude00"),
            ),
            5,
            1,
            rejects=(
                (2, "pattern_id", "lone surrogate"),
                (3, "context", "lone surrogate"),
                (4, "metadata", "lone surrogate"),
                (5, "files_involved", "lone surrogate"),
            ),
        ),
        Case(
            "surrogates.jsonl",  # orjson refuses lone surrogates: the line is malformed
            lambda t: lines(E(t, 1, pattern_id="p\ud800"), E(t, 2)),
            2,
            1,
            rejects=((1, None, "malformed JSON"),),
        ),
        Case(
            "surrogate_bytes.jsonl",  # a surrogate encoded in UTF-8 bytes is not UTF-8
            lambda t: b'{"context": "\xed\xa0\x80"}\n' + lines(E(t, 1)),
            2,
            1,
            rejects=((1, None, "invalid UTF-8"),),
        ),
        Case("bom.jsonl", lambda t: BOM + lines(E(t, 1)) + BOM + lines(E(t, 2)), 2, 2),
        Case("bom.json", lambda t: BOM + f"[{E(t, 1)}]".encode(), 1, 1),
        Case(
            "joined_with_boms.json",  # two files joined with cat, each with its BOM
            lambda t: BOM + f"[{E(t, 1)}]\n".encode() + BOM + f"[{E(t, 2)}]".encode(),
            2,
            2,
        ),
        Case(
            "bad_utf8.jsonl",
            lambda t: (
                json.dumps(ev(t, 1, context="café"), ensure_ascii=False)
                .encode()
                .replace(b"\xc3\xa9", b"\xe9")
                + b"\n"
                + lines(E(t, 2))
            ),
            2,
            1,
            rejects=((1, None, "invalid UTF-8"),),
        ),
        Case(
            "bad_utf8.json",  # only the element holding the bad byte is quarantined
            lambda t: (
                b"[\n"
                + json.dumps(ev(t, 1, context="café"), ensure_ascii=False)
                .encode()
                .replace(b"\xc3\xa9", b"\xe9")
                + f",\n{E(t, 2)}\n]".encode()
            ),
            2,
            1,
            rejects=((2, None, "invalid UTF-8"),),
        ),
        Case(
            "nan_inf.json",
            lambda t: array(
                with_raw(E(t, 1), "outcome_quality", "NaN"),
                with_raw(E(t, 2), "outcome_quality", "-Infinity"),
                with_raw(E(t, 3), "outcome_quality", "1e400"),
                E(t, 4),
            ),
            4,
            1,
            # 1e400 decodes to infinity, which the quality check refuses on its field
            rejects=((2, None, "NaN"), (3, None, "Infinity"), (4, "outcome_quality", "inf")),
        ),
        Case(
            "nan.jsonl",
            lambda t: lines(with_raw(E(t, 1), "outcome_quality", "NaN"), E(t, 2)),
            2,
            1,
            rejects=((1, None, "malformed JSON"),),
        ),
        Case(
            "wrong_types.jsonl",
            lambda t: lines(
                E(t, 1, outcome_quality="0.5"),
                E(t, 2, files_involved={"a": 1}),
                E(t, 3, tools_used=[None]),
                E(t, 4, event_id=1.5),
                E(t, 5, session_id=True),
                E(t, 6, timestamp=1_700_000_000),
                E(t, 7, context=["x"]),
                E(t, 8, project_id={}),
                E(t, 9, outcome_quality=-1e-9),
                E(t, 10, outcome_quality=1.0000001),
                E(t, 11, files_involved=["a"] * 1001),
                E(t, 12, timestamp="1969-12-31T23:59:59Z"),
                E(t, 13, timestamp="2101-01-01T00:00:00"),
                E(t, 14),
            ),
            14,
            1,
            rejects=(
                (1, "outcome_quality", "must be a number"),
                (2, "files_involved", "list of strings"),
                (3, "tools_used", "must be a string"),
                (4, "event_id", "string or an integer"),
                (5, "session_id", "string or an integer"),
                (6, "timestamp", "ISO-8601 string"),
                (7, "context", "must be a string"),
                (8, "project_id", "must be a string"),
                (9, "outcome_quality", "outside"),
                (10, "outcome_quality", "outside"),
                (11, "files_involved", "limit 1000"),
                (12, "timestamp", "outside 1970..2100"),
                (13, "timestamp", "outside 1970..2100"),
            ),
        ),
        Case(
            "boundaries.jsonl",  # just inside every limit: all load
            lambda t: lines(
                E(t, 1, timestamp="1970-01-01T00:00:00Z", outcome_quality=0),
                E(t, 2, timestamp="2100-12-31T23:59:59", outcome_quality=1),
                E(t, 3, context="c" * 20_000, files_involved=["f" * 1024] * 5),
                E(t, 4, event_id="i" * 250 + t[:6], session_id=2**63),
                E(t, 5, files_involved=[f"f{i}" for i in range(1000)], tools_used=["t" * 256]),
            ),
            5,
            5,
        ),
        Case(
            "control_chars.jsonl",
            lambda t: lines(
                E(t, 1, context="a\u0001\u001b[31mred\u007f\u202e"),
                P(t, 2, description="line1\nline2\ttab\0nul"),
            ),
            2,
            2,
        ),
        Case(
            "cannot_tell.jsonl",
            lambda t: lines("{}", '{"pattern_id": "x"}', '{"foo": 1}'),
            3,
            0,
            rejects=((1, None, "cannot tell"), (2, None, "cannot tell"), (3, None, "cannot tell")),
        ),
        Case(
            "patterns_hostile.jsonl",
            lambda t: lines(
                P(t, 1, description="x" * 10_001),
                json.dumps({"pattern_id": 7, "description": "d"}),
                P(t, 3, first_seen="not a date"),
                P(t, 4, metadata=[1]),
                E(t, 5),
                P(t, 6),
            ),
            6,
            1,
            rejects=(
                (1, "description", "limit 10000"),
                (2, "pattern_id", "must be a string"),
                (3, "first_seen", "not an ISO-8601"),
                (4, "metadata", "must be an object"),
                (5, "description", "missing"),
            ),
        ),
        Case(
            "events_hostile.jsonl",
            lambda t: lines(P(t, 1), E(t, 2)),
            2,
            1,
            rejects=((1, "event_id", "missing"),),
        ),
        Case(
            "utf16.json",
            lambda t: f"[{E(t, 1)}]".encode("utf-16"),
            file_reason="UTF-16",
        ),
        Case(
            "utf16.jsonl", lambda t: lines(E(t, 1)).decode().encode("utf-16"), file_reason="UTF-16"
        ),
        Case("fifo.jsonl", lambda t: b"", file_reason="not a regular file", special="fifo"),
        Case(
            "unreadable.jsonl",
            lambda t: lines(E(t, 1)),
            file_reason="permission denied",
            special="unreadable",
        ),
        Case(os.fsdecode(b"bad\xffname.jsonl"), lambda t: lines(E(t, 1)), file_reason="UTF-8"),
    ]


CASES = _cases()


@cache
def can_deny_reads() -> bool:
    """Whether a child process can be refused a file by its mode. Root ignores modes; the
    child then drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from its capability bounding
    set before exec (see `_drop_dac`), which needs CAP_SETPCAP."""
    if os.geteuid() != 0:
        return True
    with tempfile.TemporaryDirectory() as folder:
        secret = Path(folder) / "secret"
        secret.write_text("no")
        secret.chmod(0)
        try:
            probe = subprocess.run(
                [sys.executable, "-c", "import sys; open(sys.argv[1])", str(secret)],
                preexec_fn=_drop_dac,
                capture_output=True,
                check=False,
                timeout=120,
            )
        except (OSError, subprocess.SubprocessError):  # prctl refused: cannot drop
            return False
    return probe.returncode != 0 and b"PermissionError" in probe.stderr


def preexec() -> Callable[[], None] | None:
    """What each engram child runs before exec: drop root's override when that works."""
    return _drop_dac if os.geteuid() == 0 and can_deny_reads() else None


def _drop_dac() -> None:
    """preexec_fn: as root, drop the capabilities that let root read and write any file,
    so modes apply to the exec'd child (prctl PR_CAPBSET_DROP; a no-op for other users)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2
    for capability in (cap_dac_override, cap_dac_read_search):
        if libc.prctl(pr_capbset_drop, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def active_cases() -> list[Case]:
    return [c for c in CASES if c.special != "unreadable" or can_deny_reads()]


def file_name(index: int, case: Case) -> str:
    """`c07_name.json`, then the good file `c07~good.jsonl` sorts right after it (the
    loader orders files by kind, then by path)."""
    prefix = f"{case.kind_prefix}_" if case.kind_prefix else ""
    rest = case.name[len(case.kind_prefix) :].lstrip("_")
    return f"{prefix}c{index:02d}_{rest}"


def good_name(index: int, case: Case) -> str:
    prefix = f"{case.kind_prefix}_" if case.kind_prefix else ""
    return f"{prefix}c{index:02d}~good.jsonl"


def good_data(index: int, case: Case) -> bytes:
    tag = f"good{index:02d}"
    if case.kind_prefix == "patterns":
        return lines(P(tag, 1), P(tag, 2))
    return lines(E(tag, 1), E(tag, 2))


@dataclass
class Corpus:
    folder: Path
    hostile: dict[str, Path] = field(default_factory=dict)  # case name -> path
    good: dict[str, Path] = field(default_factory=dict)

    def all_paths(self) -> list[Path]:
        return [*self.hostile.values(), *self.good.values()]


def write_corpus(folder: Path, cases: list[Case]) -> Corpus:
    folder.mkdir(parents=True, exist_ok=True)
    corpus = Corpus(folder)
    for index, case in enumerate(cases):
        path = folder / file_name(index, case)
        if case.special == "fifo":
            os.mkfifo(path)
        else:
            path.write_bytes(case.data(f"c{index:02d}"))
        if case.special == "unreadable":
            path.chmod(0)
        corpus.hostile[case.name] = path
        good = folder / good_name(index, case)
        good.write_bytes(good_data(index, case))
        corpus.good[case.name] = good
    return corpus


def run_engram(*args: str | Path, drop_dac: bool) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engram.cli", *map(str, args)],
        cwd=CHECKOUT_ROOT,
        capture_output=True,
        text=True,
        errors="backslashreplace",
        check=False,
        preexec_fn=preexec() if drop_dac else None,
        timeout=600,  # a hang (an old reader blocked on a FIFO) fails instead of waiting
    )


SUMMARY = re.compile(
    r"^(?P<path>.+): read (?P<read>\d+), loaded (?P<loaded>\d+), "
    r"skipped (?P<skipped>\d+), rejected (?P<rejected>\d+) \(",
    re.M,
)
FILE_REJECTED = re.compile(r"^(?P<path>.+): file rejected, nothing read: (?P<reason>.+)$", re.M)


def shown(path: Path) -> str:
    """The path as engram prints and stores it (resolved; bytes that are not UTF-8 escaped)."""
    return os.fsencode(path.resolve()).decode("utf-8", "backslashreplace")


def test_every_hostile_file_is_accounted_for_and_files_after_it_still_load(
    tmp_path: Path,
) -> None:
    cases = active_cases()
    corpus = write_corpus(tmp_path / "corpus", cases)
    db = tmp_path / "wh.duckdb"

    run = run_engram(
        "ingest", *corpus.all_paths(), "--db", db, "--no-embed", "--strict", drop_dac=True
    )

    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == 3, run.stderr  # --strict and something was rejected
    printed = {m["path"]: m for m in SUMMARY.finditer(run.stdout)}
    printed_rejected = {m["path"]: m["reason"] for m in FILE_REJECTED.finditer(run.stdout)}
    con = duckdb.connect(str(db), read_only=True)  # the warehouse still opens
    try:
        for case in cases:
            path = corpus.hostile[case.name]
            name = shown(path)
            quarantined = con.execute(
                "select line_number, field, reason, raw_text from raw.rejected_records"
                " where source_file = ? order by line_number, reason",
                [name],
            ).fetchall()
            refused = con.execute(
                "select reason, size_bytes from raw.rejected_files where source_file = ?", [name]
            ).fetchall()
            if case.file_reason is not None:
                assert name in printed_rejected, (case.name, run.stdout)
                assert case.file_reason in printed_rejected[name], case.name
                assert len(refused) == 1 and case.file_reason in refused[0][0], (case.name, refused)
                assert quarantined == [], case.name
                assert name not in printed, case.name
            else:
                line = printed[name]
                counts = [int(line[k]) for k in ("read", "loaded", "skipped", "rejected")]
                read, loaded, skipped, rejected = counts
                assert read == loaded + skipped + rejected, (case.name, counts)
                expected = [case.read, case.loaded, case.skipped, len(case.rejects)]
                assert counts == expected, case.name
                assert refused == [], case.name
                assert len(quarantined) == len(case.rejects), (case.name, quarantined)
                for want, got in zip(sorted(case.rejects, key=_order), quarantined, strict=True):
                    want_line, want_field, want_reason = want
                    got_line, got_field, got_reason, raw_text = got
                    assert (got_line, got_field) == (want_line, want_field), (case.name, got)
                    assert want_reason in got_reason, (case.name, got_reason)
                    assert raw_text, case.name
            good = printed[shown(corpus.good[case.name])]  # the next file still loads whole
            assert (int(good["read"]), int(good["loaded"])) == (2, 2), case.name
        status = con.execute("select status from raw.ingest_runs").fetchall()
        assert status == [("succeeded",)]
    finally:
        con.close()

    rejects = run_engram("rejects", "--db", db, "--limit", "500", drop_dac=False)
    assert rejects.returncode == 0 and "Traceback" not in rejects.stderr, rejects.stderr
    n_files = sum(1 for c in cases if c.file_reason)
    assert f"{n_files} rejected files" in rejects.stdout
    assert "utf16.json" in rejects.stdout and "UTF-16" in rejects.stdout


def _order(reject: Reject) -> tuple[int, str]:
    return reject[0], reject[2]


# One process calls the CLI's entry point (engram.cli.main.main, what the `engram` script
# runs) once per case, each against a fresh warehouse: --strict first, then without.
# Starting a process per case would cost about two seconds each.
EXIT_CODE_DRIVER = """
import contextlib, io, json, sys, traceback
from engram.cli.main import main

results = []
for path, db in json.load(sys.stdin):
    codes, errors = [], ""
    for extra in (["--strict"], []):
        err = io.StringIO()
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                code = main(["ingest", path, "--db", db, "--no-embed", *extra])
        except SystemExit as exc:
            code = exc.code
        except BaseException:
            code, errors = None, errors + traceback.format_exc()
        codes.append(code)
        errors += err.getvalue()
    results.append({"codes": codes, "stderr": errors})
sys.__stdout__.write(json.dumps(results))
"""


def test_each_hostile_file_alone_gives_the_documented_exit_code(tmp_path: Path) -> None:
    """0 when something was read, 1 when nothing could be read (an empty or rejected file),
    3 with --strict when a record or the file was rejected (1 still wins: nothing read)."""
    cases = active_cases()
    corpus = write_corpus(tmp_path / "corpus", cases)
    jobs = [
        [os.fsdecode(corpus.hostile[c.name]), str(tmp_path / f"wh{i}.duckdb")]
        for i, c in enumerate(cases)
    ]
    run = subprocess.run(
        [sys.executable, "-c", EXIT_CODE_DRIVER],
        input=json.dumps(jobs),
        cwd=CHECKOUT_ROOT,
        capture_output=True,
        text=True,
        errors="surrogateescape",
        check=False,
        preexec_fn=preexec(),
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout)
    for case, result in zip(cases, results, strict=True):
        assert "Traceback" not in result["stderr"], (case.name, result["stderr"])
        nothing_read = case.read == 0
        strict = 1 if nothing_read else 3 if case.rejects else 0
        plain = 1 if nothing_read else 0
        assert result["codes"] == [strict, plain], (case.name, result)


def test_a_file_problem_mid_file_rolls_that_file_back_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    """An UnreadableFile raised after chunks were flushed (as an I/O error would be): that
    file's transaction is rolled back, it gets a rejected-file row, the next file loads."""
    from ingest.loader import ingest_paths

    first = tmp_path / "a_events.jsonl"
    first.write_bytes(lines(*(E("mid", i) for i in range(30))))
    second = tmp_path / "b_events.jsonl"
    second.write_bytes(lines(E("after", 1)))
    db = tmp_path / "wh.duckdb"

    def io_error(path: Path, records: int) -> None:
        if path.name == first.name:
            raise UnreadableFile(path, f"cannot be read: Input/output error (after {records})")

    report = ingest_paths([first, second], db, embed=False, chunk_records=10, on_chunk=io_error)

    assert [f.file_rejected for f in report.files] == [
        "cannot be read: Input/output error (after 10)",
        None,
    ]
    assert report.files[1].loaded == 1 and report.anything_rejected
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select event_id from raw.usage_events").fetchall() == [("after-1",)]
    assert con.execute("select source_file, size_bytes from raw.rejected_files").fetchall() == [
        (str(first.resolve()), first.stat().st_size)
    ]
    assert con.execute("select status from raw.ingest_runs").fetchall() == [("succeeded",)]


def test_only_dead_runs_are_marked_abandoned(tmp_path: Path) -> None:
    """A run left `running` by a killed process becomes `abandoned` at the next run; a run
    still going in this same process (DuckDB's lock is per process) is left alone."""
    from ingest.loader import ingest_paths

    db = tmp_path / "wh.duckdb"
    first = tmp_path / "a_events.jsonl"
    first.write_bytes(lines(*(E("outer", i) for i in range(20))))
    inner_file = tmp_path / "b_events.jsonl"
    inner_file.write_bytes(lines(E("inner", 1)))
    ingest_paths([inner_file], db, embed=False)  # creates the tables
    dead = duckdb.connect(str(db))
    dead.execute(
        "insert into raw.ingest_runs (run_id, started_at, status) values ('dead', now(), 'running')"
    )
    dead.close()
    seen: dict[str, str] = {}

    def nested_run(_path: Path, _records: int) -> None:
        if seen:
            return
        inner = ingest_paths([inner_file], db, embed=False)  # while the outer run is live
        check = duckdb.connect(str(db))
        try:
            seen.update(check.execute("select run_id, status from raw.ingest_runs").fetchall())
        finally:
            check.close()
        seen["inner"] = inner.run_id

    outer = ingest_paths([first], db, embed=False, chunk_records=5, on_chunk=nested_run)

    assert seen["dead"] == "abandoned"
    assert seen[outer.run_id] == "running"  # live in this process: not abandoned
    assert seen[seen["inner"]] == "succeeded"
    con = duckdb.connect(str(db), read_only=True)
    final = dict(con.execute("select run_id, status from raw.ingest_runs").fetchall())
    assert final[outer.run_id] == "succeeded" and final["dead"] == "abandoned"


@pytest.mark.parametrize(
    "failure", [duckdb.IOException, KeyboardInterrupt], ids=["database", "ctrl-c"]
)
def test_database_errors_and_interrupts_still_fail_the_run(
    tmp_path: Path, failure: type[BaseException]
) -> None:
    """Not file problems: the file is rolled back, nothing goes to raw.rejected_files, the
    run is `failed` and the error is raised."""
    from ingest.loader import ingest_paths

    path = tmp_path / "events.jsonl"
    path.write_bytes(lines(*(E("db", i) for i in range(30))))
    db = tmp_path / "wh.duckdb"

    def fail(_path: Path, _records: int) -> None:
        raise failure("disk full")  # a fresh instance: a module-level one would keep its
        # traceback (and the connections in its frames) alive until the interpreter exits

    with pytest.raises(failure):
        ingest_paths([path], db, embed=False, chunk_records=10, on_chunk=fail)

    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select count(*) from raw.usage_events").fetchone() == (0,)
    assert con.execute("select count(*) from raw.rejected_files").fetchone() == (0,)
    status, error = con.execute("select status, error from raw.ingest_runs").fetchone()  # type: ignore[misc]
    assert status == "failed" and failure.__name__ in error


def test_a_json_file_too_big_to_read_whole_is_rejected_as_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ingest.reader

    monkeypatch.setattr(ingest.reader, "MAX_JSON_FILE_BYTES", 100)
    path = tmp_path / "memory.json"
    path.write_bytes(array(*(E("big", i) for i in range(5))))
    with pytest.raises(UnreadableFile, match="write large logs as JSON Lines"):
        list(read_records(path))


# --- the warehouse cannot be opened: one message per cause --------------------------------


def test_db_that_is_a_directory(tmp_path: Path) -> None:
    good = tmp_path / "events.jsonl"
    good.write_bytes(lines(E("x", 1)))
    run = run_engram("ingest", good, "--db", tmp_path, "--no-embed", drop_dac=False)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "it is a directory, not a warehouse file" in run.stderr


def test_db_whose_parent_is_a_file(tmp_path: Path) -> None:
    good = tmp_path / "events.jsonl"
    good.write_bytes(lines(E("x", 1)))
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file")
    run = run_engram(
        "ingest", good, "--db", blocker / "sub" / "wh.duckdb", "--no-embed", drop_dac=False
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert f"{blocker} is a file, not a folder" in run.stderr


def test_db_in_a_read_only_folder(tmp_path: Path) -> None:
    if not can_deny_reads():
        pytest.skip("running as root without CAP_SETPCAP: modes cannot deny this process")
    good = tmp_path / "events.jsonl"
    good.write_bytes(lines(E("x", 1)))
    locked = tmp_path / "read_only"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        in_folder = run_engram(
            "ingest", good, "--db", locked / "wh.duckdb", "--no-embed", drop_dac=True
        )
        below = run_engram(
            "ingest", good, "--db", locked / "sub" / "wh.duckdb", "--no-embed", drop_dac=True
        )
    finally:
        locked.chmod(0o755)
    for run in (in_folder, below):
        assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
        assert f"for writing: permission denied on {locked}" in run.stderr, run.stderr


def test_db_that_is_not_a_duckdb_file(tmp_path: Path) -> None:
    good = tmp_path / "events.jsonl"
    good.write_bytes(lines(E("x", 1)))
    garbage = tmp_path / "wh.duckdb"
    garbage.write_bytes(b"this is not a database" * 100)
    run = run_engram("ingest", good, "--db", garbage, "--no-embed", drop_dac=False)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "the file is not a DuckDB database" in run.stderr


HOLD_LOCK = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(120)
"""


def test_db_locked_by_another_process(tmp_path: Path) -> None:
    good = tmp_path / "events.jsonl"
    good.write_bytes(lines(E("x", 1)))
    db = tmp_path / "wh.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        run = run_engram("ingest", good, "--db", db, "--no-embed", drop_dac=False)
    finally:
        holder.kill()
        holder.wait()
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "another process is using it" in run.stderr, run.stderr
    assert "Wait for it to finish" in run.stderr
