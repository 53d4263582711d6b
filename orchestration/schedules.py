"""Jobs and the daily schedule."""

from __future__ import annotations

import os

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    ScheduleDefinition,
    define_asset_job,
)

from orchestration.checks import FRESHNESS_CHECKS

AUTOMATION_ENV_VAR = "ENGRAM_AUTOMATION"  # "off": schedule and sensor start stopped

# Ingest → embeddings → dbt build → serving, with every check on them.
full_graph_job = define_asset_job(
    "full_graph",
    selection=AssetSelection.all(),
    description="Ingest the inbox, embed, dbt build (models + tests), publish the serving copy.",
)

# Only the marts' freshness checks: cheap (reads the instance, not the warehouse), so it
# can run hourly and flag marts that a failed or skipped build left behind.
marts_freshness_job = define_asset_job(
    "check_marts_freshness",
    selection=AssetSelection.checks(*FRESHNESS_CHECKS),
    description="Evaluate the marts' freshness checks without building anything.",
)


def automation_on() -> bool:
    return os.environ.get(AUTOMATION_ENV_VAR, "on").lower() not in {"off", "0", "false", "no"}


def default_status() -> DefaultScheduleStatus:
    return DefaultScheduleStatus.RUNNING if automation_on() else DefaultScheduleStatus.STOPPED


daily_full_graph = ScheduleDefinition(
    name="daily_full_graph",
    job=full_graph_job,
    cron_schedule="0 4 * * *",
    execution_timezone="UTC",
    default_status=default_status(),
    description="Every day at 04:00 UTC: the whole graph.",
)

SCHEDULES = [daily_full_graph]
if FRESHNESS_CHECKS:
    SCHEDULES.append(
        ScheduleDefinition(
            name="hourly_marts_freshness",
            job=marts_freshness_job,
            cron_schedule="30 * * * *",
            execution_timezone="UTC",
            default_status=default_status(),
            description="Every hour: are the marts fresh?",
        )
    )
