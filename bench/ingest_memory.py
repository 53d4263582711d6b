"""Peak memory of `engram ingest` on one big JSON Lines file, against the same ingest of a
small file measured in the same run: the check that ingest memory no longer grows with
the size of a file (issue 11: <= 1 GiB for a single 10M-event file).

    python -m bench.ingest_memory --events 10000000

The input is generated streaming (a few MB of memory whatever its size) with only a few
distinct task texts (--texts, default 20), so embedding costs seconds and the figure is
about loading; one line in 1,000 is a bad record (quarantined) and one in 500 repeats an
earlier event id (skipped), so the run exercises every path of the load. Each ingest runs
as a child process (`python -m engram.cli ingest`) in a fresh warehouse; its peak RSS is
the kernel's ru_maxrss for that child (bench/memory.py). A third child, which only loads
the embedding model and encodes one text, gives the floor that the ingest cannot go under.
Every ingest is checked against the planted counts (loaded, skipped, rejected) before its
figures are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import orjson

from bench.memory import wait_with_peak_rss

GIB = 1 << 30
MIB = 1 << 20
LIMIT_BYTES = GIB
BAD_EVERY = 1000  # line numbers divisible by this hold an invalid outcome_quality
REPEAT_EVERY = 500  # ... by this (and not by BAD_EVERY) repeat the previous event's id
WRITE_BATCH = 10_000


@dataclass(frozen=True)
class Planted:
    events: int
    loaded: int
    skipped: int
    rejected: int


@dataclass
class Measured:
    label: str
    events: int
    file_bytes: int
    peak_rss_bytes: int
    seconds: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def planted_counts(events: int) -> Planted:
    """What a correct ingest of `write_events(path, events)` reports."""
    rejected = events // BAD_EVERY
    # lines divisible by both REPEAT_EVERY and BAD_EVERY are bad records, not repeats
    repeats = events // REPEAT_EVERY - events // BAD_EVERY
    return Planted(events, events - rejected - repeats, repeats, rejected)


def write_events(path: Path, events: int, *, texts: int = 20) -> int:
    """Write `events` lines streaming; returns the file's size in bytes."""
    contexts = [f"task {i}: make the flaky integration test {i} pass again" for i in range(texts)]
    files = [f"src/module_{i}.py" for i in range(50)]
    tools = ["pytest", "ruff", "git", "cargo", "grep"]
    with path.open("wb") as out:
        batch: list[bytes] = []
        for line in range(1, events + 1):
            event_id = line - 1 if line % REPEAT_EVERY == 0 and line % BAD_EVERY else line
            record = {
                "event_id": f"e{event_id:09d}",
                "pattern_id": f"p{line % 997:04d}",
                "session_id": f"s{line // 40:07d}",
                "timestamp": f"2025-{1 + line % 12:02d}-{1 + line % 28:02d}T"
                f"{line % 24:02d}:{line % 60:02d}:00Z",
                "outcome_quality": 2.0 if line % BAD_EVERY == 0 else (line % 101) / 100,
                "files_involved": [files[line % 50], files[(line * 7) % 50]],
                "tools_used": [tools[line % 5]],
                "context": contexts[line % texts],
                "project_id": f"proj{line % 3}",
            }
            batch.append(orjson.dumps(record))
            if len(batch) >= WRITE_BATCH:
                out.write(b"\n".join(batch) + b"\n")
                batch.clear()
        if batch:
            out.write(b"\n".join(batch) + b"\n")
    return path.stat().st_size


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.pop("ENGRAM_DB", None)
    return env


def run_child(command: list[str]) -> tuple[int, int, float, str]:
    """(exit code, peak RSS bytes, seconds, output tail) of one child process."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_child_env())
        code, peak = wait_with_peak_rss(child)
        seconds = time.perf_counter() - started
        log.seek(0)
        tail = log.read()[-2000:].decode("utf-8", "replace")
    return code, peak, seconds, tail


def model_floor() -> int:
    """Peak RSS of a process that only loads the model and encodes one text."""
    code, peak, _, tail = run_child(
        [
            sys.executable,
            "-c",
            "from ingest.embedder import Embedder; Embedder().encode(['one text'])",
        ]
    )
    if code != 0:
        raise SystemExit(f"loading the model failed:\n{tail}")
    return peak


def measure_ingest(
    workdir: Path, label: str, events: int, texts: int, *, embed: bool = True
) -> Measured:
    """Generate, ingest in a fresh warehouse as a child process, check the counts."""
    folder = workdir / label
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    source = folder / "events.jsonl"
    print(f"[{label}] writing {events:,} events to {source} ...", flush=True)
    size = write_events(source, events, texts=texts)
    db = folder / "warehouse" / "engram.duckdb"
    print(f"[{label}] ingesting {size / MIB:,.0f} MiB ...", flush=True)
    command = [sys.executable, "-m", "engram.cli", "--db", str(db), "ingest", "--quiet"]
    command += [str(source)] if embed else ["--no-embed", str(source)]
    code, peak, seconds, tail = run_child(command)
    if code != 0:
        raise SystemExit(f"[{label}] engram ingest exited {code}:\n{tail}")
    check_counts(db, planted_counts(events), texts if embed else 0)
    source.unlink()
    leftovers = sorted(p.name for p in db.parent.iterdir() if "scratch" in p.name)
    if leftovers:
        raise SystemExit(f"[{label}] scratch files left behind: {leftovers}")
    return Measured(label, events, size, peak, seconds)


def check_counts(db: Path, planted: Planted, texts: int) -> None:
    """The run's own accounting and the tables must match what was planted."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        run = con.execute(
            "select status, records_read, records_loaded, records_skipped, records_rejected"
            " from raw.ingest_runs"
        ).fetchall()
        tables = con.execute(
            """
            select (select count(*) from raw.usage_events),
                   (select count(*) from raw.rejected_records),
                   (select count(*) from raw.embeddings)
            """
        ).fetchone()
    finally:
        con.close()
    expected_run = [
        ("succeeded", planted.events, planted.loaded, planted.skipped, planted.rejected)
    ]
    if run != expected_run or tables != (planted.loaded, planted.rejected, texts):
        raise SystemExit(
            f"wrong result: run {run}, tables (events, rejected, embeddings) {tables}; "
            f"planted {planted}, {texts} texts"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest_memory",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--events", type=int, default=10_000_000, help="events in the big file")
    parser.add_argument(
        "--baseline-events", type=int, default=200_000, help="events in the baseline file"
    )
    parser.add_argument("--texts", type=int, default=20, help="distinct task texts")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--no-embed",
        action="store_true",
        help="ingest with --no-embed and skip the model floor (the load alone; for tests)",
    )
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="engram-ingest-memory-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        floor = 0 if args.no_embed else model_floor()
        embed = not args.no_embed
        runs = [
            measure_ingest(workdir, "baseline", args.baseline_events, args.texts, embed=embed),
            measure_ingest(workdir, "big", args.events, args.texts, embed=embed),
        ]
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    if floor:
        print(f"model loaded + one text encoded (floor): peak RSS {floor / MIB:,.0f} MiB")
    print(
        f"{'run':<9} {'events':>12} {'file MiB':>9} {'peak RSS MiB':>13} {'s':>8} {'events/s':>10}"
    )
    for run in runs:
        print(
            f"{run.label:<9} {run.events:>12,} {run.file_bytes / MIB:>9,.0f} "
            f"{run.peak_rss_bytes / MIB:>13,.0f} {run.seconds:>8.1f} {run.events_per_s:>10,.0f}"
        )
    baseline, big = runs
    growth = big.peak_rss_bytes / baseline.peak_rss_bytes
    size_ratio = big.events / baseline.events
    within = big.peak_rss_bytes <= LIMIT_BYTES
    print(
        f"peak RSS big/baseline: {growth:.2f}x for {size_ratio:,.0f}x the events; "
        f"limit 1 GiB: {'met' if within else 'EXCEEDED'}"
    )
    if args.json:
        payload = {
            "floor_rss_bytes": floor,
            "runs": [asdict(r) | {"events_per_s": r.events_per_s} for r in runs],
            "rss_ratio": growth,
            "within_limit": within,
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
