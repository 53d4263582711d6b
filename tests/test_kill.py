"""The kill suite: `kill -9` an ingest or a build at chosen and random points, then check
that a re-run leaves exactly the rows a clean run gives, that the run ledger adds up, that
the warehouse opens, and that readers keep answering from the previous serving copy.

Kill points come from progress markers the child prints (after chunk N is staged, while
a batch is being embedded, once the file's publish has started), each with a delay drawn
from a seeded RNG, plus kills of the real `engram ingest` at seeded random times. A kill
that lands after the work finished would prove nothing, so every case asserts that the
child died of SIGKILL.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from engram.query.memory import Memory
from engram.query.serving import current, publish, serving_root
from ingest.embedder import Embedder
from ingest.loader import SCRATCH_SUFFIX, ingest_paths
from ingest.warehouse import CHECKOUT_ROOT

pytestmark = pytest.mark.slow

SEED = 11
CHUNK = 500
EVENTS_PER_FILE = 3000
TEXTS_PER_FILE = 60

# A driver around the real ingest: prints a marker at each point a kill can aim at. The
# model is loaded first, so a kill after an "encode" marker lands in the encoding itself.
DRIVER = """
import sys
from pathlib import Path
import ingest.loader as loader
from ingest.embedder import Embedder

loader.PROGRESS_MIN_BYTES = 0  # every file reports its reading and publishing phases


class Bar:
    def update(self, n):
        pass

    def close(self):
        pass


def progress(total, label):
    print("progress", label, flush=True)
    return Bar()


class Loud(Embedder):
    loud = False

    def encode(self, texts):
        if self.loud:
            print("encode", len(texts), flush=True)
        return super().encode(texts)


def on_chunk(path, records):
    print("chunk", path.name, records, flush=True)


model = Loud()
model.encode(["warm up"])
model.loud = True
print("ready", flush=True)
loader.ingest_paths([Path(sys.argv[1])], Path(sys.argv[2]), embedder=model,
                    chunk_records=int(sys.argv[3]), progress=progress, on_chunk=on_chunk)
print("done", flush=True)
"""


def _event(n: int, prefix: str, texts: int, **overrides: object) -> dict[str, object]:
    record: dict[str, object] = {
        "event_id": f"{prefix}{n}",
        "pattern_id": f"p{n % 40}",
        "session_id": f"s{n // 30}",
        "timestamp": f"2025-0{1 + n % 9}-1{n % 10}T0{n % 10}:30:00+02:00",
        "outcome_quality": (n % 11) / 10,
        "files_involved": [f"src/f{n % 13}.py", f"src/g{n % 7}.py"],
        "tools_used": ["pytest"] if n % 2 else ["ruff", "git"],
        "context": f"{prefix} task {n % texts}: the build breaks after the upgrade",
    }
    record.update(overrides)
    return record


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Patterns, then two event files: bad records, repeated ids within a file and across
    the two files, and a few hundred distinct task texts so that embedding takes a while."""
    folder = tmp_path_factory.mktemp("kill_inputs")
    patterns = [
        json.dumps({"pattern_id": f"p{i}", "description": f"approach {i}: pin the dependency"})
        for i in range(40)
    ]
    _write(folder / "patterns.jsonl", patterns)
    for name, prefix in (("events_a.jsonl", "a"), ("events_b.jsonl", "b")):
        lines = []
        for n in range(EVENTS_PER_FILE):
            if n % 97 == 0:
                record = _event(n, prefix, TEXTS_PER_FILE, outcome_quality=3)
            elif n % 50 == 0:
                record = _event(n - 1, prefix, TEXTS_PER_FILE)  # a resent event
            elif prefix == "b" and n < 100:
                record = _event(n + 1000, "a", TEXTS_PER_FILE)  # already in file a
            else:
                record = _event(n, prefix, TEXTS_PER_FILE)
            lines.append(json.dumps(record))
        lines.insert(EVENTS_PER_FILE // 2, "{not json")
        _write(folder / name, lines)
    return folder


def _snapshot(db: Path) -> dict[str, Any]:
    """Everything ingest decides, without what differs per run (run ids, load times)."""
    queries = {
        "patterns": "select pattern_id, description, description_hash, pattern_type,"
        " first_seen, metadata::varchar, source_file, source_line from raw.patterns",
        "usage_events": "select event_id, pattern_id, session_id, occurred_at,"
        " outcome_quality, files_involved, tools_used, context, context_hash, project_id,"
        " source_file, source_line from raw.usage_events",
        "rejected_records": "select source_file, line_number, record_kind, field, reason,"
        " raw_text, raw_hash from raw.rejected_records",
        "ingested_files": "select source_file, content_sha256, size_bytes, records_read,"
        " records_loaded, records_skipped, records_rejected from raw.ingested_files",
        "embeddings": "select text_hash, text, model from raw.embeddings",
    }
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            name: sorted(con.execute(sql).fetchall(), key=repr) for name, sql in queries.items()
        }
    finally:
        con.close()


@pytest.fixture(scope="module")
def reference(
    inputs: Path, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> dict[str, Any]:
    """A clean ingest of the same files into another warehouse: the rows to expect."""
    db = tmp_path_factory.mktemp("kill_reference") / "engram.duckdb"
    report = ingest_paths([inputs], db, embedder=embedder)
    assert all(f.read == f.loaded + f.skipped + f.rejected for f in report.files)
    snapshot = _snapshot(db)
    assert len(snapshot["usage_events"]) > 5_500 and len(snapshot["rejected_records"]) > 60
    texts = {row[1] for row in snapshot["patterns"]} | {row[7] for row in snapshot["usage_events"]}
    assert sorted(row[1] for row in snapshot["embeddings"]) == sorted(texts)
    assert len(texts) > 150
    return snapshot


def _kill_when(
    command: list[str], aim: Callable[[str], bool], delay: float, timeout: float = 120
) -> tuple[int, list[str]]:
    """Start `command`, read its output lines until `aim` accepts one, wait `delay`, then
    SIGKILL the child; returns its exit status and the lines it printed."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    child = subprocess.Popen(
        command,
        cwd=CHECKOUT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        for line in child.stdout:
            seen.append(line.rstrip("\n"))
            if aim(line):
                time.sleep(delay)
                child.send_signal(signal.SIGKILL)
                break
            assert time.monotonic() < deadline, seen[-20:]
    finally:
        child.kill()
        code = child.wait()
        child.stdout.close()
    return code, seen


def _driver(inputs: Path, db: Path) -> list[str]:
    return [sys.executable, "-c", DRIVER, str(inputs), str(db), str(CHUNK)]


def _assert_runs_sane(db: Path, killed: int) -> None:
    con = duckdb.connect(str(db), read_only=True)
    try:
        runs = con.execute(
            "select status, records_read, records_loaded, records_skipped, records_rejected"
            " from raw.ingest_runs order by started_at"
        ).fetchall()
    finally:
        con.close()
    statuses = [r[0] for r in runs]
    assert statuses == ["abandoned"] * killed + ["succeeded"], runs
    for _status, read, loaded, skipped, rejected in runs[killed:]:
        assert read == loaded + skipped + rejected


def _assert_no_partial_file(db: Path, reference: dict[str, Any]) -> None:
    """Right after a kill: the warehouse opens, and each file is wholly there or absent."""
    snap = _snapshot(db)
    done = {row[0] for row in snap["ingested_files"]}
    for table, file_column in (("usage_events", 10), ("rejected_records", 0)):
        expected = [r for r in reference[table] if r[file_column] in done]
        assert snap[table] == expected, table


# (case id, the marker's start, how many of them there are to choose from, delay range in
# seconds). Publishing a file takes ~0.1 s here, so its delays are short.
MARKER_KILLS: list[tuple[str, str, int, tuple[float, float]]] = [
    ("after-a-chunk", "chunk events_", 8, (0.0, 0.05)),
    ("during-embedding", "encode", 3, (0.0, 0.03)),
    ("during-publish", "progress publishing events_", 2, (0.0, 0.04)),
]


@pytest.mark.parametrize("case", MARKER_KILLS, ids=[c[0] for c in MARKER_KILLS])
def test_ingest_killed_at_a_marker_then_rerun_gives_exactly_the_clean_rows(
    case: tuple[str, str, int, tuple[float, float]],
    inputs: Path,
    reference: dict[str, Any],
    tmp_path: Path,
    embedder: Embedder,
) -> None:
    name, marker, choices, (low, high) = case
    rng = random.Random(f"{SEED}-{name}")
    skip = rng.randrange(choices)  # which occurrence of the marker to kill at
    counter = {"seen": 0}

    def aim_at(line: str) -> bool:
        if not line.startswith(marker):
            return False
        counter["seen"] += 1
        return counter["seen"] > skip

    db = tmp_path / "engram.duckdb"
    code, lines = _kill_when(_driver(inputs, db), aim_at, rng.uniform(low, high))

    assert code == -signal.SIGKILL, lines[-20:]
    assert "done" not in lines
    _assert_no_partial_file(db, reference)
    ingest_paths([inputs], db, embedder=embedder)
    assert _snapshot(db) == reference
    _assert_runs_sane(db, killed=1)
    assert not [p for p in tmp_path.iterdir() if SCRATCH_SUFFIX in p.name]


def test_engram_ingest_killed_at_a_random_time_then_rerun_gives_exactly_the_clean_rows(
    inputs: Path, reference: dict[str, Any], tmp_path: Path, embedder: Embedder
) -> None:
    """The real CLI, killed a seeded random moment after one of its per-file summary lines
    (so while it reads, embeds or publishes a later file), then run to completion."""
    rng = random.Random(SEED)
    after = rng.choice(["patterns.jsonl", "events_a.jsonl"])
    delay = rng.uniform(0.0, 0.1)
    db = tmp_path / "engram.duckdb"
    # --project: the library's ingest_paths (the reference) says `default`; without it the
    # CLI would take the identity of this checkout's git remote (a CI clone has one)
    command = [
        sys.executable, "-m", "engram.cli", "--db", str(db), "ingest", "--project", "default",
        str(inputs),
    ]  # fmt: skip

    code, lines = _kill_when(command, lambda line: line.split(":")[0].endswith(after), delay)

    assert code == -signal.SIGKILL, lines[-20:]
    _assert_no_partial_file(db, reference)
    ingest_paths([inputs], db, embedder=embedder)
    assert _snapshot(db) == reference
    _assert_runs_sane(db, killed=1)
    assert not [p for p in tmp_path.iterdir() if SCRATCH_SUFFIX in p.name]


# ------------------------------------------------------------------ build and publish


class _Readers:
    """Ask the serving copy the same questions in a loop from another thread, the way
    `engram sql` and `engram similar` would while a build runs; records every answer and
    every error."""

    def __init__(self, db: Path, embedder: Embedder) -> None:
        self.db = db
        self.embedder = embedder
        self.answers: list[tuple[str, tuple[Any, ...]]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def ask(self) -> tuple[str, tuple[Any, ...]]:
        with Memory(self.db, embedder=self.embedder) as memory:
            count = memory.sql(
                "select count(*) as n, sum(usage_count) as e from marts.dim_patterns"
            )
            similar = memory.find_similar("the build breaks after the upgrade", k=3)
            build_id = str(memory.meta.get("build_id"))
            answer = (
                tuple(count.iloc[0].tolist()),
                tuple(similar["pattern_id"].tolist()),
            )
            return build_id, answer

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.answers.append(self.ask())
            except Exception as exc:  # every failure is a finding: keep it
                self.errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.02)

    def __enter__(self) -> _Readers:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def _build_command(db: Path) -> list[str]:
    return [sys.executable, "-m", "engram.cli", "--db", str(db), "build"]


def _publish_command(db: Path) -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys; from engram.query.serving import publish; publish(sys.argv[1])",
        str(db),
    ]


def _kill_build_group(
    db: Path,
    when: Callable[[], bool],
    timeout: float = 300,
    command: list[str] | None = None,
) -> int:
    """Start `engram build` (or `command`) in its own process group, poll `when`, then
    SIGKILL the whole group (engram and the dbt it runs), as an OOM kill or a closed
    terminal would."""
    child = subprocess.Popen(
        command or _build_command(db),
        cwd=CHECKOUT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    try:
        while not when():
            assert child.poll() is None, "the build finished before the kill point"
            assert time.monotonic() < deadline, "the kill point never came"
            time.sleep(0.002)
        os.killpg(child.pid, signal.SIGKILL)
    finally:
        code = child.wait()
    return code


def test_build_killed_during_dbt_and_during_publish_readers_keep_answering(
    planted_warehouse: Path, tmp_path: Path, embedder: Embedder
) -> None:
    import shutil

    db = tmp_path / "engram.duckdb"
    shutil.copy(planted_warehouse, db)
    first = publish(db)  # the serving copy readers use before any build here
    root = serving_root(db)
    target = Path(os.environ["DBT_TARGET_PATH"])
    run_results = target / "run_results.json"

    with _Readers(db, embedder) as readers:
        while not readers.answers and not readers.errors:
            time.sleep(0.05)
        assert not readers.errors, readers.errors[:3]
        before = readers.answers[0]
        assert before[0] == first.build_id

        # 1. during dbt: once dbt has written its manifest for this run (it is running
        # models), a moment later
        started = time.time()

        def dbt_running() -> bool:
            manifest = target / "manifest.json"
            return manifest.exists() and manifest.stat().st_mtime > started

        code = _kill_build_group(db, dbt_running)
        assert code == -signal.SIGKILL
        assert current(db) is not None and current(db).build_id == first.build_id  # type: ignore[union-attr]

        # 2. during publish: the build's last step, run alone (the same code the build
        # runs after dbt, without paying for a second dbt run), killed as soon as the new
        # serving copy's folder appears
        left = set(root.glob(".build-*.partial"))  # the first kill's prepared copy

        def publishing() -> bool:
            return bool(set(root.glob(".build-*.partial")) - left)

        code = _kill_build_group(db, publishing, command=_publish_command(db))
        assert code == -signal.SIGKILL
        assert current(db).build_id == first.build_id  # type: ignore[union-attr]
        during = list(readers.answers)

    assert not readers.errors, readers.errors[:5]
    assert len(during) >= 3
    assert all(answer == before for answer in during), "a reader saw something else"

    # the warehouse opens and a re-run builds and publishes a new copy with the same answers
    duckdb.connect(str(db), read_only=True).close()
    assert len(list(root.glob(".build-*.partial"))) == 2  # both kills left their folder
    rerun = subprocess.run(_build_command(db), cwd=CHECKOUT_ROOT, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert run_results.exists()
    # the killed builds' folders (the prepared copy of the one killed during dbt, the
    # half-written copy of the one killed while publishing) went with the re-run's
    # publish: their writers had exited (engram.query.serving._writer_gone)
    assert not list(root.glob(".build-*.partial"))
    after = _Readers(db, embedder).ask()
    assert after[0] != first.build_id
    assert after[1] == before[1]
