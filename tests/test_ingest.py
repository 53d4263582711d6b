"""Ingest: validation, quarantine, accounting, idempotence, atomicity, embedding cache."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest

from ingest.embedder import Embedder, text_hash
from ingest.loader import IngestReport, ingest_paths
from ingest.warehouse import CHECKOUT_ROOT

PATTERNS = [
    {"pattern_id": "await-fix", "description": "Add the missing .await on the async call."},
    {
        "pattern_id": "send-fix",
        "description": "Drop the MutexGuard before awaiting so the future is Send.",
        "pattern_type": "fix",
        "first_seen": "2025-01-01T10:00:00+02:00",
        "metadata": {"lang": "rust"},
    },
]


def event(n: int, **overrides: object) -> dict[str, object]:
    record: dict[str, object] = {
        "event_id": f"e{n}",
        "pattern_id": "await-fix",
        "session_id": "s1",
        "timestamp": "2025-01-06T12:00:00Z",
        "outcome_quality": 0.75,
        "files_involved": ["src/main.rs", "src/lib.rs"],
        "tools_used": ["cargo"],
        "context": "cargo build: future is not Send",
    }
    record.update(overrides)
    return record


def write_jsonl(path: Path, records: list[object]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def counts(db: Path) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            table: con.execute(f"select count(*) from raw.{table}").fetchone()[0]  # type: ignore[index]
            for table in ("patterns", "usage_events", "rejected_records", "embeddings")
        }
    finally:
        con.close()


def assert_accounting(report: IngestReport) -> None:
    for f in report.files:
        assert f.read == f.loaded + f.skipped + f.rejected, f


# One bad record per kind of problem, with the field the reason must name (None: whole record).
BAD_EVENTS: list[tuple[str, str | None, str]] = [
    ('{"event_id": "b1", "pattern_id": "await-fix",', None, "malformed JSON"),
    ("[1, 2, 3]", None, "expected a JSON object"),
    (json.dumps(event(101, session_id=None)), "session_id", "missing"),
    (json.dumps(event(102, outcome_quality=1.5)), "outcome_quality", "outside [0, 1]"),
    (json.dumps(event(103, outcome_quality="high")), "outcome_quality", "must be a number"),
    (json.dumps(event(104, outcome_quality=True)), "outcome_quality", "must be a number"),
    (json.dumps(event(105, timestamp="last tuesday")), "timestamp", "not an ISO-8601"),
    (json.dumps(event(106, timestamp="1600-01-01T00:00:00")), "timestamp", "outside"),
    (json.dumps(event(107, files_involved="src/main.rs")), "files_involved", "list of strings"),
    (json.dumps(event(108, files_involved=["a.rs", 3])), "files_involved", "[1] must be a string"),
    (json.dumps(event(109, context="x" * 20_001)), "context", "limit 20000"),
    (json.dumps(event(110, event_id=["e"])), "event_id", "string or an integer"),
    (json.dumps(event(111, pattern_id="")), "pattern_id", "must not be empty"),
    (json.dumps({"pattern_id": "p", "foo": 1}), None, "cannot tell"),
]


def test_each_kind_of_bad_record_is_quarantined_with_its_reason(
    tmp_path: Path, embedder: Embedder
) -> None:
    good = [json.dumps(event(1)), json.dumps(event(2, event_id=2))]
    path = tmp_path / "mixed.jsonl"
    body = "\n".join(good + [line for line, _, _ in BAD_EVENTS]) + "\n"
    bad_utf8 = (
        json.dumps(event(120, context="caf\u00e9"), ensure_ascii=False)
        .encode()
        .replace(b"\xc3\xa9", b"\xe9")
    )
    path.write_bytes(body.encode() + bad_utf8 + b"\n" + b'{"x": "' + b"y" * 1_100_000 + b'"}\n')
    db = tmp_path / "wh.duckdb"

    report = ingest_paths([path], db, embedder=embedder)

    assert_accounting(report)
    file = report.files[0]
    assert (file.read, file.loaded, file.rejected) == (len(BAD_EVENTS) + 4, 2, len(BAD_EVENTS) + 2)
    con = duckdb.connect(str(db), read_only=True)
    rejected = con.execute(
        "select line_number, field, reason, source_file from raw.rejected_records"
        " order by line_number"
    ).fetchall()
    assert [r[0] for r in rejected] == list(range(3, 3 + len(BAD_EVENTS) + 2))
    for (line, field, reason, source), (_, want_field, want_reason) in zip(
        rejected, BAD_EVENTS, strict=False
    ):
        assert source == str(path.resolve())
        assert field == want_field, (line, reason)
        assert want_reason in reason, (line, reason)
    utf8, giant = rejected[-2], rejected[-1]
    assert "invalid UTF-8" in utf8[2]
    assert "bytes long" in giant[2]
    raw_giant = con.execute(
        "select length(raw_text) from raw.rejected_records where line_number = ?", [giant[0]]
    ).fetchone()[0]  # type: ignore[index]
    assert raw_giant < 70_000  # kept, but truncated
    # integer event ids arrive as text
    assert con.execute("select count(*) from raw.usage_events where event_id = '2'").fetchone()[0]


def test_reingest_is_a_noop_and_counts_add_up(tmp_path: Path, embedder: Embedder) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write_jsonl(folder / "patterns.jsonl", PATTERNS)
    write_jsonl(folder / "events.jsonl", [event(i) for i in range(5)] + ["not json"])
    db = tmp_path / "wh.duckdb"

    first = ingest_paths([folder], db, embedder=embedder)
    before = counts(db)
    second = ingest_paths([folder], db, embedder=embedder)

    assert counts(db) == before
    assert before["patterns"] == 2 and before["usage_events"] == 5
    assert before["rejected_records"] == 1
    assert [f.path.name for f in first.files] == ["patterns.jsonl", "events.jsonl"]
    assert all(f.already_ingested and f.skipped == f.read for f in second.files)
    assert second.embed is not None and second.embed.texts_embedded == 0
    assert_accounting(first)
    assert_accounting(second)


def test_changed_file_loads_only_what_is_new(tmp_path: Path, embedder: Embedder) -> None:
    db = tmp_path / "wh.duckdb"
    path = write_jsonl(tmp_path / "events.jsonl", [event(1), event(2), "{bad"])
    ingest_paths([path], db, embedder=embedder)
    # the agent appends to its log: the old lines (including the bad one) come again
    write_jsonl(path, [event(1), event(2), "{bad", event(3), event(3, outcome_quality=0.1)])

    report = ingest_paths([path], db, embedder=embedder)

    file = report.files[0]
    assert (file.read, file.loaded, file.skipped, file.rejected) == (5, 1, 4, 0)
    assert counts(db)["usage_events"] == 3
    assert counts(db)["rejected_records"] == 1
    con = duckdb.connect(str(db), read_only=True)
    quality = con.execute("select outcome_quality from raw.usage_events where event_id = 'e3'")
    assert quality.fetchone()[0] == 0.75  # first occurrence wins  # type: ignore[index]


def test_resent_pattern_replaces_and_is_reembedded(tmp_path: Path, embedder: Embedder) -> None:
    db = tmp_path / "wh.duckdb"
    ingest_paths([write_jsonl(tmp_path / "patterns.jsonl", PATTERNS)], db, embedder=embedder)
    changed = [dict(PATTERNS[0], description="Await the future returned by the async fn.")]
    report = ingest_paths(
        [write_jsonl(tmp_path / "patterns_v2.jsonl", [*changed, PATTERNS[1]])],
        db,
        embedder=embedder,
    )

    file = report.files[0]
    assert (file.loaded, file.skipped) == (1, 1)  # one replaced, one unchanged
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute(
        "select p.description, e.embedding from raw.patterns p"
        " join raw.embeddings e on e.text_hash = p.description_hash"
        " where p.pattern_id = 'await-fix'"
    ).fetchall()
    assert len(rows) == 1 and rows[0][0].startswith("Await the future")
    assert report.embed is not None and report.embed.texts_embedded == 1
    assert con.execute("select count(*) from raw.patterns").fetchone()[0] == 2  # type: ignore[index]


def test_timestamps_are_stored_in_utc_and_json_arrays_keep_line_numbers(
    tmp_path: Path, embedder: Embedder
) -> None:
    records = [
        event(1, timestamp="2025-03-01T09:30:00+02:00"),
        event(2, timestamp="2025-03-01T09:30:00"),
        event(3, outcome_quality=-0.1),
    ]
    path = tmp_path / "memory.json"  # not named events*: kind told by fields
    path.write_text(json.dumps(records, indent=2), encoding="utf-8")
    db = tmp_path / "wh.duckdb"

    report = ingest_paths([path], db, embedder=embedder)

    assert_accounting(report)
    con = duckdb.connect(str(db), read_only=True)
    times = dict(
        con.execute("select event_id, occurred_at::varchar from raw.usage_events").fetchall()
    )
    assert times == {"e1": "2025-03-01 07:30:00", "e2": "2025-03-01 09:30:00"}
    line = con.execute("select line_number from raw.rejected_records").fetchone()[0]  # type: ignore[index]
    starts = [
        n for n, text in enumerate(json.dumps(records, indent=2).splitlines(), 1) if text == "  {"
    ]
    expected_line = starts[2]  # the third element
    assert line == expected_line


def test_broken_json_array_quarantines_the_rest(tmp_path: Path, embedder: Embedder) -> None:
    path = tmp_path / "events.json"
    path.write_text(
        '[\n{"event_id": 1, "pattern_id": "p", "session_id": "s",'
        ' "timestamp": "2025-01-01", "outcome_quality": 1},\n{"event_id": 2,,}\n]'
    )
    report = ingest_paths([path], tmp_path / "wh.duckdb", embedder=embedder)
    file = report.files[0]
    assert (file.read, file.loaded, file.rejected) == (2, 1, 1)
    assert "line 3" in file.examples[0]


CRASH_SCRIPT = """
import os, signal, sys
from pathlib import Path
from ingest.loader import ingest_paths

def die(path, records_so_far):
    os.kill(os.getpid(), signal.SIGKILL)  # a hard crash: no cleanup, no rollback code runs

ingest_paths([Path(sys.argv[1])], Path(sys.argv[2]), embed=False, chunk_records=10,
             on_chunk=die)
"""


def test_killed_ingest_leaves_no_partial_file_and_rerun_completes(
    tmp_path: Path, embedder: Embedder
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write_jsonl(folder / "patterns.jsonl", PATTERNS)
    write_jsonl(folder / "events.jsonl", [event(i) for i in range(35)])
    db = tmp_path / "wh.duckdb"

    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(folder / "events.jsonl"), str(db)],
        cwd=CHECKOUT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert crashed.returncode == -9, crashed.stderr
    assert counts(db)["usage_events"] == 0  # the first chunk of 10 was never committed

    report = ingest_paths([folder], db, embedder=embedder)

    assert counts(db)["usage_events"] == 35
    assert report.files[1].loaded == 35
    con = duckdb.connect(str(db), read_only=True)
    runs = con.execute("select status, error from raw.ingest_runs order by started_at").fetchall()
    # the killed run never finished; the next writer (holding the lock) marked it abandoned
    assert [status for status, _ in runs] == ["abandoned", "succeeded"]
    assert "killed" in runs[0][1] and report.run_id in runs[0][1]


def test_failure_mid_file_rolls_back_that_file(tmp_path: Path, embedder: Embedder) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", [event(i) for i in range(30)])
    db = tmp_path / "wh.duckdb"

    def fail(_path: Path, records: int) -> None:
        raise RuntimeError(f"disk full after {records}")

    with pytest.raises(RuntimeError, match="disk full"):
        ingest_paths([path], db, embedder=embedder, chunk_records=10, on_chunk=fail)

    assert counts(db)["usage_events"] == 0
    con = duckdb.connect(str(db), read_only=True)
    status, error = con.execute("select status, error from raw.ingest_runs").fetchone()  # type: ignore[misc]
    assert status == "failed" and "disk full" in error


def test_embeddings_are_unit_length_and_capture_meaning(embedder: Embedder) -> None:
    vectors = embedder.encode(
        [
            "Add the missing .await on the async function call.",
            "The future was never awaited; await it.",
            "Preheat the oven and bake the bread for forty minutes.",
        ]
    )
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    paraphrase, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert paraphrase > unrelated + 0.2


def test_each_distinct_text_is_embedded_once(tmp_path: Path, embedder: Embedder) -> None:
    db = tmp_path / "wh.duckdb"
    same_context = [event(i, context="flaky test in CI") for i in range(20)]
    first = ingest_paths(
        [write_jsonl(tmp_path / "events.jsonl", same_context)], db, embedder=embedder
    )
    more = [event(100 + i, context="flaky test in CI") for i in range(5)]
    second = ingest_paths([write_jsonl(tmp_path / "events2.jsonl", more)], db, embedder=embedder)

    assert first.embed is not None and first.embed.texts_embedded == 1
    assert second.embed is not None and second.embed.texts_embedded == 0
    assert second.embed.texts_cached == 1
    con = duckdb.connect(str(db), read_only=True)
    stored = con.execute("select text_hash, embedding from raw.embeddings").fetchall()
    assert stored[0][0] == text_hash("flaky test in CI")
    assert len(stored[0][1]) == 384


def run_cli(*args: str, cwd: Path = CHECKOUT_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engram.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_ingest_exit_codes_and_summary(tmp_path: Path) -> None:
    db = str(tmp_path / "wh.duckdb")
    bad_only = write_jsonl(tmp_path / "events.jsonl", ["{oops"])
    empty = tmp_path / "empty"
    empty.mkdir()

    nothing = run_cli("ingest", str(empty), "--db", db, "--no-embed")
    missing = run_cli("ingest", str(tmp_path / "nope.jsonl"), "--db", db)
    strict = run_cli("ingest", str(bad_only), "--db", db, "--no-embed", "--strict")
    relaxed = run_cli("ingest", str(bad_only), "--db", db, "--no-embed")

    assert nothing.returncode == 1 and "no records could be read" in nothing.stderr
    assert missing.returncode == 2 and "no such file" in missing.stderr
    assert strict.returncode == 3
    assert "events.jsonl: line 1: malformed JSON" in strict.stderr
    assert "read 1, loaded 0, skipped 0, rejected 1" in strict.stdout
    assert relaxed.returncode == 0 and "skipped 1" in relaxed.stdout
    assert "Traceback" not in nothing.stderr + missing.stderr + strict.stderr


def test_cli_takes_db_before_or_after_the_command(tmp_path: Path) -> None:
    before, after = tmp_path / "before.duckdb", tmp_path / "after.duckdb"
    patterns = write_jsonl(tmp_path / "patterns.jsonl", PATTERNS)

    first = run_cli("--db", str(before), "ingest", str(patterns), "--no-embed")
    second = run_cli("ingest", str(patterns), "--no-embed", "--db", str(after))
    both = run_cli("--db", str(before), "rejects", "--db", str(after))

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert counts(before)["patterns"] == counts(after)["patterns"] == len(PATTERNS)
    assert both.returncode == 0 and "0 rejected records" in both.stdout
