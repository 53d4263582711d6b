"""bench.refresh's split: what a refresh appends (the benchmark's figures depend on it)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bench.refresh import split
from engram.generate import generate


def _read(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("refresh_split")
    generate(out, 300, 6000, seed=4)
    return out


def test_recent_split_appends_new_patterns_and_only_the_newest_events(
    generated: Path, tmp_path: Path
) -> None:
    sizes = split(generated, tmp_path / "base", tmp_path / "append", 0.01, "recent")
    events = _read(generated / "events.jsonl")
    base, append = (
        _read(tmp_path / "base" / "events.jsonl"),
        _read(tmp_path / "append" / "events.jsonl"),
    )
    held = {p["pattern_id"] for p in _read(tmp_path / "append" / "patterns.jsonl")}
    assert len(held) == sizes["new_patterns"] == 3
    assert append == events[len(events) - 60 :]  # the newest 1%, in order
    assert not any(e["pattern_id"] in held for e in base)  # new patterns: no history
    assert len(base) + len(append) + sizes["dropped_events"] == len(events)
    assert sizes["dropped_events"] > 0 and sizes["events"] == len(base) + len(append)


def test_scattered_split_appends_the_held_back_patterns_whole_history(
    generated: Path, tmp_path: Path
) -> None:
    sizes = split(generated, tmp_path / "base", tmp_path / "append", 0.01, "scattered")
    events = _read(generated / "events.jsonl")
    append = _read(tmp_path / "append" / "events.jsonl")
    held = {p["pattern_id"] for p in _read(tmp_path / "append" / "patterns.jsonl")}
    theirs = [e for e in events[: len(events) - 60] if e["pattern_id"] in held]
    assert theirs and all(e in append for e in theirs)
    assert sizes["dropped_events"] == 0 and sizes["new_events"] == len(append) == len(theirs) + 60


def test_a_small_run_times_both_builds_and_reports_each_publish_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The benchmark end to end at a tiny size: a full build + publish, the append, a
    refresh + publish; the report gives per-model seconds, the ratio and the publish's
    slowest steps with what each sync did (the weekly sums behind pattern_trends: only the
    touched patterns), and
    the refresh runs the arguments `engram build` would (no unit tests: the same code)."""
    from bench.refresh import report, run
    from engram.build import UNIT_TESTS_RECORD_ENV

    monkeypatch.delenv(UNIT_TESTS_RECORD_ENV)  # as a user's: the record beside the warehouse

    result = run(300, 3000, 0.05, 0, "synthetic", tmp_path / "work", keep=True)
    full, refresh = result["full"], result["refresh"]
    # the refresh runs every data test (scoped) and, with the same code, no unit test
    assert full["n_unit_tests"] > 0 and refresh["n_unit_tests"] == 0
    assert full["n_tests"] - full["n_unit_tests"] == refresh["n_tests"] > 0
    assert "copy previous" not in full["publish_steps"]  # the first publish starts empty
    assert refresh["publish_steps"]["copy previous"][0] >= 0
    trends_seconds, trends_how = refresh["publish_steps"][
        "intermediate.int_pattern_weeks__aggregated"
    ]
    assert trends_how.startswith("scoped: ") and trends_seconds >= 0
    # the floor line: the every-row models' nodes and tests found, and taken off
    from bench.refresh import floor_without_every_row

    times = refresh["node_times"]
    assert 0 < times["every_row"] < times["busy"] and 0 < times["span"] <= refresh["build_seconds"]
    build, publish = floor_without_every_row(refresh)
    assert refresh["build_seconds"] - times["span"] < build < refresh["build_seconds"]
    assert 0 <= publish < refresh["publish_seconds"]  # pattern_predictions' sync and others
    # the data tests' seconds, per model they test, add up to the tests' total
    by_model = refresh["tests_by_model"]
    assert sum(n for _, n in by_model.values()) == refresh["n_tests"]
    assert sum(s for s, _ in by_model.values()) == pytest.approx(refresh["tests_seconds"])
    assert "(nothing)" not in by_model and "pattern_predictions" in by_model
    assert any(name.startswith("source raw.") for name in by_model)
    text = report(result)
    assert "build + publish" in text and "publish, slowest steps" in text
    assert "data tests of the refresh by the model they test" in text
    assert "refresh without pattern_predictions" in text
    assert "int_patterns__clustered" in text

    # --keep-before-refresh: the state the refresh started from, to replay it: the
    # appended rows loaded, the full build's serving copy, and the unit-test record, so a
    # replayed refresh plans what the timed one ran (no unit tests)
    import duckdb

    from engram.build import build_plan, unit_tests_record
    from engram.query.serving import current, serving_root

    kept = tmp_path / "work" / "before_refresh" / "engram.duckdb"
    with duckdb.connect(str(kept), read_only=True) as con:
        (n_events,) = con.execute("select count(*) from raw.usage_events").fetchone()
    assert n_events == result["sizes"]["events"]
    copy = current(kept)
    assert copy is not None and copy.database.exists()
    assert copy.directory.is_relative_to(serving_root(kept))  # its own copy, not the live one
    timed = unit_tests_record(tmp_path / "work" / "engram.duckdb")
    assert unit_tests_record(kept).read_bytes() == timed.read_bytes()
    assert "unit_test" in build_plan(kept).args

    # --replay: the same refresh timed again from that state, with the same answers
    from bench.refresh import replay, replay_report

    # as if the code had changed since (the record gone): still no unit tests, and no pass
    # of them recorded for code that did not run them
    unit_tests_record(kept).unlink()
    replayed = replay(tmp_path / "work", tmp_path / "replayed")
    assert replayed["n_unit_tests"] == 0
    assert not unit_tests_record(tmp_path / "replayed" / "engram.duckdb").exists()
    assert replayed["n_tests"] == refresh["n_tests"]
    assert set(replayed["models"]) == set(refresh["models"])
    with duckdb.connect(str(tmp_path / "replayed" / "engram.duckdb"), read_only=True) as con:
        con.execute(f"attach '{tmp_path / 'work' / 'engram.duckdb'}' as timed (read_only)")
        # doubles compared to 9 decimals: sums of doubles (the weekly sums under the
        # trend summary, file_cooccurrence's) can differ in the last bits between two
        # builds of the same rows (DuckDB's parallel sum())
        for mart in ("pattern_trend_summary", "dim_patterns", "file_cooccurrence"):
            columns = ", ".join(
                f"round({name}, 9)" if kind == "DOUBLE" else name
                for name, kind, *_ in con.execute(f"describe marts.{mart}").fetchall()
            )
            differ = con.execute(
                f"select count(*) from (select {columns} from marts.{mart} "
                f"except all select {columns} from timed.marts.{mart})"
            ).fetchone()[0]
            assert differ == 0, mart
    with duckdb.connect(str(kept), read_only=True) as con:  # the kept state is left as it was
        assert con.execute("select count(*) from raw.usage_events").fetchone()[0] == n_events
    text = replay_report(replayed, refresh)
    assert "earlier s" in text and "build + publish" in text
    with pytest.raises(SystemExit, match="is not empty"):
        replay(tmp_path / "work", tmp_path / "replayed")
    with pytest.raises(SystemExit, match="keep-before-refresh"):
        replay(tmp_path / "nothing", tmp_path / "elsewhere")
