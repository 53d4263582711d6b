"""The serving copy's file copy, started when a run's dbt step starts and handed to the
same run's serving step, as `engram build` does in one call (engram.query.serving.
PreparedCopy): the incremental publish starts from a copy of the previous serving file
(2.8 GB at 1M patterns: 1.6-8.9 s measured), which need not wait for dbt.

The in-process executor (orchestration.definitions) runs a run's steps one after another
in one process, so the copy waits here, keyed by run and warehouse, between the steps. A
copy no step takes (the serving step skipped after a failed check, a killed run) dies
with the process: its folder's owner file lets the next publish remove it at once."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from dagster import AssetKey

if TYPE_CHECKING:
    from engram.query.serving import PreparedCopy

SERVING_KEY = AssetKey(["serving", "published"])

_LOCK = threading.Lock()
_WAITING: dict[tuple[str, Path], PreparedCopy] = {}


def serving_selected(selected_keys: object) -> bool:
    """Whether a run whose job selects the assets `selected_keys` (the job's, or the
    subset's, asset layer: selected_asset_keys) publishes too."""
    return SERVING_KEY in selected_keys  # type: ignore[operator]


def prepare(run_id: str, db_path: Path) -> None:
    """Start copying the current serving copy for this run's publish (nothing when there
    is none yet: the first publish is a full one)."""
    from engram.query.serving import prepare_publish

    prepared = prepare_publish(db_path)
    if prepared is None:
        return
    with _LOCK:
        stale = _WAITING.pop((run_id, db_path), None)
        _WAITING[(run_id, db_path)] = prepared
    if stale is not None:  # a retried dbt step: the first try's copy is not needed
        stale.discard()


def take(run_id: str, db_path: Path) -> PreparedCopy | None:
    """The copy this run's dbt step started, for publish(prepared=...); None if none."""
    with _LOCK:
        return _WAITING.pop((run_id, db_path), None)


def discard(run_id: str, db_path: Path) -> None:
    """Drop this run's copy (its dbt step failed: no publish follows)."""
    prepared = take(run_id, db_path)
    if prepared is not None:
        prepared.discard()
