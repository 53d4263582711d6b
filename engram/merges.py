"""Merging patterns: `engram merge-patterns KEEP DROP...` and `engram unmerge DROP...`.

A merge is a row in raw.pattern_supersessions, never an edit of the input: the dropped
patterns and their events stay as they were loaded, and stg_usage_events counts their
events toward the kept pattern in every mart from the next build on. Unmerging sets
revoked_at on the merge (the history of what was merged when is kept), so it too is
undone by nothing more than a rebuild.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from ingest.warehouse import connect_for_write


class MergeError(Exception):
    """The merge or unmerge cannot be recorded as asked (unknown id, chain, already done)."""


@dataclass(frozen=True)
class Supersession:
    supersession_id: str
    kept_pattern_id: str
    dropped_pattern_id: str
    recorded_at: datetime


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _known(con: duckdb.DuckDBPyConnection, ids: list[str]) -> set[str]:
    """Ids the warehouse knows: as a pattern, or as the pattern of an event."""
    rows = con.execute(
        """
        select pattern_id from raw.patterns where pattern_id in (select unnest(?::varchar[]))
        union
        select pattern_id from raw.usage_events
        where pattern_id in (select unnest(?::varchar[]))
        """,
        [ids, ids],
    ).fetchall()
    return {row[0] for row in rows}


def _merged_into(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Merges in force: dropped id -> the id it was merged into (one step, not resolved)."""
    rows = con.execute(
        """
        select dropped_pattern_id, arg_max(kept_pattern_id, recorded_at)
        from raw.pattern_supersessions where revoked_at is null
        group by dropped_pattern_id
        """
    ).fetchall()
    return {dropped: kept for dropped, kept in rows}


def merge_patterns(
    db_path: Path, keep: str, drops: list[str], reason: str | None = None
) -> list[Supersession]:
    """Record that each of `drops` is superseded by `keep`; all or nothing.

    Refused: an empty or repeated id, KEEP among the drops, an id the warehouse has never
    seen, a KEEP that is itself merged away (merge into its keeper instead), a DROP
    already merged (unmerge it first), and a merge that would make a cycle.
    """
    drops = [d.strip() for d in drops]
    keep = keep.strip()
    if not keep or not drops or any(not d for d in drops):
        raise MergeError("give one KEEP id and at least one DROP id, none of them empty")
    if len(set(drops)) != len(drops):
        raise MergeError(f"a DROP id is repeated: {' '.join(drops)}")
    if keep in drops:
        raise MergeError(f"{keep} is both KEEP and DROP")
    con = connect_for_write(db_path)
    try:
        unknown = [p for p in [keep, *drops] if p not in _known(con, [keep, *drops])]
        if unknown:
            raise MergeError(
                f"unknown pattern id(s): {', '.join(unknown)} (not in raw.patterns or "
                "raw.usage_events of this warehouse)"
            )
        merged = _merged_into(con)
        if keep in merged:
            raise MergeError(
                f"{keep} was itself merged into {merged[keep]}: merge into {merged[keep]} "
                f"instead, or run `engram unmerge {keep}` first"
            )
        for drop in drops:
            if drop in merged:
                raise MergeError(
                    f"{drop} is already merged into {merged[drop]}; run "
                    f"`engram unmerge {drop}` first"
                )
        now = _now()
        records = [Supersession(str(uuid.uuid4()), keep, drop, now) for drop in drops]
        con.execute("begin")
        con.executemany(
            """
            insert into raw.pattern_supersessions
                (supersession_id, kept_pattern_id, dropped_pattern_id, reason, recorded_at,
                 revoked_at)
            values (?, ?, ?, ?, ?, null)
            """,
            [
                [r.supersession_id, r.kept_pattern_id, r.dropped_pattern_id, reason, now]
                for r in records
            ],
        )
        con.execute("commit")
        return records
    finally:
        con.close()


def unmerge(db_path: Path, drops: list[str]) -> list[Supersession]:
    """Revoke the merges in force of each of `drops` (all or nothing); their events count
    toward themselves again from the next build on. Nothing is deleted."""
    drops = [d.strip() for d in drops]
    if not drops or any(not d for d in drops):
        raise MergeError("give at least one DROP id, none of them empty")
    con = connect_for_write(db_path)
    try:
        merged = _merged_into(con)
        missing = [d for d in drops if d not in merged]
        if missing:
            raise MergeError(
                f"not merged into anything: {', '.join(missing)} (see dim_patterns.superseded_by)"
            )
        now = _now()
        rows = con.execute(
            """
            select supersession_id, kept_pattern_id, dropped_pattern_id, recorded_at
            from raw.pattern_supersessions
            where revoked_at is null and dropped_pattern_id in (select unnest(?::varchar[]))
            order by dropped_pattern_id, recorded_at
            """,
            [drops],
        ).fetchall()
        con.execute("begin")
        con.execute(
            """
            update raw.pattern_supersessions set revoked_at = ?
            where revoked_at is null and dropped_pattern_id in (select unnest(?::varchar[]))
            """,
            [now, drops],
        )
        con.execute("commit")
        return [Supersession(*row) for row in rows]
    finally:
        con.close()


def supersessions(db_path: Path) -> list[tuple[object, ...]]:
    """Every recorded merge, newest first (for `engram unmerge --list`)."""
    con = connect_for_write(db_path)
    try:
        return con.execute(
            """
            select kept_pattern_id, dropped_pattern_id, recorded_at, revoked_at, reason
            from raw.pattern_supersessions order by recorded_at desc, dropped_pattern_id
            """
        ).fetchall()
    finally:
        con.close()
