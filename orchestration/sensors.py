"""Start ingest + build when new files land in the inbox."""

import hashlib
import json
from collections.abc import Iterator

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from ingest.journal import segments
from orchestration.resources import Inbox, Warehouse
from orchestration.schedules import automation_on, full_graph_job

SENSOR_INTERVAL_S = 30


@sensor(
    name="inbox_sensor",
    job=full_graph_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=DefaultSensorStatus.RUNNING if automation_on() else DefaultSensorStatus.STOPPED,
    description="Requests a full-graph run when ready files appear in the inbox or the journal "
    "(`engram record`, MCP) grows. The cursor holds the files already requested (name, size, "
    "mtime), so one drop starts one run.",
)
def inbox_sensor(
    context: SensorEvaluationContext, inbox: Inbox, warehouse: Warehouse
) -> Iterator[RunRequest | SkipReason]:
    seen = set(json.loads(context.cursor)) if context.cursor else set()
    present = {inbox.fingerprint(path) for path in inbox.pending()}
    present |= {f"journal/{p.name}|{p.stat().st_size}" for p in segments(warehouse.path)}
    new = sorted(present - seen)
    # Keep only what is still in the inbox: ingested files move out, so the cursor stays small.
    context.update_cursor(json.dumps(sorted(present)))
    if not new:
        yield SkipReason(f"no new files in {inbox.root}")
        return
    run_key = hashlib.sha256("\n".join(new).encode()).hexdigest()[:16]
    yield RunRequest(
        run_key=run_key,
        tags={"engram/trigger": "inbox", "engram/new_files": str(len(new))},
    )
