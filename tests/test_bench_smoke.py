"""`engram bench` at the tiny size: every figure is reported, the table prints, and the
pandas, SQLite and Polars baselines give the same answers as the dbt marts (the check that
makes their speed ratios mean something), and a wrong answer would be caught."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pytest

from bench import baselines_pandas, baselines_polars, baselines_sqlite
from bench.cli import build_parser, main
from bench.compare import KEYS, agree
from bench.inputs import dbt_vars, load_inputs
from bench.memory import available_bytes, wait_with_memory_guard
from bench.runner import BASELINES, BenchConfig, run_baseline_child, stage_baselines
from bench.vectors import SYNTHETIC_MODEL

pytestmark = pytest.mark.slow

MARTS = ("pattern_trends", "pattern_trend_summary", "file_cooccurrence", "pattern_predictions")


@pytest.fixture(scope="session")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One tiny run through the CLI, scratch data kept for the checks below."""
    root = tmp_path_factory.mktemp("bench")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(
            [
                "--size",
                "tiny",
                "--synthetic-vectors",
                "on",
                "--embed-sample",
                "40",
                "--query-repeats",
                "5",
                "--workdir",
                str(root / "work"),
                "--output",
                str(root / "out"),
                "--keep",
            ]
        )
    (json_path,) = (root / "out").glob("*-tiny.json")
    (work,) = (root / "work").iterdir()
    return {
        "code": code,
        "stdout": stdout.getvalue(),
        "results": json.loads(json_path.read_text()),
        "db": work / "warehouse.duckdb",
        "truth": json.loads((work / "generated" / "truth.json").read_text()),
    }


def test_bench_exits_ok_and_prints_the_table(bench_run: dict[str, Any]) -> None:
    assert bench_run["code"] == 0, bench_run["stdout"][-3000:]
    out = bench_run["stdout"]
    for label in (
        "events/s loaded",
        "torch CPU sentences/s",
        "onnx-int8 CPU sentences/s",
        "GPU sentences/s",
        "total (all models + tests)",
        "build after +1% events",
        "build + publish: refresh / full",
        "trend lookup (1 pattern)",
        "similar top-10 ANN",
        "predict (incl. embedding)",
        "warehouse bytes / event",
        "warehouse live bytes / event",
        "speed-up over pandas",
        "speed-up over SQLite",
        "speed-up over Polars",
        "synthetic vectors",
    ):
        assert label in out, label


def test_results_have_every_figure(bench_run: dict[str, Any]) -> None:
    r = bench_run["results"]
    meta = r["meta"]
    assert (meta["n_patterns"], meta["n_events"]) == (200, 2000)
    assert meta["machine"]["cores"] >= 1 and meta["machine"]["memory_bytes"] > 0
    assert r["ingest"]["events_loaded"] == 2000 - r["generate"]["events_held_back"]
    assert r["ingest"]["events_per_s"] > 0
    emb = r["embedding"]
    assert emb["torch_cpu_sentences_per_s"] > 0
    assert emb["vectors"] == "synthetic" and emb["texts_synthetic"] == emb["distinct_texts"]
    assert emb["second_pass_embedded"] == 0
    # the CPU default backend measured beside torch, its vectors near torch's
    assert emb["cpu_default_backend"] == "onnx-int8"
    assert emb["cpu_default_sentences_per_s"] > 0
    assert 0.95 <= emb["cpu_default_cosine_to_torch_min"] <= 1.0 + 1e-6
    assert emb["second_pass_cached"] == emb["distinct_texts"]
    build = r["build"]
    assert build["exit_code"] == 0, build["failures"]
    assert build["seconds"] > 0 and build["peak_rss_bytes"] > 0
    # the sampled RSS names the models running at the peak, never above the kernel's peak
    by_node = build["peak_rss_by_node"]
    assert by_node and all(0 < n["peak_rss_bytes"] <= build["peak_rss_bytes"] for n in by_node)
    peaks = [n["peak_rss_bytes"] for n in by_node]
    assert peaks == sorted(peaks, reverse=True)
    assert set(MARTS) <= set(build["models"])
    assert r["incremental"]["exit_code"] == 0, r["incremental"]["failures"]
    assert r["incremental"]["ratio_to_full"] > 0
    # timed as `engram build` runs it: data tests scoped to the rows loaded since
    assert "ENGRAM_CHANGED_SINCE='20" in r["incremental"]["command"]
    assert "--exclude-resource-type unit_test" in r["incremental"]["command"]
    assert r["append"]["events_loaded"] == r["generate"]["events_held_back"] == 20
    # the refresh appends new patterns too, and publishes in place of a full copy
    assert r["append"]["patterns_loaded"] == r["generate"]["patterns_held_back"] == 2
    assert r["publish"]["mode"] == "full" and r["refresh_publish"]["mode"] == "incremental"
    assert ", 2 added, 0 removed" in r["refresh_publish"]["indexes"]["patterns"]
    # dim_patterns synced per pattern: the 2 new ones and those with new events, not all
    how = r["refresh_publish"]["tables"]["marts.dim_patterns"]
    assert how.startswith("scoped: ") and how.endswith(" keys"), how
    assert 2 <= int(how.split()[1]) < meta["n_patterns"]
    refresh = r["refresh"]
    assert refresh["refresh_build_publish_seconds"] == pytest.approx(
        r["incremental"]["seconds"] + r["refresh_publish"]["seconds"]
    )
    assert refresh["full_build_publish_seconds"] == pytest.approx(
        r["build"]["seconds"] + r["publish"]["seconds"]
    )
    assert r["disk_after_refresh"]["bytes_per_event"] > 0
    q = r["queries"]
    assert q["unavailable"] == {}
    for name in (
        "trend_lookup",
        "top20_file_pairs",
        "similar_top10_exact",
        "similar_top10_ann",
        "predict_incl_embedding",
    ):
        assert 0 < q[name]["p50_ms"] <= q[name]["p95_ms"], name
    assert 0.0 <= q["ann_recall_at_10"] <= 1.0
    disk = r["disk"]
    assert disk["bytes_per_event"] * r["ingest"]["events_loaded"] == pytest.approx(
        disk["warehouse_bytes"]
    )
    ratios = r["ratios"]
    for name in ("pandas", "sqlite", "polars"):
        assert ratios[f"{name}_vs_dbt_wall"] > 0
        assert ratios[f"{name}_vs_dbt_run_phase"] > 0
        assert ratios[f"{name}_same_answers"] is True
        base = r["baselines"][name]
        assert base["peak_rss_bytes"] > 0 and base["load_seconds"] > 0, name
        # the child's own peak, never above wait4's (which starts at the runner's RSS)
        assert base["own_peak_rss_bytes"] == base["peak_rss_bytes"], name
        assert base["peak_rss_bytes"] <= base["wait4_peak_rss_bytes"], name
        assert 0 < base["compute_peak_rss_bytes"] <= base["peak_rss_bytes"], name
        assert set(base["marts_seconds"]) == set(MARTS), name


def test_the_baselines_dbt_run_leaves_the_measured_warehouse_alone(
    bench_run: dict[str, Any],
) -> None:
    """The compared marts' `dbt run --full-refresh` runs on a copy (bench.runner.compare_copy):
    none of its writes is in the warehouse the refresh was timed on. In the warehouse
    itself it had rewritten the weekly cells with new stamps, and the refresh then
    recomputed every week of the backtest and the alerts as if all had changed."""
    db: Path = bench_run["db"]
    copy = db.parent / "compared" / db.name
    assert copy.exists()
    table = "intermediate.int_pattern_context_weeks__aggregated"
    stamps = {}
    for name, path in (("measured", db), ("copy", copy)):
        with duckdb.connect(str(path), read_only=True) as con:
            stamps[name] = {r[0] for r in con.execute(f"select written_at from {table}").fetchall()}
    assert stamps["copy"] and stamps["measured"]
    assert not stamps["copy"] & stamps["measured"]
    # the copy's rebuild is newer than the full build it was copied from
    assert min(stamps["copy"]) > min(stamps["measured"])


def test_the_refresh_publish_is_timed_per_step_from_the_copy_made_beside_dbt(
    bench_run: dict[str, Any],
) -> None:
    """As `engram build` runs a refresh: the previous copy's file is copied while dbt runs
    (prepare_publish), and each table's sync is timed, with what it did."""
    pub = bench_run["results"]["refresh_publish"]
    steps = pub["steps"]
    assert "copy previous, during the build" in steps
    assert steps["marts.dim_patterns"][1] == pub["tables"]["marts.dim_patterns"]
    assert all(seconds >= 0 for seconds, _ in steps.values())
    assert "  publish: " in bench_run["stdout"]


def test_the_live_bytes_are_the_file_less_its_free_blocks(bench_run: dict[str, Any]) -> None:
    """The run's last disk figure, read again from the kept warehouse by bench.storage
    (pragma_storage_info per column segment): the free blocks agree, and the tables'
    segments fit inside the live part."""
    from bench.storage import breakdown

    r = bench_run["results"]
    after = r["disk_after_refresh"]
    events = r["ingest"]["events_loaded"] + r["append"]["events_loaded"]
    info = breakdown(bench_run["db"])
    assert info["file_bytes"] == after["warehouse_bytes"]
    assert info["free_bytes"] == after["free_bytes"]
    live = after["warehouse_bytes"] - after["free_bytes"]
    assert after["live_bytes_per_event"] * events == pytest.approx(live)
    segments = sum(b for _, b, _ in info["tables"])  # type: ignore[union-attr]
    assert 0 < segments <= live


def test_a_dropped_table_counts_as_free_not_live(tmp_path: Path) -> None:
    """A table dropped early leaves its blocks inside the file (later blocks keep the file
    long): the file size stays, the live figure falls by about the table's size."""
    from bench.runner import stage_disk

    db = tmp_path / "w.duckdb"
    with duckdb.connect(str(db)) as con:
        for name, n in (("dropped", 400_000), ("kept", 200_000)):
            con.execute(
                f"create table {name} as select range as x, md5(range::varchar) as y "
                f"from range({n})"
            )
            con.execute("checkpoint")
    before = stage_disk(db, 1_000, 10)
    with duckdb.connect(str(db)) as con:
        con.execute("drop table dropped")
    after = stage_disk(db, 1_000, 10)
    assert after["warehouse_bytes"] == before["warehouse_bytes"]
    assert after["free_bytes"] > before["free_bytes"]
    assert after["live_bytes_per_event"] < 0.6 * before["live_bytes_per_event"]
    assert after["bytes_per_event"] == pytest.approx(before["bytes_per_event"])


def test_baselines_gave_the_same_answers_in_the_run(bench_run: dict[str, Any]) -> None:
    baselines = bench_run["results"]["baselines"]
    assert set(baselines) == set(BASELINES) == {"pandas", "sqlite", "polars"}
    for name in BASELINES:
        agreement = baselines[name]["agreement"]
        assert set(agreement) == set(MARTS), name
        for mart, a in agreement.items():
            assert a["rows_mart"] > 0, (name, mart)
            assert a["same"], (name, mart, a)


def test_baselines_match_the_incrementally_built_marts(bench_run: dict[str, Any]) -> None:
    """After the append, dbt updated the marts incrementally; recomputing everything from
    scratch in pandas and SQLite must still give the same rows and values."""
    db: Path = bench_run["db"]
    inputs = load_inputs(db)
    v = dbt_vars()
    pandas_frames, _ = baselines_pandas.run_timed(inputs, v)
    polars_frames, _ = baselines_polars.run_timed(baselines_polars.load_inputs(db), v)
    con = baselines_sqlite.load(inputs, db.with_suffix(".sqlite"))
    try:
        baselines_sqlite.run_all(con, v)
        sqlite_frames = baselines_sqlite.read_results(con)
    finally:
        con.close()
    wh = duckdb.connect(str(db), read_only=True)
    try:
        n_events = wh.execute("select count(*) from raw.usage_events").fetchone()[0]  # type: ignore[index]
        for mart in MARTS:
            expected = wh.execute(f"select * from marts.{mart}").df()
            for label, frames in (
                ("pandas", pandas_frames),
                ("sqlite", sqlite_frames),
                ("polars", baselines_polars.to_pandas(polars_frames)),
            ):
                result = agree(expected, frames[mart], KEYS[mart])
                assert result.same, (label, mart, result)
    finally:
        wh.close()
    # by definition every event is counted once in its pattern's week
    assert pandas_frames["pattern_trends"]["usage_count"].sum() == n_events == 2000
    assert polars_frames["pattern_trends"]["usage_count"].sum() == n_events
    # the planted hot pairs travel together often enough to pass the support threshold
    pairs = pandas_frames["file_cooccurrence"]
    found = set(zip(pairs["file_a"], pairs["file_b"], strict=True))
    planted = {tuple(p) for p in bench_run["truth"]["hot_file_pairs"]}
    assert len(planted & found) >= len(planted) // 2


def test_synthetic_vectors_are_unit_and_clustered_by_family(bench_run: dict[str, Any]) -> None:
    con = duckdb.connect(str(bench_run["db"]), read_only=True)
    try:
        rows = con.execute(
            """
            select p.metadata->>'family', e.embedding
            from raw.patterns as p
            join raw.embeddings as e on e.text_hash = p.description_hash
            where e.model = ?
            """,
            [SYNTHETIC_MODEL],
        ).fetchall()
    finally:
        con.close()
    family = np.array([r[0] for r in rows])
    vectors = np.array([r[1] for r in rows], dtype=np.float32)
    assert len(rows) > 50
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    same = family[:, None] == family[None, :]
    np.fill_diagonal(same, False)
    topic = np.array([f.split("/")[0] for f in family])
    other_topic = topic[:, None] != topic[None, :]
    assert sims[same].mean() > 0.7
    assert abs(sims[other_topic].mean()) < 0.1


# --------------------------------------------------------------------------- Polars


@pytest.fixture(scope="module")
def polars_run(bench_run: dict[str, Any]) -> dict[str, Any]:
    """The Polars marts recomputed on the run's warehouse, and the dbt marts beside them."""
    db: Path = bench_run["db"]
    frames, seconds = baselines_polars.run_timed(baselines_polars.load_inputs(db), dbt_vars())
    wh = duckdb.connect(str(db), read_only=True)
    try:
        marts = {m: wh.execute(f"select * from marts.{m}").df() for m in MARTS}
    finally:
        wh.close()
    return {"db": db, "frames": frames, "seconds": seconds, "marts": marts}


def _check(polars_run: dict[str, Any], mart: str, frame: pl.DataFrame) -> Any:
    (converted,) = baselines_polars.to_pandas({mart: frame}).values()
    return agree(polars_run["marts"][mart], converted, KEYS[mart])


def test_polars_runs_lazily_and_every_mart_is_timed(polars_run: dict[str, Any]) -> None:
    assert set(polars_run["frames"]) == set(polars_run["seconds"]) == set(MARTS)
    assert all(s > 0 for s in polars_run["seconds"].values())
    assert baselines_polars.ENGINE == "streaming"
    for mart in MARTS:
        assert _check(polars_run, mart, polars_run["frames"][mart]).same, mart


def test_a_broken_polars_answer_is_detected(polars_run: dict[str, Any]) -> None:
    """Each kind of wrong answer a Polars port could give is caught by the same comparison
    that gates the ratios: a value off by 1e-4, a lost row, a key off by a week, a null
    where the mart has a number, a wrong label."""
    frames: dict[str, pl.DataFrame] = polars_run["frames"]
    first = pl.int_range(pl.len()) == 0
    summary = frames["pattern_trend_summary"]

    off = summary.with_columns(
        pl.when(first)
        .then(pl.col("avg_quality") * (1 + 1e-4))
        .otherwise(pl.col("avg_quality"))
        .alias("avg_quality")
    )
    result = _check(polars_run, "pattern_trend_summary", off)
    assert not result.same and result.values_differing == 1

    relabelled = summary.with_columns(
        pl.when(first).then(pl.lit("sideways")).otherwise(pl.col("direction")).alias("direction")
    )
    result = _check(polars_run, "pattern_trend_summary", relabelled)
    assert not result.same and result.values_differing == 1

    pairs = frames["file_cooccurrence"]
    result = _check(polars_run, "file_cooccurrence", pairs.slice(1))
    assert not result.same
    assert result.rows_baseline == result.rows_matched == result.rows_mart - 1

    trends = frames["pattern_trends"]
    last = pl.col("week") == pl.col("week").max().over("pattern_id")
    lone = pl.col("pattern_id") == trends["pattern_id"][0]
    shifted = trends.with_columns(
        pl.when(last & lone)
        .then(pl.col("week") + pl.duration(days=7))
        .otherwise(pl.col("week"))
        .alias("week")
    )
    result = _check(polars_run, "pattern_trends", shifted)
    assert not result.same and result.rows_matched == result.rows_mart - 1

    predictions = frames["pattern_predictions"]
    nulled = predictions.with_columns(
        pl.when(first).then(None).otherwise(pl.col("ci_low")).alias("ci_low")
    )
    result = _check(polars_run, "pattern_predictions", nulled)
    assert not result.same and result.values_differing == 1


def test_polars_with_a_wrong_threshold_disagrees(polars_run: dict[str, Any]) -> None:
    """A logic slip (another prior strength, another support threshold) changes the answers,
    and the comparison says so: agreement is not the comparison being blind."""
    v = dict(dbt_vars())
    v["prediction_prior_strength"] = float(v["prediction_prior_strength"]) + 1.0
    v["cooccurrence_min_support"] = int(v["cooccurrence_min_support"]) - 1
    frames, _ = baselines_polars.run_timed(baselines_polars.load_inputs(polars_run["db"]), v)
    result = _check(polars_run, "pattern_predictions", frames["pattern_predictions"])
    assert not result.same and result.values_differing > 0
    result = _check(polars_run, "file_cooccurrence", frames["file_cooccurrence"])
    assert not result.same and result.rows_baseline > result.rows_mart


def test_baseline_options_apply_to_polars(bench_run: dict[str, Any], tmp_path: Path) -> None:
    """--baseline-max-events skips Polars as it does the others; --baselines picks which run."""
    db: Path = bench_run["db"]
    logged: list[str] = []
    capped = BenchConfig(n_patterns=200, n_events=2000, baseline_max_events=1999)
    out = stage_baselines(capped, db, tmp_path, logged.append)
    assert set(out) == {"pandas", "sqlite", "polars"} and not logged
    for name in out:
        assert "--baseline-max-events 1999" in out[name]["skipped"], name

    only = BenchConfig(n_patterns=200, n_events=2000, baselines=("polars",))
    out = stage_baselines(only, db, tmp_path, logged.append)
    assert logged == ["baselines: Polars (child process)"]
    assert out["pandas"] == out["sqlite"] == {"skipped": "not selected (--baselines)"}
    assert out["polars"]["peak_rss_bytes"] > 0
    assert set(out["polars"]["agreement"]) == set(MARTS)
    assert all(a["same"] for a in out["polars"]["agreement"].values())

    parser = build_parser()
    assert parser.parse_args([]).baselines == ("pandas", "sqlite", "polars")
    assert parser.parse_args(["--baselines", "Polars,pandas"]).baselines == ("pandas", "polars")
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--baselines", "polars,spark"])
    assert exit_info.value.code == 2


def test_memory_guard_stops_a_baseline_and_the_run_goes_on(
    bench_run: dict[str, Any], tmp_path: Path
) -> None:
    """With the floor above what the machine has, the guard kills the child at once; the
    runner records why instead of failing. With a floor of 0 nothing is killed."""
    import subprocess
    import sys

    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    available = available_bytes()
    assert available is not None and available > 0
    ended = wait_with_memory_guard(subprocess.Popen(sleeper), floor_bytes=available + 2**40)
    assert ended.guard_killed and ended.exit_code == -9
    assert ended.available_at_kill is not None and ended.available_at_kill > 0
    quick = [sys.executable, "-c", "pass"]
    ended = wait_with_memory_guard(subprocess.Popen(quick), floor_bytes=0)
    assert not ended.guard_killed and ended.exit_code == 0 and ended.peak_rss_bytes > 0

    out = run_baseline_child("polars", bench_run["db"], tmp_path, floor_bytes=available + 2**40)
    assert out["memory_guard"] is True and out["exit_code"] == -9
    assert "stopped by the memory guard" in out["skipped"]


def test_no_ratio_for_a_baseline_with_different_answers(bench_run: dict[str, Any]) -> None:
    """The run's own results with one Polars mart marked different (or none compared): its
    speed-up is withheld in the ratios and the table, the others keep theirs."""
    import copy

    from bench import render
    from bench.runner import speedups

    results = copy.deepcopy(bench_run["results"])
    assert speedups(results)["polars_vs_dbt_wall"] > 0
    results["baselines"]["polars"]["agreement"]["file_cooccurrence"]["same"] = False
    ratios = speedups(results)
    assert ratios["polars_same_answers"] is False
    assert ratios["polars_vs_dbt_wall"] is None and ratios["polars_vs_dbt_run_phase"] is None
    assert ratios["pandas_vs_dbt_wall"] > 0 and ratios["sqlite_vs_dbt_wall"] > 0
    results["ratios"] = ratios
    rows = {(r[0], r[1]): r for r in render.rows(results)}
    assert rows[("baselines", "speed-up over Polars")][2] == "n/a"
    assert "withheld" in rows[("baselines", "speed-up over Polars")][3]
    assert "DIFFERENT answers: file_cooccurrence" in rows[("baselines", "Polars")][3]
    results["baselines"]["polars"]["agreement"] = {}
    assert speedups(results)["polars_vs_dbt_wall"] is None


def test_peak_rss_is_the_childs_own_not_the_parents() -> None:
    """wait4's ru_maxrss of a child starts at the parent's RSS at the fork (Linux keeps the
    old address space's high-water mark across exec); the guard's VmHWM poll does not."""
    import subprocess
    import sys

    ballast = np.ones(512 * 2**20 // 8)  # 512 MiB resident in this process
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])
    ended = wait_with_memory_guard(child, floor_bytes=0, poll_seconds=0.1)
    assert ballast.sum() == len(ballast)
    assert ended.exit_code == 0 and not ended.guard_killed
    assert ended.peak_rss_bytes >= 512 * 2**20
    assert ended.polled_peak_rss_bytes is not None
    assert 0 < ended.polled_peak_rss_bytes < 200 * 2**20


def test_the_load_note_blames_other_work_only_for_a_busy_start() -> None:
    """The end figure counts the benchmark's own last minute, so only the start figure
    can say that something else competed for the CPU."""
    from bench.render import _load_note

    busy = _load_note({"load_avg_1m_start": 6.8, "load_avg_1m_end": 2.2}, 2)
    idle = _load_note({"load_avg_1m_start": 0.5, "load_avg_1m_end": 2.0}, 2)
    assert "other work competed" in busy
    assert "other work competed" not in idle and "own work" in idle
