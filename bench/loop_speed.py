"""How fast is the agent loop? `python -m bench.loop_speed` prints the numbers.

Targets (issue #15): `record` p50 <= 20 ms with 4 concurrent writers while a build runs;
MCP `recommend_patterns` p50 <= 100 ms warm at 100k patterns; a new pattern visible
<= 1 s. Three parts:

1. record: 4 writer processes each time N `record_outcome` calls (validation + one
   O_APPEND write + fsync), first with nothing else running (baseline), then while
   `engram build` runs on the same warehouse; p50/p95 and the ratio to the baseline.
2. recommend: a synthetic warehouse of --patterns patterns (bench.query_speed's: real
   publish, synthetic vectors, since embedding 100k descriptions on CPU takes too long
   here), served by `engram mcp` as a subprocess and called through the MCP SDK's stdio
   client: recommend_patterns and find_similar_patterns p50/p95, warm (first call out).
3. visibility: record_pattern through the same server, then find_similar_patterns with
   the pattern's own words until it is returned; time from the write to the answer.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WRITER = """
import sys, time
from pathlib import Path
from engram.query import record as record_q
db, n, me = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
record_q.record_outcome(db, "warm-up", 0.5)  # imports and first file open out of the timing
times = []
for i in range(n):
    started = time.perf_counter()
    record_q.record_outcome(db, f"p-{me}", (i % 10) / 10, task=f"task {i % 7}", files=["a.py"])
    times.append((time.perf_counter() - started) * 1000)
print(" ".join(f"{t:.3f}" for t in times))
"""


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
    }


def _writers(db: Path, n: int, writers: int) -> list[float]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), str(n), f"w{i}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(writers)
    ]
    samples: list[float] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        samples += [float(x) for x in out.split()]
    return samples


def record_under_build(workdir: Path, n: int, writers: int) -> dict[str, Any]:
    from engram.build import build
    from engram.generate import generate
    from ingest.loader import ingest_paths

    data, db = workdir / "data", workdir / "wh" / "engram.duckdb"
    generate(data, 200, 3000, seed=5)
    ingest_paths([data], db)
    build(db, capture=True)  # the first build; the timed one below is a rebuild
    baseline = _stats(_writers(db, n, writers))
    env = {**os.environ, "ENGRAM_DB": str(db)}
    builder = subprocess.Popen(
        [sys.executable, "-m", "engram", "build"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(3)  # dbt is started and holds the warehouse
    during = _writers(db, n, writers)
    still_building = builder.poll() is None
    builder.wait()
    return {
        "baseline": baseline,
        "during_build": _stats(during),
        "build_still_running_at_end": still_building,
        "ratio_p50": _stats(during)["p50"] / baseline["p50"],
    }


async def _mcp_calls(db: Path, queries: int) -> dict[str, Any]:
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    from bench.query_speed import TASKS

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "engram", "mcp", "--db", str(db)],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "ENGRAM_DEVICE": "cpu"},
    )
    out: dict[str, Any] = {}
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await session.call_tool("recommend_patterns", {"task": "warm up", "k": 5})
        for tool, key in (("recommend_patterns", "task"), ("find_similar_patterns", "text")):
            times = []
            for i in range(queries):
                text = f"{TASKS[i % len(TASKS)]} (variant {i})"
                started = time.perf_counter()
                result = await session.call_tool(tool, {key: text, "k": 5})
                times.append((time.perf_counter() - started) * 1000)
                assert not result.is_error, result.content
            out[tool] = _stats(times)
        visible = []
        for i in range(20):
            words = f"bench pattern {i}: rotate the signing key before the token cache expires"
            started = time.perf_counter()
            made = await session.call_tool("record_pattern", {"description": words})
            new_id = made.structured_content["pattern_id"]
            while True:
                found = await session.call_tool("find_similar_patterns", {"text": words, "k": 3})
                ids = [p["pattern_id"] for p in found.structured_content["patterns"]]
                if new_id in ids:
                    break
                if time.perf_counter() - started > 30:
                    raise RuntimeError(f"{new_id} not visible after 30 s")
            visible.append((time.perf_counter() - started) * 1000)
        out["new_pattern_visible_ms"] = _stats(visible)
    return out


def mcp_at_scale(workdir: Path, patterns: int, contexts: int, queries: int) -> dict[str, Any]:
    import anyio

    from bench.query_speed import synthesize_warehouse
    from engram.query.serving import publish

    db = workdir / "scale" / "engram.duckdb"
    db.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    synthesize_warehouse(db, patterns, n_contexts=contexts)
    publish(db)
    setup = time.perf_counter() - started
    result = anyio.run(_mcp_calls, db, queries)
    result["patterns"] = patterns
    result["setup_seconds"] = round(setup, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=200, help="record calls per writer")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--patterns", type=int, default=100_000)
    parser.add_argument("--contexts", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--skip-build", action="store_true", help="skip part 1")
    args = parser.parse_args()
    os.environ.setdefault("ENGRAM_DEVICE", "cpu")
    workdir = Path(tempfile.mkdtemp(prefix="engram-loop-bench-"))
    try:
        if not args.skip_build:
            part1 = record_under_build(workdir, args.writes, args.writers)
            b, d = part1["baseline"], part1["during_build"]
            print(
                f"record ({args.writers} writers x {args.writes}): baseline p50 {b['p50']:.2f} ms "
                f"p95 {b['p95']:.2f} ms; during build p50 {d['p50']:.2f} ms p95 {d['p95']:.2f} ms "
                f"(x{part1['ratio_p50']:.2f}; build still running at the end: "
                f"{part1['build_still_running_at_end']})",
                flush=True,
            )
        part2 = mcp_at_scale(workdir, args.patterns, args.contexts, args.queries)
        for tool in ("recommend_patterns", "find_similar_patterns", "new_pattern_visible_ms"):
            s = part2[tool]
            print(
                f"{tool} at {args.patterns:,} patterns (MCP, warm, n={s['n']}): "
                f"p50 {s['p50']:.1f} ms p95 {s['p95']:.1f} ms"
            )
        print(f"(synthetic warehouse + publish: {part2['setup_seconds']} s)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
