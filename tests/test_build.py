"""The dbt project builds on a small fixture, and the CLI around it fails clearly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from engram.build import build, run_dbt
from ingest.embedder import Embedder
from ingest.loader import ingest_paths
from ingest.warehouse import CHECKOUT_ROOT


def engram(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engram.cli", *args],
        cwd=CHECKOUT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def small_fixture(folder: Path) -> Path:
    folder.mkdir()
    patterns = [
        {"pattern_id": f"p{i}", "description": text}
        for i, text in enumerate(
            ["Add the missing .await", "Pin the dependency version", "Retry the flaky test"]
        )
    ]
    events = [
        {
            "event_id": n,
            "pattern_id": f"p{n % 3}" if n != 11 else "not-yet-known",
            "session_id": f"s{n // 4}",
            "timestamp": f"2025-01-{1 + n:02d}T08:00:00Z",
            "outcome_quality": (n % 5) / 4,
            "files_involved": ["src/a.py", "src/b.py"] if n % 2 else ["src/a.py"],
            "tools_used": ["pytest"],
            "context": ["tests fail on CI", "import error in app"][n % 2],
        }
        for n in range(24)
    ]
    (folder / "patterns.jsonl").write_text("\n".join(json.dumps(p) for p in patterns) + "\n")
    (folder / "events.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    return folder


def test_dbt_build_passes_and_unknown_patterns_are_flagged_not_dropped(
    tmp_path: Path, embedder: Embedder
) -> None:
    db = tmp_path / "engram.duckdb"
    ingest_paths([small_fixture(tmp_path / "in")], db, embedder=embedder)

    result = build(db, capture=True)

    assert "Completed successfully" in result.stdout or "Completed with" in result.stdout
    assert "relationships_stg_usage_events_pattern_id" in result.stdout
    warned = [
        line
        for line in result.stdout.splitlines()
        if "WARN 1 relationships_stg_usage_events_pattern_id" in line
    ]
    assert warned, result.stdout[-3000:]
    con = duckdb.connect(str(db), read_only=True)
    kept = con.execute(
        "select count(*) from staging.stg_usage_events where pattern_id = 'not-yet-known'"
    ).fetchone()[0]  # type: ignore[index]
    assert kept == 1
    pairs = con.execute("select count(*) from staging.stg_usage_event_files").fetchone()[0]  # type: ignore[index]
    assert pairs == 12 * 1 + 12 * 2


def test_plain_dbt_and_engram_build_use_the_same_file(tmp_path: Path, embedder: Embedder) -> None:
    db = tmp_path / "engram.duckdb"
    ingest_paths([small_fixture(tmp_path / "in")], db, embedder=embedder)
    env = {**__import__("os").environ, "ENGRAM_DB": str(db)}
    dbt = Path(sys.executable).parent / "dbt"

    run = subprocess.run(
        [str(dbt), "run", "--select", "stg_contexts", "--profiles-dir", "."],
        cwd=CHECKOUT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert run.returncode == 0, run.stdout[-2000:]
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select count(*) from staging.stg_contexts").fetchone()[0] == 2  # type: ignore[index]


def test_warehouses_of_one_file_name_share_dbt_s_parse_of_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dbt keeps its saved parse of the project only while the profile's connection
    settings stay the same, the database path included: run_dbt names the warehouse by its
    file name, from the warehouse's folder (engram.build.dbt_env), so another warehouse of
    that name, anywhere (each test's, each benchmark's), reuses the parse (~2 s, not ~7)."""
    env = {"DBT_TARGET_PATH": str(tmp_path / "target")}
    perf = tmp_path / "target" / "perf_info.json"
    monkeypatch.chdir(tmp_path)  # the second warehouse by a path relative to here
    parsed = []
    for db in (tmp_path / "one" / "engram.duckdb", Path("two") / "engram.duckdb"):
        db.parent.mkdir()
        run_dbt(["parse"], db, capture=True, env=env)
        parsed.append(json.loads(perf.read_text())["parsed_path_count"])

    assert parsed[0] > 100  # the first parse reads every file of the project
    assert parsed[1] == 0  # the second reuses it


def test_dbt_opens_a_linked_warehouse_through_its_link(tmp_path: Path) -> None:
    """dbt runs in the warehouse's folder and opens it by file name (engram.build.dbt_env):
    for a symbolic link that is the link's folder and name, never the target's folder with
    the link's name (a new, empty file there)."""
    real = tmp_path / "disk" / "wh123.duckdb"
    real.parent.mkdir()
    duckdb.connect(str(real)).close()
    link = tmp_path / "here" / "engram.duckdb"
    link.parent.mkdir()
    link.symlink_to(real)

    run_dbt(["debug"], link, capture=True, env={"DBT_TARGET_PATH": str(tmp_path / "target")})

    assert sorted(path.name for path in real.parent.iterdir()) == ["wh123.duckdb"]


def test_dbt_s_log_file_is_at_info_unless_asked_for_debug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At debug, dbt's log file takes every statement of every node (a small refresh build
    21.3 s against 18.2 s); engram.build.dbt_env keeps it at info, $DBT_LOG_LEVEL_FILE still
    rules, and a relative $DBT_LOG_PATH stays the project's folder (dbt runs elsewhere)."""
    from engram.build import LOG_LEVEL_FILE_ENV, dbt_env
    from engram.project import project_dir

    db = tmp_path / "engram.duckdb"
    env = {"DBT_TARGET_PATH": str(tmp_path / "target")}
    for level in ("default", "debug"):
        logs = tmp_path / f"logs_{level}"
        asked = {} if level == "default" else {LOG_LEVEL_FILE_ENV: level}
        run_dbt(["parse"], db, capture=True, env={**env, **asked, "DBT_LOG_PATH": str(logs)})
        text = (logs / "dbt.log").read_text()
        assert "[info ]" in text
        assert ("[debug]" in text) == (level == "debug"), level

    monkeypatch.setenv("DBT_LOG_PATH", "logs")
    assert dbt_env(db)["DBT_LOG_PATH"] == str(project_dir() / "logs")


def test_build_and_report_on_a_missing_warehouse_say_what_to_do(tmp_path: Path) -> None:
    missing = str(tmp_path / "none.duckdb")
    for command in ("build", "report"):
        result = engram(command, "--db", missing)
        assert result.returncode != 0
        assert "engram ingest" in result.stderr
        assert "Traceback" not in result.stderr


def test_help_reads_like_a_manual() -> None:
    for command in ("ingest", "build", "report", "rejects", "generate"):
        result = engram(command, "--help")
        assert result.returncode == 0
        assert "--db" in result.stdout or command == "generate"
    assert "Input contract" in engram("ingest", "--help").stdout


def test_a_warehouse_with_every_record_rejected_builds_and_answers_with_no_rows(
    tmp_path: Path, embedder: Embedder
) -> None:
    """A first drop that is all bad input still leaves a warehouse: its build must pass
    (the clustering models once crashed on zero rows) and every question answer with
    nothing rather than a stack trace."""
    from engram.query.memory import Memory

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "patterns.jsonl").write_text('{"description": "no id"}\n')
    db = tmp_path / "engram.duckdb"
    report = ingest_paths([folder], db, embedder=embedder)
    assert report.total("loaded") == 0 and report.total("rejected") == 1

    result = build(db, capture=True)
    assert result.returncode == 0, result.stdout[-3000:]

    with Memory(db, embedder=embedder) as memory:
        assert memory.sql("select count(*) as n from marts.dim_patterns")["n"].item() == 0
        assert len(memory.find_similar("retry the flaky test")) == 0
        assert len(memory.predict("tests fail on CI").patterns) == 0
        assert len(memory.recommend("tests fail on CI", log=False).patterns) == 0
    assert build(db, capture=True).returncode == 0  # and again, incrementally


@pytest.mark.parametrize("name", ["full", "select"])
def test_a_warehouse_named_after_an_sql_keyword_builds_refreshes_and_answers(
    tmp_path: Path, embedder: Embedder, name: str
) -> None:
    """dbt-duckdb names the database after the warehouse's file, so every name the
    models write into SQL must be quoted: full.duckdb once failed pattern_predictions with
    a syntax error."""
    from engram.query.memory import Memory

    db = tmp_path / f"{name}.duckdb"
    ingest_paths([small_fixture(tmp_path / "in")], db, embedder=embedder)
    first = build(db, capture=True)
    assert first.returncode == 0, first.stdout[-3000:]
    more = tmp_path / "more"
    more.mkdir()
    (more / "events.jsonl").write_text(
        json.dumps(
            {
                "event_id": "e-late",
                "pattern_id": "p1",
                "session_id": "s-late",
                "timestamp": "2025-02-01T08:00:00Z",
                "outcome_quality": 1.0,
                "files_involved": ["src/a.py"],
                "tools_used": ["pytest"],
                "context": "tests fail on CI",
            }
        )
        + "\n"
    )
    ingest_paths([more], db, embedder=embedder)
    refresh = build(db, capture=True)
    assert refresh.returncode == 0, refresh.stdout[-3000:]

    with Memory(db, embedder=embedder) as memory:
        predicted = memory.predict("tests fail on CI").patterns
        used = memory.sql(
            "select usage_count as n from marts.dim_patterns where pattern_id = 'p1'"
        )["n"].item()
    assert len(predicted) > 0
    assert used == 8 + 1  # the fixture's events n % 3 == 1, and the late one


def _kinds_run(target: Path) -> dict[str, int]:
    """How many nodes of each kind (model, test, unit_test) dbt's last command ran."""
    results = json.loads((target / "run_results.json").read_text())["results"]
    kinds: dict[str, int] = {}
    for result in results:
        kind = result["unique_id"].split(".")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def test_a_refresh_skips_the_unit_tests_its_code_already_passed(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unit tests run the models' SQL on fixed rows: a refresh with the code they passed
    with skips them (the data tests still run); a first build and a build after the code
    changed run them all and record the code they passed with."""
    from engram.build import UNIT_TESTS_RECORD_ENV, code_digest, unit_tests_record
    from engram.project import project_dir

    target = tmp_path / "target"
    monkeypatch.setenv("DBT_TARGET_PATH", str(target))
    monkeypatch.delenv(UNIT_TESTS_RECORD_ENV)  # the record beside the warehouse
    db = tmp_path / "engram.duckdb"
    ingest_paths([small_fixture(tmp_path / "in")], db, embedder=embedder)
    record = unit_tests_record(db)

    build(db, capture=True, publish=False)
    first = _kinds_run(target)
    assert first.get("unit_test", 0) >= 10 and first["test"] > 0
    assert json.loads(record.read_text())["code_digest"] == code_digest(project_dir())

    build(db, capture=True, publish=False)
    refresh = _kinds_run(target)
    assert "unit_test" not in refresh
    assert refresh["test"] == first["test"] and refresh["model"] == first["model"]

    record.write_text(json.dumps({"code_digest": "the code before an edit"}))
    build(db, capture=True, publish=False)
    assert _kinds_run(target).get("unit_test") == first["unit_test"]
    assert json.loads(record.read_text())["code_digest"] == code_digest(project_dir())


def test_a_shared_record_lets_a_new_warehouse_skip_the_unit_tests_another_passed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With $ENGRAM_UNIT_TESTS_RECORD (the test suite sets it) a warehouse's first build
    skips the unit tests when a build of any warehouse passed them with this code; a build
    after a code change and --full-refresh still run them."""
    from engram.build import UNIT_TESTS_RECORD_ENV, build_plan, code_digest
    from engram.project import project_dir

    shared = tmp_path / "record.json"
    monkeypatch.setenv(UNIT_TESTS_RECORD_ENV, str(shared))
    fresh = tmp_path / "fresh" / "engram.duckdb"  # never built: no watermark
    fresh.parent.mkdir()
    duckdb.connect(str(fresh)).close()
    skips = ["--exclude-resource-type", "unit_test"]

    assert skips[0] not in build_plan(fresh).args  # nothing recorded yet
    shared.write_text(json.dumps({"code_digest": code_digest(project_dir())}))
    plan = build_plan(fresh)
    assert plan.args[-2:] == skips and plan.passed_digest is None
    assert skips[0] not in build_plan(fresh, full_refresh=True).args
    shared.write_text(json.dumps({"code_digest": "the code before an edit"}))
    assert skips[0] not in build_plan(fresh).args
    # left out on request (bench.refresh's replay): no pass recorded for what did not run
    skipped = build_plan(fresh, skip_unit_tests=True)
    assert skipped.args[-2:] == skips and skipped.passed_digest is None

    monkeypatch.delenv(UNIT_TESTS_RECORD_ENV)  # each warehouse its own record: a first
    shared.write_text(json.dumps({"code_digest": code_digest(project_dir())}))
    assert skips[0] not in build_plan(fresh).args  # build runs them


def test_the_code_digest_follows_the_model_code_and_nothing_else(tmp_path: Path) -> None:
    from engram.build import code_digest

    (tmp_path / "models").mkdir()
    (tmp_path / "dbt_project.yml").write_text("name: p\n")
    (tmp_path / "models" / "a.sql").write_text("select 1 as x\n")
    before = code_digest(tmp_path)
    (tmp_path / "models" / "__pycache__").mkdir()
    (tmp_path / "models" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "README.md").write_text("not model code\n")
    assert code_digest(tmp_path) == before
    (tmp_path / "models" / "a.sql").write_text("select 2 as x\n")
    assert code_digest(tmp_path) != before
    (tmp_path / "models" / "a.sql").write_text("select 1 as x\n")
    assert code_digest(tmp_path) == before
    (tmp_path / "models" / "b.sql").write_text("")
    assert code_digest(tmp_path) != before
