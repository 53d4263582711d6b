"""Full build vs a refresh after +1% events and +1% new patterns (issue 18, item 1).

    python -m bench.refresh --patterns 100000 --events 1000000

Generates data (engram.generate), holds back every 100th pattern with all its events plus
the newest 1% of the other events, ingests the rest, gives every text a vector
(synthetic clustered vectors by default, `--vectors model` for the real model), and
times `dbt build` + publish of the serving copy. Then it ingests the held-back part and
times the same build the way `engram build` runs it after an ingest (incremental models,
data tests scoped by var engram_changed_since) + publish. It prints per-model seconds of
both builds and the ratio refresh / full, measured in the same run on the same machine,
and writes them to WORK/refresh.json. A clean work directory each run (tmp by default).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.memory import wait_with_peak_rss
from bench.paths import PROJECT_ROOT


def split(source: Path, base: Path, append: Path, share: float) -> dict[str, int]:
    """Write base/ and append/: every round(1/share)-th pattern and its events, plus the
    newest `share` of the other events (the generator writes events in time order), go to
    append/. Streams the events file, so 10M events need no memory."""
    every = max(2, round(1 / share))
    base.mkdir(parents=True, exist_ok=True)
    append.mkdir(parents=True, exist_ok=True)
    held: set[str] = set()
    n_patterns = 0
    with (
        (source / "patterns.jsonl").open("rb") as src,
        (base / "patterns.jsonl").open("wb") as head,
        (append / "patterns.jsonl").open("wb") as tail,
    ):
        for i, line in enumerate(src):
            n_patterns += 1
            if i % every == every // 2:
                held.add(orjson.loads(line)["pattern_id"])
                tail.write(line)
            else:
                head.write(line)
    with (source / "events.jsonl").open("rb") as src:
        n_events = sum(1 for _ in src)
    newest = n_events - int(n_events * share)
    moved = 0
    with (
        (source / "events.jsonl").open("rb") as src,
        (base / "events.jsonl").open("wb") as head,
        (append / "events.jsonl").open("wb") as tail,
    ):
        for i, line in enumerate(src):
            late = i >= newest or orjson.loads(line)["pattern_id"] in held
            (tail if late else head).write(line)
            moved += late
    return {
        "patterns": n_patterns,
        "new_patterns": len(held),
        "events": n_events,
        "new_events": moved,
    }


def give_vectors(db: Path, vectors: str) -> float:
    """Vectors for every text not yet embedded; returns seconds."""
    from ingest.embedder import Embedder
    from ingest.embeddings import embed_missing
    from ingest.warehouse import connect_for_write

    started = time.perf_counter()
    con = connect_for_write(db)
    try:
        if vectors == "synthetic":
            from bench.vectors import SyntheticTagEmbedder, fill_synthetic

            fill_synthetic(con)
            embed_missing(con, SyntheticTagEmbedder())  # records the embed pass (the tag)
        else:
            embed_missing(con, Embedder())
    finally:
        con.close()
    return time.perf_counter() - started


def timed_build(db: Path, work: Path, name: str, extra: list[str]) -> dict[str, Any]:
    """`dbt build` as a child process (what `engram build` runs), then the publish; wall
    seconds, the child's peak RSS, per-model seconds and the tests' total seconds."""
    from engram.build import dbt_command, dbt_env
    from engram.project import project_dir
    from engram.query.serving import publish

    env = dbt_env(db)
    env["DBT_TARGET_PATH"] = str(work / f"target_{name}")
    env["DBT_LOG_PATH"] = str(work / f"logs_{name}")
    project = str(project_dir())
    command = [*dbt_command(), "build", *extra, "--project-dir", project, "--profiles-dir", project]
    started = time.perf_counter()
    with (work / f"{name}.log").open("w") as out:
        child = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=out, stderr=out)
        exit_code, peak_rss = wait_with_peak_rss(child)
    build_seconds = time.perf_counter() - started
    if exit_code != 0:
        raise SystemExit(f"dbt build ({name}) failed with exit {exit_code}: see {work / name}.log")
    results = json.loads((work / f"target_{name}" / "run_results.json").read_text())
    models: dict[str, float] = {}
    tests = 0.0
    n_tests = 0
    for result in results["results"]:
        kind, node = result["unique_id"].split(".")[0], result["unique_id"].split(".")[-1]
        seconds = float(result.get("execution_time") or 0.0)
        if kind == "model":
            models[node] = seconds
        elif kind in ("test", "unit_test"):
            tests += seconds
            n_tests += 1
    published = publish(db)
    return {
        "build_seconds": build_seconds,
        "publish_seconds": published.seconds,
        "total_seconds": build_seconds + published.seconds,
        "peak_rss_bytes": peak_rss,
        "models": models,
        "tests_seconds": tests,
        "n_tests": n_tests,
    }


def run(
    n_patterns: int, n_events: int, share: float, seed: int, vectors: str, work: Path
) -> dict[str, Any]:
    from engram.build import changed_since
    from engram.generate import generate
    from ingest.loader import ingest_paths

    work.mkdir(parents=True, exist_ok=True)
    db = work / "engram.duckdb"
    print(f"generating {n_patterns} patterns / {n_events} events in {work}", flush=True)
    generate(work / "generated", n_patterns, n_events, seed=seed)
    sizes = split(work / "generated", work / "base", work / "append", share)
    print(
        f"held back {sizes['new_patterns']} patterns and {sizes['new_events']} events", flush=True
    )
    ingest_paths([work / "base"], db, embed=False)
    give_vectors(db, vectors)
    print("full build + publish ...", flush=True)
    full = timed_build(db, work, "full", [])
    ingest_paths([work / "append"], db, embed=False)
    give_vectors(db, vectors)
    since = changed_since(db)
    extra = ["--vars", json.dumps({"engram_changed_since": since})] if since else []
    print("refresh build + publish ...", flush=True)
    refresh = timed_build(db, work, "refresh", extra)
    return {"sizes": sizes, "vectors": vectors, "full": full, "refresh": refresh}


def report(result: dict[str, Any]) -> str:
    full, refresh = result["full"], result["refresh"]
    lines = [f"{'model':<46}{'full s':>9}{'refresh s':>11}{'ratio':>8}"]
    for name in sorted(full["models"], key=lambda n: -full["models"][n]):
        a, b = full["models"][name], refresh["models"].get(name, 0.0)
        lines.append(f"{name:<46}{a:>9.2f}{b:>11.2f}{(b / a if a else 0):>8.2f}")
    for label, key in (
        ("data tests (sum)", "tests_seconds"),
        ("dbt build (wall)", "build_seconds"),
        ("publish", "publish_seconds"),
        ("build + publish", "total_seconds"),
    ):
        a, b = full[key], refresh[key]
        lines.append(f"{label:<46}{a:>9.2f}{b:>11.2f}{(b / a if a else 0):>8.2f}")
    lines.append(
        f"peak RSS of dbt: full {full['peak_rss_bytes'] / 2**30:.2f} GiB, "
        f"refresh {refresh['peak_rss_bytes'] / 2**30:.2f} GiB; tests run: "
        f"{full['n_tests']} / {refresh['n_tests']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.refresh", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--patterns", type=int, default=100_000, help="patterns generated (default 100000)"
    )
    parser.add_argument(
        "--events", type=int, default=1_000_000, help="events generated (default 1000000)"
    )
    parser.add_argument(
        "--share", type=float, default=0.01, help="share held back and appended (0.01)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vectors", choices=["synthetic", "model"], default="synthetic")
    parser.add_argument("--work", type=Path, help="work directory (default: a new temp dir)")
    args = parser.parse_args(argv)
    if not 0 < args.share < 0.5:
        parser.error(f"--share must be in (0, 0.5), got {args.share}")
    work = args.work or Path(tempfile.mkdtemp(prefix="engram-refresh-"))
    result = run(args.patterns, args.events, args.share, args.seed, args.vectors, work)
    (work / "refresh.json").write_text(json.dumps(result, indent=2))
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
