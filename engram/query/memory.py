"""Ask engram: the Python API behind `engram similar/predict/trends/files/clusters/sql`.

    from engram.query import Memory
    with Memory("warehouse/engram.duckdb") as memory:
        memory.find_similar("test fails only at midnight", k=5)     # DataFrame
        memory.predict("tokio task is not Send", k=5).patterns      # DataFrame
        memory.trends("p0000042", weeks=12)                         # DataFrame

Memory is a Reader (one read-only, sandboxed connection to the published serving copy)
with one method per question; each question's logic lives in its own module
(similar, predict, trends, files, clusters, upkeep, sql).
"""

from __future__ import annotations

import pandas as pd

from engram.query import clusters as clusters_q
from engram.query import files as files_q
from engram.query import predict as predict_q
from engram.query import similar as similar_q
from engram.query import sql as sql_q
from engram.query import trends as trends_q
from engram.query import upkeep as upkeep_q
from engram.query.errors import check_k
from engram.query.predict import Prediction
from engram.query.reader import Reader


class Memory(Reader):
    """Read-only questions to one warehouse's serving copy (or the warehouse, if none)."""

    def __enter__(self) -> Memory:
        return self

    def find_similar(self, text: str, k: int = 10) -> pd.DataFrame:
        """Patterns closest in meaning to text, best first."""
        return similar_q.find_similar(self, text, k)

    def similar_to_pattern(self, pattern_id: str, k: int = 10) -> pd.DataFrame:
        """Patterns closest in meaning to an existing pattern (itself excluded)."""
        return similar_q.similar_to_pattern(self, pattern_id, k)

    def predict(self, text: str, k: int = 10, *, rank_by: str = "mean") -> Prediction:
        """Patterns ranked by predicted success for this task text."""
        return predict_q.predict(self, text, k, rank_by=rank_by)

    def global_mean(self) -> float:
        """Event-weighted mean outcome quality over all patterns: the prior of last resort."""
        return predict_q.global_mean(self)

    def trends(self, pattern_id: str | None = None, weeks: int = 12) -> pd.DataFrame:
        """With an id: its last `weeks` weekly rows. Without: most improving and declining."""
        weeks = check_k(weeks, "weeks")
        if pattern_id is None:
            return trends_q.summary(self, top=weeks)
        return trends_q.weekly(self, pattern_id, weeks)

    def trend_summary(
        self, pattern_id: str | None = None, top: int = 10, direction: str | None = None
    ) -> pd.DataFrame:
        """pattern_trend_summary rows: one pattern's, or the steepest improving/declining."""
        return trends_q.summary(self, pattern_id, top, direction)

    def files(self, file: str | None = None, top: int = 20) -> pd.DataFrame:
        """Files that travel with `file` (or the strongest pairs overall) and how they fare."""
        return files_q.files(self, file, top)

    def file_graph(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(nodes, edges) of the file co-occurrence graph."""
        return files_q.file_graph(self)

    def clusters(self, top: int = 20) -> pd.DataFrame:
        """Largest clusters of patterns by meaning, with labels and mean success."""
        return clusters_q.clusters(self, top)

    def cluster_members(self, cluster_id: int, top: int = 20) -> pd.DataFrame:
        """A cluster's patterns, nearest its centroid first."""
        return clusters_q.cluster_members(self, cluster_id, top)

    def alerts(self, top: int = 20, kind: str | None = None) -> pd.DataFrame:
        """Upkeep alerts (declining, near_duplicate, stale, rising), most urgent first."""
        return upkeep_q.alerts(self, top, kind)

    def themes(self, top: int = 20) -> pd.DataFrame:
        """The most-used themes (kinds of problem) with approaches, success and trend."""
        return upkeep_q.themes(self, top)

    def theme_members(self, theme_id: str, top: int = 50) -> pd.DataFrame:
        """A theme's patterns with their paraphrase groups, usage and success."""
        return upkeep_q.theme_members(self, theme_id, top)

    def sql(self, query: str) -> pd.DataFrame:
        """Any read-only SQL against the serving copy; embed('text') is available."""
        return sql_q.run_sql(self, query)
