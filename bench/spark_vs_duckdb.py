"""The same dbt project on DuckDB and on a local Spark session, stage by stage, on the
same data (docs/scale-out.md "Measured: Spark vs DuckDB on one machine").

    python -m bench.spark_vs_duckdb --db warehouse/engram.duckdb --scales 1,10

The input is a warehouse after `engram ingest` (flask-history: `make demo` or `engram ingest
data/sample/flask-history`). For each scale k the warehouse is copied and its usage events
repeated k times (new event ids, same patterns, texts and files: no new embeddings, so
the figure is about the marts, not the model), then built twice, each in its own child
process:

- DuckDB: `dbt run --full-refresh` then `dbt test` (data tests) with the dev target, as
  `engram build` does.
- Spark: `python -m engram.spark` (export raw to Parquet, register, dbt-spark waves with
  the Python models between them, `dbt test`).

Per stage it prints seconds on each engine and the ratio Spark/DuckDB: load (DuckDB has
none: ingest writes its raw tables; Spark: session start, Parquet export, registration),
dbt's fixed cost (parse and per-command start), the SQL models by layer (dbt's own
execution time per model, summed), the Python models, the tests. Two scales separate the
fixed cost of a stage from its per-row cost: per-row = (t_k - t_1) / (rows_k - rows_1).

Both engines run dbt with one thread (`--threads 1`): dbt's per-model times then add up to
the stage's wall time, so "fixed cost" (wall minus the models) is not made negative by two
models overlapping. `make spark-test` and `engram build` use the profiles' two threads.
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
from pathlib import Path

import duckdb

from engram.build import dbt_command, dbt_cwd, dbt_env
from engram.project import project_dir

GROUPS = ("staging", "intermediate", "marts")


def scaled_copy(source: Path, target: Path, scale: int) -> int:
    """`source` copied to `target` with every usage event repeated `scale` times (copies
    get the event id suffixed '#i'). Returns the number of usage events."""
    shutil.copyfile(source, target)
    with duckdb.connect(str(target)) as con:
        if scale > 1:
            con.execute(
                "insert into raw.usage_events "
                "select usage_events.* replace (event_id || '#' || copy.i as event_id) "
                "from raw.usage_events cross join range(1, ?) as copy(i)",
                [scale],
            )
        row = con.execute("select count(*) from raw.usage_events").fetchone()
    return int(row[0]) if row else 0


def model_groups(manifest_path: Path) -> dict[str, str]:
    """Model name -> 'python' or its folder (staging, intermediate, marts)."""
    manifest = json.loads(manifest_path.read_text())
    groups = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] != "model":
            continue
        if node.get("language") == "python":
            groups[node["name"]] = "python"
        else:
            groups[node["name"]] = node["original_file_path"].split("/")[1]
    return groups


def duckdb_stages(db: Path, work: Path) -> dict[str, float]:
    """dbt run + dbt test on DuckDB in child processes; seconds per stage."""
    env = dbt_env(db)
    env["DBT_TARGET_PATH"] = str(work / "target")
    env["DBT_LOG_PATH"] = str(work / "logs")
    project = str(project_dir())
    stages: dict[str, float] = {}

    def timed(args: list[str]) -> tuple[float, dict[str, float]]:
        started = time.perf_counter()
        done = subprocess.run(
            [
                *dbt_command(),
                *args,
                "--threads",
                "1",
                "--project-dir",
                project,
                "--profiles-dir",
                project,
            ],
            env=env,
            cwd=dbt_cwd(db),
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"dbt {' '.join(args)} on DuckDB failed:\n{done.stdout[-3000:]}")
        results = json.loads((work / "target" / "run_results.json").read_text())
        nodes = {r["unique_id"].split(".")[-1]: r["execution_time"] for r in results["results"]}
        return seconds, nodes

    # --full-refresh: incremental models built from scratch, as on Spark (tables there)
    run_seconds, nodes = timed(["run", "--full-refresh"])
    groups = model_groups(work / "target" / "manifest.json")
    for group in (*GROUPS, "python"):
        stages[f"models: {group}"] = sum(t for n, t in nodes.items() if groups.get(n) == group)
    stages["dbt fixed cost (parse, start)"] = run_seconds - sum(nodes.values())
    test_seconds, _ = timed(["test", "--exclude", "test_type:unit"])
    stages["dbt test (data tests)"] = test_seconds
    stages["load raw"] = 0.0
    return stages


def spark_stages(db: Path, work: Path) -> dict[str, float]:
    """`python -m engram.spark` in a child process; seconds per stage."""
    timings_path = work / "timings.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "engram.spark",
            "--db",
            str(db),
            "--work-dir",
            str(work / "spark"),
            "--timings-json",
            str(timings_path),
            "--threads",
            "1",
        ],
        cwd=project_dir(),
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ),
    )
    if done.returncode != 0:
        raise SystemExit(f"the Spark build failed:\n{done.stderr[-3000:]}")
    timings = json.loads(timings_path.read_text())
    groups = model_groups(work / "spark" / "target" / "manifest.json")
    stages = dict.fromkeys((*(f"models: {g}" for g in (*GROUPS, "python")),), 0.0)
    fixed = 0.0
    load = 0.0
    tests = 0.0
    for timing in timings:
        stage, seconds = timing["stage"], timing["seconds"]
        if stage in {"spark session start", "export raw to parquet", "register raw tables"}:
            load += seconds
        elif stage == "dbt parse":
            fixed += seconds
        elif stage == "python model":
            stages["models: python"] += seconds
        elif stage == "sql wave":
            for name, node_time in timing["node_seconds"].items():
                stages[f"models: {groups[name]}"] += node_time
            fixed += seconds - sum(timing["node_seconds"].values())
        elif stage == "dbt test":
            tests += seconds
    stages["dbt fixed cost (parse, start)"] = fixed
    stages["dbt test (data tests)"] = tests
    stages["load raw"] = load
    return stages


ORDER = (
    "load raw",
    "dbt fixed cost (parse, start)",
    "models: staging",
    "models: intermediate",
    "models: marts",
    "models: python",
    "dbt test (data tests)",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.spark_vs_duckdb",
        description="Per-stage seconds of the dbt project on DuckDB and on local Spark, "
        "on the same warehouse at one or more scales (usage events repeated k times).",
    )
    parser.add_argument("--db", type=Path, required=True, help="an ingested warehouse")
    parser.add_argument("--scales", default="1,10", help="comma-separated repeat factors")
    parser.add_argument("--work-dir", type=Path, default=None, help="default: a temp folder")
    args = parser.parse_args(argv)
    scales = [int(s) for s in args.scales.split(",")]
    work_root = args.work_dir or Path(tempfile.mkdtemp(prefix="engram-spark-bench-"))
    report: dict[int, tuple[int, dict[str, float], dict[str, float]]] = {}
    for scale in scales:
        work = work_root / f"x{scale}"
        work.mkdir(parents=True, exist_ok=True)
        db = work / "engram.duckdb"
        n_events = scaled_copy(args.db, db, scale)
        print(f"scale x{scale}: {n_events} usage events", file=sys.stderr, flush=True)
        duck = duckdb_stages(db, work / "duckdb")
        spark = spark_stages(db, work)
        report[scale] = (n_events, duck, spark)
        print(f"\nscale x{scale}: {n_events:,} usage events (seconds)")
        print(f"  {'stage':34s} {'DuckDB':>9s} {'Spark':>9s} {'Spark/DuckDB':>13s}")
        for stage in ORDER:
            d, s = duck[stage], spark[stage]
            ratio = f"{s / d:12.1f}x" if d > 0.005 else f"{'-':>13s}"
            print(f"  {stage:34s} {d:9.2f} {s:9.2f} {ratio}")
        total_d, total_s = sum(duck.values()), sum(spark.values())
        print(f"  {'total':34s} {total_d:9.2f} {total_s:9.2f} {total_s / total_d:12.1f}x")
    if len(scales) >= 2:
        low, high = min(scales), max(scales)
        n_low, duck_low, spark_low = report[low]
        n_high, duck_high, spark_high = report[high]
        rows = n_high - n_low
        print(f"\nper 1M extra usage events, from x{low} to x{high} (seconds; fixed = at x{low})")
        for label, lo, hi in (("DuckDB", duck_low, duck_high), ("Spark", spark_low, spark_high)):
            fixed = sum(lo.values())
            per_million = (sum(hi.values()) - fixed) / rows * 1e6
            print(f"  {label:7s} total at x{low} {fixed:8.2f}   per 1M events {per_million:9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
