"""Moving memory by bundle vs by re-ingesting: `engram export` + `engram import` against the
way it had to be done before bundles, `engram ingest` of the same JSON Lines into a fresh
warehouse (validation, load and embedding), measured in the same run on the same data.

    python -m bench.bundle_speed --events 200000

The input is bench/ingest_memory.py's generated events file (a bad record in 1,000, a
repeated id in 500) plus a patterns file of --patterns distinct descriptions, so the
baseline's embedding cost is that of the patterns and the 20 task texts. Each step runs as
a child process (`python -m engram.cli ...`), its peak RSS from the kernel (bench/memory.py).
Before any figure is printed the copy is checked: the same raw rows as the source (counted
per table and compared by an order-free checksum of the events) and 0 texts embedded.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import duckdb
import orjson

from bench.ingest_memory import run_child, write_events

MIB = 1 << 20
CHECKSUM = """
    select count(*), sum(hash(event_id, pattern_id, occurred_at, outcome_quality,
                              files_involved, tools_used, context, project_id))
    from raw.usage_events
"""


def write_patterns(path: Path, patterns: int) -> None:
    lines = [
        orjson.dumps(
            {
                "pattern_id": f"p{i:04d}",
                "description": f"approach {i}: isolate the failing case {i}, then bisect",
                "pattern_type": "debug",
            }
        )
        for i in range(patterns)
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")


def engram(*args: str) -> list[str]:
    return [sys.executable, "-m", "engram.cli", *args]


def step(label: str, command: list[str]) -> tuple[float, int]:
    code, peak, seconds, tail = run_child(command)
    if code != 0:
        raise SystemExit(f"{label} failed (exit {code}):\n{tail}")
    return seconds, peak


def facts(db: Path) -> dict[str, object]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        counts = {
            t: con.execute(f"select count(*) from raw.{t}").fetchone()[0]  # type: ignore[index]
            for t in ("patterns", "usage_events", "embeddings")
        }
        return {**counts, "events_checksum": con.execute(CHECKSUM).fetchone()}
    finally:
        con.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--patterns", type=int, default=997)
    parser.add_argument("--workdir", type=Path, help="keep the files here (default: temp)")
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="engram-bundle-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        data = workdir / "data"
        data.mkdir(exist_ok=True)
        write_patterns(data / "patterns.jsonl", args.patterns)
        jsonl_bytes = write_events(data / "events.jsonl", args.events)
        jsonl_bytes += (data / "patterns.jsonl").stat().st_size
        source, copy, rebuilt = (workdir / n for n in ("source.duckdb", "copy.duckdb", "re.duckdb"))
        bundle = workdir / "bundle"
        for path in (source, copy, rebuilt):
            path.unlink(missing_ok=True)
        shutil.rmtree(bundle, ignore_errors=True)

        step("source ingest", engram("--db", str(source), "ingest", "--quiet", str(data)))
        baseline = step("ingest", engram("--db", str(rebuilt), "ingest", "--quiet", str(data)))
        export = step("export", engram("--db", str(source), "export", str(bundle)))
        load = step("import", engram("--db", str(copy), "import", str(bundle)))

        expected, got = facts(source), facts(copy)
        if got != expected or facts(rebuilt) != expected:
            raise SystemExit(f"the copy differs: source {expected}, import {got}")
        embedded = (
            duckdb.connect(str(copy), read_only=True)
            .execute("select sum(texts_embedded) from raw.embedding_runs")
            .fetchone()
        )
        if embedded != (0,):
            raise SystemExit(f"the import embedded texts: {embedded}")
        bundle_bytes = sum(f.stat().st_size for f in bundle.iterdir())
        events = int(expected["usage_events"])  # type: ignore[call-overload]

        print(f"{events} events, {expected['patterns']} patterns, {expected['embeddings']} texts")
        print(f"JSON Lines {jsonl_bytes / MIB:.1f} MiB, bundle {bundle_bytes / MIB:.1f} MiB")
        print(f"{'step':<28} {'seconds':>8} {'events/s':>10} {'peak RSS MiB':>13}")
        for label, (seconds, peak) in (
            ("baseline: ingest JSONL", baseline),
            ("export", export),
            ("import", load),
        ):
            print(f"{label:<28} {seconds:8.1f} {events / seconds:10,.0f} {peak / MIB:13.0f}")
        moved = export[0] + load[0]
        print(
            f"export+import / ingest: {moved / baseline[0]:.2f}x the time "
            f"(import alone {load[0] / baseline[0]:.2f}x); 0 texts embedded by the import"
        )
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
