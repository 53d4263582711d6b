"""bench/ingest_memory.py at a tiny size: its planted counts match the file it writes (an
independent count of the lines), it checks the ingest against them, and it reports a
peak RSS per run. Plus the long-file path of the loader (progress bars for reading and
publishing), which only files over 8 MiB take."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import orjson
import pytest

from bench.ingest_memory import main, planted_counts, write_events
from ingest.progress import terminal_progress


def test_planted_counts_match_the_generated_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_events(path, 5_321, texts=7)
    seen: set[str] = set()
    loaded = skipped = rejected = 0
    for line in path.read_bytes().splitlines():
        record = orjson.loads(line)
        if not 0 <= record["outcome_quality"] <= 1:
            rejected += 1
        elif record["event_id"] in seen:
            skipped += 1
        else:
            seen.add(record["event_id"])
            loaded += 1
    planted = planted_counts(5_321)
    assert (planted.loaded, planted.skipped, planted.rejected) == (loaded, skipped, rejected)
    assert skipped > 0 and rejected > 0


@pytest.mark.slow
def test_the_benchmark_runs_and_reports_peak_memory(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    code = main(
        [
            "--events",
            "3000",
            "--baseline-events",
            "1000",
            "--texts",
            "3",
            "--workdir",
            str(tmp_path / "work"),
            "--json",
            str(out),
            "--no-embed",  # the model's load is what the real run measures; not needed here
        ]
    )
    figures = json.loads(out.read_text())
    assert code == 0 and figures["within_limit"]
    assert [run["events"] for run in figures["runs"]] == [1000, 3000]
    for run in figures["runs"]:
        # a Python process with DuckDB and pyarrow loaded: tens of MiB, never zero
        assert 20 << 20 < run["peak_rss_bytes"] < 1 << 30
        assert run["events_per_s"] > 0


def test_a_long_file_shows_reading_and_publishing_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ingest.loader

    monkeypatch.setattr(ingest.loader, "PROGRESS_MIN_BYTES", 0)
    path = tmp_path / "events.jsonl"
    write_events(path, 1_200, texts=2)
    db = tmp_path / "engram.duckdb"
    report = ingest.loader.ingest_paths(
        [path], db, embed=False, chunk_records=500, progress=terminal_progress
    )
    planted = planted_counts(1_200)
    assert (report.files[0].loaded, report.files[0].rejected) == (
        planted.loaded,
        planted.rejected,
    )
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select count(*) from raw.usage_events").fetchone() == (planted.loaded,)
