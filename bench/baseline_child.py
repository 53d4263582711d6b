"""Run one baseline (pandas, SQLite or Polars) in its own process: `python -m
bench.baseline_child pandas|sqlite|polars DB WORKDIR OUT.json`.

Why a child: a plain pandas script can need more memory than the machine has (at 10M events
it did on 24 GB), and the kernel's OOM killer would then take the whole benchmark with it.
In a child, only the baseline dies; the runner records "killed (out of memory?)" with the
child's peak RSS, and the rest of the run goes on. The child raises its own OOM score so
the kernel picks it, not the runner, when memory runs out.

Polars reads its rows straight from the warehouse into Arrow (bench/baselines_polars.py), not
through the pandas frames the other two start from, so its load is its own.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from bench.memory import high_water_rss


def _prefer_me_for_oom_kill() -> None:
    with contextlib.suppress(OSError):  # not Linux, or not allowed: the kernel decides
        Path("/proc/self/oom_score_adj").write_text("1000")


def _mart(db: Path, name: str) -> pd.DataFrame | None:
    """One dbt mart as a pandas frame (None when the warehouse has no such mart)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        found = con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'marts' and table_name = ?",
            [name],
        ).fetchall()[0][0]
        return con.execute(f"select * from marts.{name}").df() if found else None
    finally:
        con.close()


def _run_pandas(
    db: Path, work: Path, v: dict[str, Any], out: dict[str, Any]
) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    from bench import baselines_pandas
    from bench.inputs import load_inputs

    started = time.perf_counter()
    inputs = load_inputs(db)
    out["load_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    frames, per_mart = baselines_pandas.run_timed(inputs, v)
    out["compute_seconds"] = time.perf_counter() - started
    return frames, per_mart


def _run_sqlite(
    db: Path, work: Path, v: dict[str, Any], out: dict[str, Any]
) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """Loading counts the pandas read and the SQLite inserts and indexes."""
    from bench import baselines_sqlite
    from bench.inputs import load_inputs

    started = time.perf_counter()
    inputs = load_inputs(db)
    sqlite_path = work / "baseline.sqlite"
    sqlite_con = baselines_sqlite.load(inputs, sqlite_path)
    out["load_seconds"] = time.perf_counter() - started
    del inputs
    try:
        started = time.perf_counter()
        per_mart = baselines_sqlite.run_all(sqlite_con, v)
        out["compute_seconds"] = time.perf_counter() - started
        frames = baselines_sqlite.read_results(sqlite_con)
    finally:
        sqlite_con.close()
    out["file_bytes"] = sqlite_path.stat().st_size
    sqlite_path.unlink(missing_ok=True)
    return frames, per_mart


def _run_polars(
    db: Path, work: Path, v: dict[str, Any], out: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, float]]:
    """Polars reads the warehouse itself (Arrow); its marts stay Polars frames until the
    answer check converts them, one at a time."""
    from bench import baselines_polars

    started = time.perf_counter()
    inputs = baselines_polars.load_inputs(db)
    out["load_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    frames, per_mart = baselines_polars.run_timed(inputs, v)
    out["compute_seconds"] = time.perf_counter() - started
    del inputs
    return dict(frames), per_mart


# (db, workdir, dbt vars, out) -> (marts as pandas or Polars frames, seconds per mart)
Runner = Callable[
    [Path, Path, dict[str, Any], dict[str, Any]],
    tuple[dict[str, Any], dict[str, float]],
]
BASELINES: dict[str, Runner] = {
    "pandas": _run_pandas,
    "sqlite": _run_sqlite,
    "polars": _run_polars,
}


def run(which: str, db: Path, work: Path) -> dict[str, Any]:
    """Time one baseline on the warehouse's raw rows; compare its answers with the marts."""
    from bench.compare import KEYS, agree
    from bench.inputs import dbt_vars
    from bench.runner import compared_marts

    out: dict[str, Any] = {}
    frames, per_mart = BASELINES[which](db, work, dbt_vars(), out)
    out["marts_seconds"] = per_mart
    out["compute_peak_rss_bytes"] = high_water_rss()  # before the answer check adds its own
    # one mart at a time, each freed after its check: at 10M events the marts and their
    # pandas copies together would need more memory than the baseline itself
    out["agreement"] = {}
    for name in [n for n in compared_marts() if n in frames]:
        mart = _mart(db, name)
        baseline = frames.pop(name)
        if mart is None:
            continue
        if not isinstance(baseline, pd.DataFrame):
            baseline = baseline.to_pandas()  # a Polars frame
        out["agreement"][name] = agree(mart, baseline, KEYS[name]).to_dict()
        del mart, baseline
    return out


def main(argv: list[str]) -> int:
    which, db, work, result_path = argv
    if which not in BASELINES:
        print(f"unknown baseline {which!r}: one of {', '.join(BASELINES)}", file=sys.stderr)
        return 2
    _prefer_me_for_oom_kill()
    result = run(which, Path(db), Path(work))
    # the child's own peak (its VmHWM since exec); the parent's wait4 figure includes the
    # parent's RSS at the fork (bench.memory.high_water_rss)
    result["own_peak_rss_bytes"] = high_water_rss()
    Path(result_path).write_text(json.dumps(result, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
