"""The write path: `engram record` / Memory.record_* append to the journal without the
warehouse lock, from many processes at once, and every journal line is loaded or
quarantined exactly once, also when the intake is killed (-9) at any point."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from engram.query import record as record_q
from ingest.contract import Rejected, validate_event
from ingest.journal import Journal, segments
from ingest.loader import ingest_paths
from ingest.warehouse import connect_for_read, connect_for_write

ENGRAM = [sys.executable, "-m", "engram"]


def _count(db: Path, sql: str) -> int:
    con = connect_for_read(db)
    try:
        return int(con.execute(sql).fetchone()[0])  # type: ignore[index]
    finally:
        con.close()


def test_recorded_records_get_ids_and_load_once(tmp_path: Path) -> None:
    db = tmp_path / "engram.duckdb"
    pattern = record_q.record_pattern(
        db, "retry the flaky request with backoff", pattern_type="fix"
    )
    assert pattern.id.startswith("pat-")
    given = record_q.record_pattern(db, "pin the clock in tests", pattern_id="p-clock")
    assert given.id == "p-clock"
    event = record_q.record_outcome(
        db, pattern.id, 0.75, task="requests time out", files=["a.py"], recommendation_id="r1"
    )
    assert event.id.startswith("evt-")
    lines = segments(db)[0].read_bytes().splitlines()
    assert len(lines) == 3 and all(orjson.loads(x)["record"] for x in lines)

    first = ingest_paths([], db, embed=False)
    assert (first.total("read"), first.total("loaded")) == (3, 3)
    assert _count(db, "select count(*) from raw.patterns") == 2
    assert _count(db, "select count(*) from raw.usage_events where context = 'requests time out'")
    assert _count(
        db, "select count(*) from raw.recommendation_links where recommendation_id = 'r1'"
    )
    again = ingest_paths([], db, embed=False)
    assert again.total("read") == 0  # nothing new: the offset moved past every line
    record_q.record_outcome(db, pattern.id, 0.25)
    third = ingest_paths([], db, embed=False)
    assert (third.total("read"), third.total("loaded")) == (1, 1)
    assert _count(db, "select count(*) from raw.usage_events") == 2


def test_contract_errors_are_ingests_messages(tmp_path: Path) -> None:
    db = tmp_path / "engram.duckdb"
    bad = {"event_id": "e", "pattern_id": "p", "session_id": "s", "timestamp": "2025-01-01"}
    with pytest.raises(Rejected) as ingest_says:
        validate_event({**bad, "outcome_quality": 1.5})
    with pytest.raises(record_q.InvalidRecord) as record_says:
        record_q.record_outcome(db, "p", 1.5)
    assert record_says.value.reason == ingest_says.value.reason
    assert record_says.value.field == "outcome_quality"
    with pytest.raises(record_q.InvalidRecord, match="'description' must not be empty"):
        record_q.record_pattern(db, "   ")
    assert not segments(db)  # nothing was written


def test_cli_record_flags_stdin_and_errors(tmp_path: Path) -> None:
    db = tmp_path / "engram.duckdb"
    env = {**os.environ, "ENGRAM_DB": str(db)}
    done = subprocess.run(
        [*ENGRAM, "record", "pattern", "bisect the failing commit", "--type", "diagnose", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    (written,) = orjson.loads(done.stdout)
    assert written["record"]["pattern_type"] == "diagnose"
    stdin = "\n".join(
        [
            orjson.dumps({"pattern_id": written["pattern_id"], "outcome_quality": 0.5}).decode(),
            orjson.dumps({"pattern_id": "x", "outcome_quality": 2}).decode(),
            "{not json",
        ]
    )
    bad = subprocess.run(
        [*ENGRAM, "record", "outcome", "--stdin"],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 2
    assert "line 2: outcome_quality: 'outcome_quality' is 2, outside [0, 1]" in bad.stderr
    assert "line 3: malformed JSON" in bad.stderr
    assert len(segments(db)[0].read_bytes().splitlines()) == 1  # all or nothing
    good = subprocess.run(
        [*ENGRAM, "record", "outcome", "--stdin"],
        input=stdin.splitlines()[0] + "\n",
        capture_output=True,
        text=True,
        env=env,
    )
    assert good.returncode == 0 and good.stdout.startswith("evt-")


def test_record_never_waits_for_the_warehouse_lock(tmp_path: Path) -> None:
    db = tmp_path / "engram.duckdb"
    holder = connect_for_write(db)  # as an ingest or a build would
    try:
        started = time.perf_counter()
        done = subprocess.run(
            [*ENGRAM, "--db", str(db), "record", "pattern", "written while the lock is held"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert time.perf_counter() - started < 30
    finally:
        holder.close()
    assert ingest_paths([], db, embed=False).total("loaded") == 1


WRITER = """
import sys
from pathlib import Path
from engram.query import record as record_q
db, n, me = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for i in range(n):
    record_q.record_outcome(
        db, f"p-{me}", (i % 10) / 10, event_id=f"{me}-{i}", task="x" * (i % 700)
    )
"""


def test_concurrent_writer_processes_never_interleave(tmp_path: Path) -> None:
    db = tmp_path / "engram.duckdb"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(db), "150", f"w{n}"]) for n in range(4)
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0, 0]
    lines = b"".join(p.read_bytes() for p in segments(db)).splitlines()
    assert len(lines) == 600
    ids = {orjson.loads(line)["record"]["event_id"] for line in lines}  # every line decodes
    assert len(ids) == 600
    report = ingest_paths([], db, embed=False)
    assert (report.total("loaded"), report.total("rejected")) == (600, 0)


INTAKE = """
import sys, uuid
from pathlib import Path
from ingest.loader import load_journal
from ingest.warehouse import connect_for_write
db = Path(sys.argv[1])
con = connect_for_write(db)
load_journal(
    con, db, uuid.uuid4().hex[:12], chunk_lines=int(sys.argv[2]),
    after_chunk=lambda segment, read: print("chunk", read, flush=True),
)
con.close()
print("done")
"""


@pytest.mark.slow
def test_intake_killed_at_any_point_loads_each_line_exactly_once(tmp_path: Path) -> None:
    db = tmp_path / "engram.duckdb"
    journal = Journal(db)
    n_lines, bad_every = 6000, 97
    entries = []
    for i in range(n_lines):
        if i % bad_every == 0:  # invalid by the contract: quarantined, once
            entries.append(
                ("event", {"event_id": f"e{i}", "pattern_id": "p", "outcome_quality": 3})
            )
        elif i % 2:
            entries.append(("pattern", {"pattern_id": f"p{i}", "description": f"approach {i}"}))
        else:
            entries.append(
                (
                    "event",
                    {
                        "event_id": f"e{i}",
                        "pattern_id": f"p{i - 1}",
                        "session_id": "s",
                        "timestamp": "2025-03-01T10:00:00Z",
                        "outcome_quality": 0.5,
                    },
                )
            )
    for start in range(0, n_lines, 500):
        journal.append_many(entries[start : start + 500])  # type: ignore[arg-type]
    # a torn last line (a writer killed mid-line): not taken in until its newline arrives
    with open(segments(db)[0], "ab") as handle:
        handle.write(b'{"kind": "pattern", "record": {"pattern_id": "torn"')
    # Kill points follow the intake's own progress, not the clock (a fast machine finished
    # before fixed delays): after the n-th committed chunk, plus a seeded 0-40 ms so some
    # kills land inside the next chunk's transaction. 40 chunks in all, at most 17 used.
    rng = random.Random(11)
    kills = 0
    for chunks in (1, 3, 2, 1, 2, 3, 2, 3):
        child = subprocess.Popen(
            [sys.executable, "-c", INTAKE, str(db), "150"], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        seen = 0
        while seen < chunks:
            line = child.stdout.readline()
            if not line:
                break  # the child ended (or died) before that many chunks
            seen += line.startswith("chunk")
        time.sleep(rng.uniform(0.0, 0.04))
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            kills += 1
        child.stdout.close()
        child.wait()
    final = subprocess.run(
        [sys.executable, "-c", INTAKE, str(db), "150"], capture_output=True, text=True, check=True
    )
    assert "done" in final.stdout
    assert kills >= 3  # the kills really landed mid-intake
    n_bad = len(range(0, n_lines, bad_every))
    n_patterns = sum(1 for i in range(n_lines) if i % 2 and i % bad_every)
    n_events = n_lines - n_bad - n_patterns
    assert _count(db, "select count(*) from raw.patterns") == n_patterns
    assert _count(db, "select count(distinct pattern_id) from raw.patterns") == n_patterns
    assert _count(db, "select count(*) from raw.usage_events") == n_events
    assert _count(db, "select count(distinct event_id) from raw.usage_events") == n_events
    assert _count(db, "select count(*) from raw.rejected_records") == n_bad
    assert _count(db, "select max(lines) from raw.journal_offsets") == n_lines
    assert _count(db, "select count(*) from raw.patterns where pattern_id = 'torn'") == 0
