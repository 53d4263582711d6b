"""The Dagster graph, materialized in-process on small generated data: every asset builds,
every check passes, the inbox is ingested once, and the sensor requests one run per drop.

orchestration is imported inside fixtures: its import parses the dbt project into
$DBT_TARGET_PATH, which conftest sets per session (after collection)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

pytestmark = pytest.mark.slow

BAD_LINES = ["this line is not json", json.dumps({"event_id": "e-bad", "pattern_id": "p1"})]


@dataclass
class Graph:
    defs: Any
    instance: Any
    inbox: Any
    db: Path
    generated: Path
    first: Any  # ExecuteInProcessResult of the first full-graph run


def _materializations(result: Any) -> dict[str, Any]:
    return {
        event.materialization.asset_key.to_user_string(): event.materialization
        for event in result.get_asset_materialization_events()
    }


def _distinct_ids(path: Path, field: str) -> int:
    ids = set()
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and field in record:
            ids.add(str(record[field]))
    return len(ids)


def _fill_inbox(generated: Path, inbox: Path) -> None:
    """Patterns and events (truth.json stays out: it is not an export), plus bad lines."""
    inbox.mkdir(parents=True, exist_ok=True)
    for name in ("patterns.jsonl", "events.jsonl"):
        shutil.copy(generated / name, inbox / name)
    with (inbox / "events.jsonl").open("a") as handle:
        handle.write("\n".join(BAD_LINES) + "\n")


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Graph:
    from dagster import DagsterInstance

    from engram.generate import generate
    from orchestration.definitions import build_definitions
    from orchestration.resources import Inbox, Warehouse

    root = tmp_path_factory.mktemp("orchestration")
    generate(root / "generated", 200, 3000, seed=3)
    _fill_inbox(root / "generated", root / "inbox")
    inbox = Inbox(path=str(root / "inbox"), settle_seconds=0)
    db = root / "warehouse" / "engram.duckdb"
    defs = build_definitions(warehouse=Warehouse(db_path=str(db)), inbox=inbox)
    instance = DagsterInstance.ephemeral()
    first = defs.resolve_job_def("full_graph").execute_in_process(
        instance=instance, raise_on_error=False
    )
    return Graph(defs, instance, inbox, db, root / "generated", first)


def test_full_graph_materializes_every_asset_and_every_check_passes(graph: Graph) -> None:
    assert graph.first.success
    asset_graph = graph.defs.resolve_asset_graph()
    expected_assets = {key.to_user_string() for key in asset_graph.get_all_asset_keys()}
    assert set(_materializations(graph.first)) == expected_assets

    evaluations = graph.first.get_asset_check_evaluations()
    evaluated = {evaluation.asset_check_key for evaluation in evaluations}
    assert evaluated == set(asset_graph.asset_check_keys)  # every dbt test + Python check ran
    from dagster import AssetCheckSeverity

    not_ok = [
        f"{e.asset_key.to_user_string()}:{e.check_name}"
        for e in evaluations
        if not e.passed and e.severity != AssetCheckSeverity.WARN
    ]
    assert not_ok == []


def test_dbt_tests_and_python_checks_are_asset_checks(graph: Graph) -> None:
    names = {key.name for key in graph.defs.resolve_asset_graph().asset_check_keys}
    assert {"rejected_rate_below_threshold", "unknown_pattern_ids_below_threshold"} <= names
    assert "fresh" in names
    assert "raw_patterns_columns_are_well_formed" in names  # a dbt source test
    assert "stg_patterns_columns_are_well_formed" in names  # a dbt model test
    assert any(name.startswith("relationships_stg_usage_events") for name in names)


def test_ingest_metadata_counts_rows_and_rejects(graph: Graph) -> None:
    mats = _materializations(graph.first)
    events_file = graph.generated / "events.jsonl"
    assert mats["raw/rejected_records"].metadata["rejected_this_run"].value == len(BAD_LINES)
    assert mats["raw/patterns"].metadata["dagster/row_count"].value == _distinct_ids(
        graph.generated / "patterns.jsonl", "pattern_id"
    )
    assert mats["raw/usage_events"].metadata["dagster/row_count"].value == _distinct_ids(
        events_file, "event_id"
    )
    for key, mat in mats.items():
        if key.startswith(("staging/", "intermediate/", "marts/")):
            assert mat.metadata["dagster/row_count"].value >= 0, key


def test_marts_show_insight_tables_and_a_plot(graph: Graph) -> None:
    mats = _materializations(graph.first)
    summary = mats["marts/pattern_trend_summary"].metadata
    table = summary["most_improving_patterns"].value
    listed = re.findall(r"^\| (\S+) \|", table, flags=re.MULTILINE)[1:]  # skip the header
    con = duckdb.connect(str(graph.db), read_only=True)
    try:
        improving = {
            row[0]
            for row in con.execute(
                "select pattern_id from marts.pattern_trend_summary where direction = 'improving'"
            ).fetchall()
        }
    finally:
        con.close()
    assert listed and set(listed) <= improving
    plot = summary["weekly_quality_plot"].value
    png = base64.b64decode(re.search(r"base64,([A-Za-z0-9+/=]+)\)", plot).group(1))  # type: ignore[union-attr]
    assert png.startswith(b"\x89PNG")
    assert "strongest_file_pairs" in mats["marts/file_cooccurrence"].metadata
    if "marts/pattern_clusters" in mats:
        assert "largest_clusters" in mats["marts/pattern_clusters"].metadata


def test_marts_show_a_per_project_table(graph: Graph) -> None:
    """The generated events belong to several projects: the per-project table lists each
    with its event count, recomputed here from the generated file."""
    mats = _materializations(graph.first)
    table = mats["marts/pattern_project_predictions"].metadata["projects"].value
    rows = re.findall(r"^\| (\S+) \| (\d+) \|", table, flags=re.MULTILINE)
    events: dict[str, int] = {}
    for line in (graph.generated / "events.jsonl").read_text().splitlines():
        project = json.loads(line)["project_id"]
        events[project] = events.get(project, 0) + 1
    assert len(events) > 1
    assert {project: int(n) for project, n in rows} == events
    assert "### Projects" in mats["serving/published"].metadata["insights"].value


def test_serving_copy_is_published(graph: Graph) -> None:
    from engram.query.serving import current

    published = _materializations(graph.first)["serving/published"].metadata
    copy = current(graph.db)
    assert copy is not None
    assert published["build_id"].value == copy.build_id
    assert "Most improving patterns" in published["insights"].value


def test_the_serving_asset_depends_on_every_table_the_copy_holds(graph: Graph) -> None:
    """Each table the publish copies besides the marts is held by the published copy and
    is upstream of the serving asset: a dependency the graph missed would let a partial
    materialization publish before that table was rebuilt."""
    from dagster import AssetKey

    from engram.query.serving import EXTRA_TABLES, current
    from orchestration.assets.serving import SERVING_KEY

    parents = graph.defs.resolve_asset_graph().get(SERVING_KEY).parent_keys
    copy = current(graph.db)
    assert copy is not None
    with duckdb.connect(str(copy.database), read_only=True) as con:
        held = {
            f"{schema}.{name}"
            for schema, name in con.execute(
                "select schema_name, table_name from duckdb_tables()"
            ).fetchall()
        }
    assert EXTRA_TABLES
    for name, _ in EXTRA_TABLES:
        assert name in held, name
        assert AssetKey(name.split(".")) in parents, name


def test_files_move_to_processed_and_a_second_run_ingests_nothing(graph: Graph) -> None:
    assert graph.inbox.pending() == []
    moved = sorted(p.name for p in graph.inbox.processed.rglob("*.jsonl"))
    assert moved == ["events.jsonl", "patterns.jsonl"]
    before = _materializations(graph.first)

    second = graph.defs.resolve_job_def("full_graph").execute_in_process(
        instance=graph.instance, raise_on_error=False
    )
    assert second.success
    after = _materializations(second)
    assert after["raw/ingest_runs"].metadata["records_read"].value == 0
    assert after["raw/ingested_files"].metadata["files_this_run"].value == 0
    for name in ("patterns", "usage_events", "rejected_records", "ingested_files"):
        key = f"raw/{name}"
        assert (
            after[key].metadata["dagster/row_count"].value
            == before[key].metadata["dagster/row_count"].value
        ), key


def test_a_run_publishes_from_the_copy_its_dbt_step_started(graph: Graph) -> None:
    """A run of the whole graph starts the publish's file copy of the previous serving copy
    when its dbt step starts, and its serving step adopts it (orchestration.assets.handover),
    as `engram build` does: the serving asset reports the copy's seconds and no partial
    folder is left. A run that does not publish (the dbt assets alone) starts none: its
    copy would stay, owned by this live process. Runs after the second run above."""
    from engram.query.serving import current, serving_root
    from orchestration.assets.dbt import engram_dbt

    root = serving_root(graph.db)
    before = current(graph.db)
    assert before is not None

    again = graph.defs.resolve_job_def("full_graph").execute_in_process(
        instance=graph.instance, raise_on_error=False
    )
    assert again.success
    published = _materializations(again)["serving/published"].metadata
    assert published["copy_previous_during_dbt_seconds"].value >= 0
    assert published["build_id"].value != before.build_id
    assert not list(root.glob(".build-*.partial")) and not list(root.glob(".claim-*"))

    dbt_only = graph.defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=graph.instance, asset_selection=list(engram_dbt.keys), raise_on_error=False
    )
    assert dbt_only.success
    assert "serving/published" not in _materializations(dbt_only)
    assert current(graph.db).build_id == published["build_id"].value  # type: ignore[union-attr]
    assert not list(root.glob(".build-*.partial")) and not list(root.glob(".claim-*"))


def test_freshness_job_passes_right_after_a_build(graph: Graph) -> None:
    result = graph.defs.resolve_job_def("check_marts_freshness").execute_in_process(
        instance=graph.instance
    )
    evaluations = result.get_asset_check_evaluations()
    assert evaluations and all(e.passed for e in evaluations)


def test_blocking_ingest_check_stops_the_build(tmp_path: Path) -> None:
    """A drop with more rejects than allowed fails its check, and dbt does not build on it."""
    from dagster import DagsterInstance

    from orchestration.definitions import build_definitions
    from orchestration.resources import Inbox, QualityThresholds, Warehouse

    inbox_dir = tmp_path / "inbox"
    inbox_dir.mkdir()
    (inbox_dir / "patterns.jsonl").write_text(
        json.dumps({"pattern_id": "p1", "description": "Pin the version"}) + "\nnot json\n"
    )
    defs = build_definitions(
        warehouse=Warehouse(db_path=str(tmp_path / "wh.duckdb")),
        inbox=Inbox(path=str(inbox_dir), settle_seconds=0),
        thresholds=QualityThresholds(max_rejected_rate=0.1),  # 1 of 2 records is rejected
    )
    result = defs.resolve_job_def("full_graph").execute_in_process(
        instance=DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert not result.success
    failed = {
        e.check_name: e.metadata["rejected_rate"].value
        for e in result.get_asset_check_evaluations()
        if not e.passed
    }
    assert failed == {"rejected_rate_below_threshold": 0.5}
    built = _materializations(result)
    assert not [key for key in built if key.startswith(("staging/", "marts/", "serving/"))]


def test_sensor_requests_one_run_per_new_drop(tmp_path: Path) -> None:
    from dagster import build_sensor_context

    from orchestration.resources import Inbox, Warehouse
    from orchestration.sensors import inbox_sensor

    inbox = Inbox(path=str(tmp_path / "inbox"), settle_seconds=0)
    warehouse = Warehouse(db_path=str(tmp_path / "wh" / "engram.duckdb"))
    (tmp_path / "inbox").mkdir()

    def tick(cursor: str | None) -> Any:
        context = build_sensor_context(
            resources={"inbox": inbox, "warehouse": warehouse}, cursor=cursor
        )
        return inbox_sensor.evaluate_tick(context)

    empty = tick(None)
    assert empty.run_requests == []

    (tmp_path / "inbox" / "events-1.jsonl").write_text('{"event_id": "1"}\n')
    first = tick(empty.cursor)
    assert len(first.run_requests) == 1

    again = tick(first.cursor)  # same file, not yet ingested: no second run
    assert again.run_requests == []

    (tmp_path / "inbox" / "events-2.jsonl").write_text('{"event_id": "2"}\n')
    second = tick(again.cursor)
    assert len(second.run_requests) == 1
    assert second.run_requests[0].run_key != first.run_requests[0].run_key

    # an agent's `engram record` grows the journal: that is a drop too
    from engram.query.record import record_pattern

    record_pattern(warehouse.path, "recorded by an agent")
    journal = tick(second.cursor)
    assert len(journal.run_requests) == 1
    assert tick(journal.cursor).run_requests == []


def test_sensor_waits_for_files_still_being_written(tmp_path: Path) -> None:
    from orchestration.resources import Inbox

    inbox = Inbox(path=str(tmp_path), settle_seconds=60)
    fresh = tmp_path / "events.jsonl"
    fresh.write_text("{}\n")
    assert inbox.pending() == []
    old = time.time() - 120
    os.utime(fresh, (old, old))
    assert inbox.pending() == [fresh.resolve()]


def test_inbox_is_configurable_by_run_config(tmp_path: Path) -> None:
    """The resource default comes from $ENGRAM_INBOX; a run can point elsewhere."""
    from dagster import AssetSelection, DagsterInstance, Definitions, define_asset_job

    from orchestration.assets.ingest import RAW_KEYS
    from orchestration.definitions import build_definitions
    from orchestration.resources import Inbox, Warehouse

    other = tmp_path / "other-inbox"
    other.mkdir()
    (other / "patterns.jsonl").write_text(
        json.dumps({"pattern_id": "p-other", "description": "Use the other inbox"}) + "\n"
    )
    defs = build_definitions(
        warehouse=Warehouse(db_path=str(tmp_path / "wh.duckdb")),
        inbox=Inbox(path=str(tmp_path / "default-inbox"), settle_seconds=0),
    )
    selection = AssetSelection.assets(*RAW_KEYS.values()).without_checks()
    defs = Definitions.merge(defs, Definitions(jobs=[define_asset_job("ingest", selection)]))
    result = defs.resolve_job_def("ingest").execute_in_process(
        instance=DagsterInstance.ephemeral(),
        run_config={"resources": {"inbox": {"config": {"path": str(other), "settle_seconds": 0}}}},
    )
    assert result.success
    patterns = _materializations(result)["raw/patterns"].metadata["dagster/row_count"].value
    assert patterns == 1
    assert not (other / "patterns.jsonl").exists()
    assert list((other / "processed").rglob("patterns.jsonl"))


def test_warehouse_writers_share_one_pool_limited_to_one_run(tmp_path: Path) -> None:
    """A second warehouse-writing run waits in the queue: pool granularity `run`, limit 1."""
    import yaml
    from dagster import DagsterInstance, Definitions

    from ingest.warehouse import CHECKOUT_ROOT
    from orchestration.assets.ingest import WAREHOUSE_POOL
    from orchestration.definitions import defs

    shutil.copy(CHECKOUT_ROOT / "orchestration" / "dagster.yaml", tmp_path / "dagster.yaml")
    config = yaml.safe_load((tmp_path / "dagster.yaml").read_text())
    assert config["telemetry"]["enabled"] is False
    instance = DagsterInstance.from_config(str(tmp_path))
    try:
        pools = instance.get_concurrency_config().pool_config
        assert pools.pool_granularity.value == "run"
        assert pools.default_pool_limit == 1
    finally:
        instance.dispose()
    Definitions.validate_loadable(defs)  # what the webserver's code server does
    asset_graph = defs.resolve_asset_graph()
    for key in asset_graph.get_all_asset_keys():
        node = asset_graph.get(key)
        assert node.pools == {WAREHOUSE_POOL}, key.to_user_string()


def test_inbox_asset_takes_the_journal_in(tmp_path: Path) -> None:
    """What agents recorded (`engram record`, MCP) reaches raw.* through the Dagster
    ingest asset too, with an empty inbox, once."""
    from dagster import materialize

    from engram.query.record import record_outcome, record_pattern
    from ingest.warehouse import connect_for_read
    from orchestration.assets.ingest import inbox_ingest
    from orchestration.resources import Inbox, Warehouse

    db = tmp_path / "wh" / "engram.duckdb"
    made = record_pattern(db, "restart the flaky worker with a clean cache")
    record_outcome(db, made.id, 0.75, task="worker hangs")
    (tmp_path / "inbox").mkdir()
    resources = {
        "warehouse": Warehouse(db_path=str(db)),
        "inbox": Inbox(path=str(tmp_path / "inbox"), settle_seconds=0),
    }
    for expected in (2, 0):  # the second run finds nothing new in the journal
        result = materialize([inbox_ingest], resources=resources)
        assert result.success
        runs = [
            e.materialization.metadata["records_read"].value
            for e in result.get_asset_materialization_events()
            if e.materialization.asset_key.to_user_string() == "raw/ingest_runs"
        ]
        assert runs == [expected]
    con = connect_for_read(db)
    try:
        assert con.execute("select count(*) from raw.patterns").fetchone() == (1,)
        assert con.execute("select count(*) from raw.usage_events").fetchone() == (1,)
    finally:
        con.close()


def test_a_dagster_dbt_run_checks_every_row_whatever_the_environment_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`engram build` scopes the expensive data tests by $ENGRAM_CHANGED_SINCE; Dagster's
    runs (the daily full graph) must not inherit one left in the daemon's environment, and
    the environment is as it was afterwards."""
    from engram.build import CHANGED_SINCE_ENV, LOG_LEVEL_FILE_ENV
    from ingest.warehouse import DB_ENV_VAR
    from orchestration.resources import Warehouse

    monkeypatch.setenv(CHANGED_SINCE_ENV, "2026-01-01 00:00:00")
    monkeypatch.delenv(DB_ENV_VAR, raising=False)
    warehouse = Warehouse(db_path=str(tmp_path / "wh.duckdb"))
    monkeypatch.delenv(LOG_LEVEL_FILE_ENV, raising=False)
    with warehouse.dbt_env():
        assert os.environ[CHANGED_SINCE_ENV] == ""
        assert os.environ[DB_ENV_VAR] == str(warehouse.path)
        assert os.environ[LOG_LEVEL_FILE_ENV] == "info"  # dbt's log file without every statement
    assert os.environ[CHANGED_SINCE_ENV] == "2026-01-01 00:00:00"
    assert DB_ENV_VAR not in os.environ and LOG_LEVEL_FILE_ENV not in os.environ
    monkeypatch.setenv(LOG_LEVEL_FILE_ENV, "debug")
    with warehouse.dbt_env():
        assert os.environ[LOG_LEVEL_FILE_ENV] == "debug"  # asked for: kept
