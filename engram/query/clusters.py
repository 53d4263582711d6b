"""How do patterns cluster by meaning? The largest clusters, and one cluster's members.

The overview is the headline answer `answers.largest_clusters`.
"""

from __future__ import annotations

import pandas as pd

from engram.query import answers
from engram.query.errors import InvalidQuery, check_k
from engram.query.reader import Reader


def clusters(reader: Reader, top: int = 20) -> pd.DataFrame:
    """Largest clusters of patterns by meaning, with labels and mean success."""
    top = check_k(top, "top")
    reader.require("marts.pattern_clusters")
    answer = answers.largest_clusters(reader.con, reader.relations, top)
    assert answer is not None  # the mart exists
    return answer.frame


def cluster_members(reader: Reader, cluster_id: int, top: int = 20) -> pd.DataFrame:
    """A cluster's patterns, nearest its centroid first."""
    top = check_k(top, "top")
    reader.require("marts.pattern_clusters", "marts.dim_patterns")
    frame = reader.df(
        """
        select c.pattern_id, p.description, c.similarity_to_centroid, p.success_rate,
               p.usage_count, c.cluster_label
        from marts.pattern_clusters as c join marts.dim_patterns as p using (pattern_id)
        where c.cluster_id = ?
        order by c.similarity_to_centroid desc, c.pattern_id limit ?
        """,
        [cluster_id, top],
    )
    if frame.empty:
        raise InvalidQuery(f"unknown cluster id {cluster_id!r}")
    return frame
