"""`engram bench` at the tiny size: every figure is reported, the table prints, and the
pandas and SQLite baselines give the same answers as the dbt marts (the check that makes
their speed ratios mean something)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from bench import baselines_pandas, baselines_sqlite
from bench.cli import main
from bench.compare import KEYS, agree
from bench.inputs import dbt_vars, load_inputs
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
        "GPU sentences/s",
        "total (all models + tests)",
        "build after +1% events",
        "build + publish: refresh / full",
        "trend lookup (1 pattern)",
        "similar top-10 ANN",
        "predict (incl. embedding)",
        "warehouse bytes / event",
        "speed-up over pandas",
        "speed-up over SQLite",
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
    assert r["append"]["events_loaded"] == r["generate"]["events_held_back"] == 20
    # the refresh appends new patterns too, and publishes in place of a full copy
    assert r["append"]["patterns_loaded"] == r["generate"]["patterns_held_back"] == 2
    assert r["publish"]["mode"] == "full" and r["refresh_publish"]["mode"] == "incremental"
    assert ", 2 added, 0 removed" in r["refresh_publish"]["indexes"]["patterns"]
    assert r["refresh_publish"]["tables"]["marts.dim_patterns"] == "updated"
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
    for name in ("pandas", "sqlite"):
        assert ratios[f"{name}_vs_dbt_wall"] > 0
        assert ratios[f"{name}_vs_dbt_run_phase"] > 0


def test_baselines_gave_the_same_answers_in_the_run(bench_run: dict[str, Any]) -> None:
    baselines = bench_run["results"]["baselines"]
    for name in ("pandas", "sqlite"):
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
            for label, frames in (("pandas", pandas_frames), ("sqlite", sqlite_frames)):
                result = agree(expected, frames[mart], KEYS[mart])
                assert result.same, (label, mart, result)
    finally:
        wh.close()
    # by definition every event is counted once in its pattern's week
    assert pandas_frames["pattern_trends"]["usage_count"].sum() == n_events == 2000
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
