"""Is this pattern getting better or worse? Which patterns move most?

Reads marts.pattern_trends (weekly rows) and marts.pattern_trend_summary (slope, t, the
direction); the overview (no id) is the headline answer `answers.moving_patterns`.
"""

from __future__ import annotations

import pandas as pd

from engram.query import answers
from engram.query.errors import InvalidQuery, MissingMart, check_k
from engram.query.reader import Reader

SUMMARY_COLUMNS = """
    s.pattern_id, s.direction, s.quality_slope_per_week, s.slope_t_stat, s.n_events,
    s.avg_quality, s.first_week, s.last_week
"""


def known_pattern(reader: Reader, pattern_id: str) -> None:
    """Raise InvalidQuery unless dim_patterns has the id."""
    if not reader.has("marts.dim_patterns"):
        raise MissingMart("marts.dim_patterns")
    found = reader.con.execute(
        "select 1 from marts.dim_patterns where pattern_id = ?", [pattern_id]
    ).fetchone()
    if not found:
        raise InvalidQuery(f"unknown pattern id {pattern_id!r}")


def weekly(reader: Reader, pattern_id: str, weeks: int = 12) -> pd.DataFrame:
    """One pattern's last `weeks` weekly rows, oldest first."""
    weeks = check_k(weeks, "weeks")
    reader.require("marts.pattern_trends")
    known_pattern(reader, pattern_id)
    return reader.df(
        """
        select * from (
            select pattern_id, week, usage_count, avg_quality, moving_avg_quality
            from marts.pattern_trends where pattern_id = ?
            order by week desc limit ?
        ) order by week
        """,
        [pattern_id, weeks],
    )


def summary(
    reader: Reader, pattern_id: str | None = None, top: int = 10, direction: str | None = None
) -> pd.DataFrame:
    """pattern_trend_summary rows: one pattern's, or the steepest improving/declining."""
    reader.require("marts.pattern_trend_summary")
    if pattern_id is None:
        answer = answers.moving_patterns(
            reader.con, reader.relations, check_k(top, "top"), direction
        )
        assert answer is not None  # the mart exists
        return answer.frame.drop(columns=["change_per_year"])
    known_pattern(reader, pattern_id)
    join = ""
    columns = SUMMARY_COLUMNS
    if reader.has("marts.dim_patterns"):
        columns += ", p.description"
        join = "left join marts.dim_patterns as p using (pattern_id)"
    return reader.df(
        f"select {columns} from marts.pattern_trend_summary as s {join} where s.pattern_id = ?",
        [pattern_id],
    )
