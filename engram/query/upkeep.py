"""Upkeep of the pattern library: the alerts (what to merge, replace, retire or promote)
and the themes (kinds of problem) with their members.

The overviews are the headline answers `answers.top_alerts` and `answers.largest_themes`,
so `engram report`, the CLI, Memory and the Dagster metadata show the same rows.
"""

from __future__ import annotations

import pandas as pd

from engram.query import answers
from engram.query.errors import InvalidQuery, check_k
from engram.query.reader import Reader


def alerts(reader: Reader, top: int = 20, kind: str | None = None) -> pd.DataFrame:
    """pattern_alerts rows, most urgent kind first, strongest finding first within a kind."""
    top = check_k(top, "top")
    if kind is not None and kind not in answers.ALERT_KINDS:
        raise InvalidQuery(
            f"unknown alert kind {kind!r}; choose one of {', '.join(answers.ALERT_KINDS)}"
        )
    reader.require("marts.pattern_alerts")
    answer = answers.top_alerts(reader.con, reader.relations, top, kind)
    assert answer is not None  # the mart exists
    return answer.frame


def themes(reader: Reader, top: int = 20) -> pd.DataFrame:
    """The most-used themes with size, label, approaches, success and trend."""
    top = check_k(top, "top")
    reader.require("marts.pattern_themes")
    answer = answers.largest_themes(reader.con, reader.relations, top)
    assert answer is not None
    return answer.frame


def theme_members(reader: Reader, theme_id: str, top: int = 50) -> pd.DataFrame:
    """A theme's patterns by paraphrase group, most used first, with usage and success."""
    top = check_k(top, "top")
    reader.require("marts.pattern_clusters", "marts.dim_patterns")
    frame = reader.df(
        """
        select c.pattern_id, c.paraphrase_group_id, c.paraphrase_group_size, p.usage_count,
               p.success_rate, p.last_used_at, p.superseded_by, p.description
        from marts.pattern_clusters as c join marts.dim_patterns as p using (pattern_id)
        where c.theme_id = ?
        order by p.usage_count desc, c.paraphrase_group_id, c.pattern_id limit ?
        """,
        [theme_id, top],
    )
    if frame.empty:
        raise InvalidQuery(f"unknown theme id {theme_id!r} (see `engram themes`)")
    return frame
