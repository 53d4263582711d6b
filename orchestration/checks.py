"""Python asset checks: the ingest's quality (blocking: a bad drop stops before dbt) and the
freshness of the marts. dbt's own tests arrive as checks from the manifest (assets/dbt.py)."""

import time
from collections.abc import Iterator

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    MetadataValue,
    asset_check,
    multi_asset_check,
)

from orchestration.assets.dbt import engram_dbt
from orchestration.assets.ingest import RAW_KEYS
from orchestration.resources import QualityThresholds, Warehouse

FRESH_CHECK = "fresh"


@asset_check(
    asset=RAW_KEYS["rejected_records"],
    name="rejected_rate_below_threshold",
    blocking=True,
    description="Rejected / read records of the latest ingest run stay below "
    "QualityThresholds.max_rejected_rate.",
)
def rejected_rate(warehouse: Warehouse, thresholds: QualityThresholds) -> AssetCheckResult:
    con = warehouse.connect_read()
    try:
        row = con.execute(
            """
            select run_id, records_read, records_rejected from raw.ingest_runs
            where status = 'succeeded' and records_read > 0
            order by started_at desc limit 1
            """
        ).fetchone()
    finally:
        con.close()
    if row is None:
        return AssetCheckResult(passed=True, metadata={"note": "no records ingested yet"})
    run_id, read, rejected = row[0], int(row[1]), int(row[2] or 0)
    rate = rejected / read
    return AssetCheckResult(
        passed=rate <= thresholds.max_rejected_rate,
        metadata={
            "ingest_run_id": run_id,
            "records_read": read,
            "records_rejected": rejected,
            "rejected_rate": MetadataValue.float(rate),
            "threshold": MetadataValue.float(thresholds.max_rejected_rate),
        },
    )


@asset_check(
    asset=RAW_KEYS["usage_events"],
    name="unknown_pattern_ids_below_threshold",
    blocking=True,
    description="Share of events whose pattern_id has no row in raw.patterns stays below "
    "QualityThresholds.max_unknown_pattern_rate.",
)
def unknown_pattern_ids(warehouse: Warehouse, thresholds: QualityThresholds) -> AssetCheckResult:
    con = warehouse.connect_read()
    try:
        total, unknown = con.execute(
            """
            select count(*), count(*) filter (where p.pattern_id is null)
            from raw.usage_events as e
            left join raw.patterns as p using (pattern_id)
            """
        ).fetchone()  # type: ignore[misc]
        examples = [
            row[0]
            for row in con.execute(
                """
                select distinct e.pattern_id from raw.usage_events as e
                anti join raw.patterns as p using (pattern_id)
                order by 1 limit 5
                """
            ).fetchall()
        ]
    finally:
        con.close()
    rate = unknown / total if total else 0.0
    return AssetCheckResult(
        passed=rate <= thresholds.max_unknown_pattern_rate,
        metadata={
            "events": int(total),
            "events_with_unknown_pattern": int(unknown),
            "unknown_rate": MetadataValue.float(rate),
            "threshold": MetadataValue.float(thresholds.max_unknown_pattern_rate),
            "examples": ", ".join(examples) or "none",
        },
    )


MART_KEYS: list[AssetKey] = sorted(
    (key for key in engram_dbt.keys if key.path[0] == "marts"),
    key=lambda key: key.to_user_string(),
)


def _latest_materialization(context: AssetCheckExecutionContext, key: AssetKey) -> float | None:
    event = context.instance.get_latest_materialization_event(key)
    return event.timestamp if event else None


def build_freshness_checks() -> list[AssetChecksDefinition]:
    """One `fresh` check per mart: built within marts_max_age_hours and not older than the
    latest ingest (a mart built before the newest data arrived is stale)."""
    if not MART_KEYS:
        return []

    @multi_asset_check(
        specs=[
            AssetCheckSpec(
                FRESH_CHECK,
                asset=key,
                description="Built within QualityThresholds.marts_max_age_hours and after "
                "the latest ingest.",
            )
            for key in MART_KEYS
        ],
        can_subset=True,
        name="marts_freshness",
    )
    def marts_freshness(
        context: AssetCheckExecutionContext, thresholds: QualityThresholds
    ) -> Iterator[AssetCheckResult]:
        now = time.time()
        ingested_at = _latest_materialization(context, RAW_KEYS["usage_events"])
        max_age_s = thresholds.marts_max_age_hours * 3600
        for check_key in context.selected_asset_check_keys:
            built_at = _latest_materialization(context, check_key.asset_key)
            if built_at is None:
                yield AssetCheckResult(
                    asset_key=check_key.asset_key,
                    check_name=FRESH_CHECK,
                    passed=False,
                    severity=AssetCheckSeverity.WARN,
                    metadata={"note": "never materialized"},
                )
                continue
            age_h = (now - built_at) / 3600
            behind_ingest = ingested_at is not None and built_at < ingested_at
            yield AssetCheckResult(
                asset_key=check_key.asset_key,
                check_name=FRESH_CHECK,
                passed=(now - built_at) <= max_age_s and not behind_ingest,
                severity=AssetCheckSeverity.WARN,
                metadata={
                    "age_hours": MetadataValue.float(age_h),
                    "max_age_hours": MetadataValue.float(thresholds.marts_max_age_hours),
                    "built_before_latest_ingest": behind_ingest,
                },
            )

    return [marts_freshness]


INGEST_CHECKS = [rejected_rate, unknown_pattern_ids]
FRESHNESS_CHECKS = build_freshness_checks()
ALL_CHECKS = [*INGEST_CHECKS, *FRESHNESS_CHECKS]
