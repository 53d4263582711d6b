"""The code location: `dagster dev -m orchestration.definitions` (or `make ui`)."""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from orchestration.assets.dbt import engram_dbt
from orchestration.assets.ingest import embeddings, inbox_ingest
from orchestration.assets.merges import pattern_supersessions
from orchestration.assets.serving import serving_copy
from orchestration.checks import ALL_CHECKS, FRESHNESS_CHECKS
from orchestration.project import DBT_PROJECT, dbt_resource
from orchestration.resources import (
    Inbox,
    QualityThresholds,
    Warehouse,
    default_inbox_resource,
    default_warehouse,
)
from orchestration.schedules import SCHEDULES, full_graph_job, marts_freshness_job
from orchestration.sensors import inbox_sensor


def build_definitions(
    *,
    warehouse: Warehouse | None = None,
    inbox: Inbox | None = None,
    thresholds: QualityThresholds | None = None,
) -> Definitions:
    """Definitions with the given resources (tests point them at scratch data).

    The in-process executor runs the steps one after another in one process: every step
    touches the same DuckDB file, so parallel step processes would only contend for its lock.
    """
    return Definitions(
        assets=[inbox_ingest, embeddings, pattern_supersessions, engram_dbt, serving_copy],
        asset_checks=ALL_CHECKS,
        jobs=[full_graph_job, *([marts_freshness_job] if FRESHNESS_CHECKS else [])],
        schedules=SCHEDULES,
        sensors=[inbox_sensor],
        executor=in_process_executor,
        resources={
            "warehouse": warehouse or default_warehouse(),
            "inbox": inbox or default_inbox_resource(),
            "thresholds": thresholds or QualityThresholds(),
            "dbt": dbt_resource(DBT_PROJECT),
        },
    )


defs = build_definitions()
