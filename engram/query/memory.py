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

from typing import TYPE_CHECKING, Any

import pandas as pd

from engram.query import clusters as clusters_q
from engram.query import files as files_q
from engram.query import overlay as overlay_q
from engram.query import record as record_q
from engram.query import similar as similar_q
from engram.query import sql as sql_q
from engram.query import trends as trends_q
from engram.query import upkeep as upkeep_q
from engram.query.errors import check_k
from engram.query.reader import Reader

if TYPE_CHECKING:  # predict needs scipy (~0.3 s to import): loaded when first asked
    from engram.query.evaluate import Evaluation
    from engram.query.predict import Prediction
    from engram.query.recommend import Recommendation


class Memory(Reader):
    """Read-only questions to one warehouse's serving copy (or the warehouse, if none)."""

    _overlay: overlay_q.Overlay | None = None

    def __enter__(self) -> Memory:
        return self

    def find_similar(self, text: str, k: int = 10) -> pd.DataFrame:
        """Patterns closest in meaning to text, best first, including patterns recorded
        since the last build (`built` False) and outcomes since it (`pending_*`)."""
        return overlay_q.find_similar(self, self.overlay, text, k)

    @property
    def overlay(self) -> overlay_q.Overlay:
        """The journal entries not yet built (read-your-writes); share one between Memory
        objects of a long-lived process (`memory.overlay = other.overlay`) so descriptions
        are embedded once."""
        if self._overlay is None:
            self._overlay = overlay_q.Overlay(self.db_path)
        return self._overlay

    @overlay.setter
    def overlay(self, value: overlay_q.Overlay) -> None:
        self._overlay = value

    def similar_to_pattern(self, pattern_id: str, k: int = 10) -> pd.DataFrame:
        """Patterns closest in meaning to an existing pattern (itself excluded)."""
        return similar_q.similar_to_pattern(self, pattern_id, k)

    def predict(
        self, text: str, k: int = 10, *, rank_by: str = "mean", project: str | None = None
    ) -> Prediction:
        """Patterns that fit this task text and work: relevance x success^4, best first.
        project: whose memory answers (None: the current project, "*": all pooled);
        rows leaning on other projects' outcomes say so in `borrowed`."""
        from engram.query import predict as predict_q

        return predict_q.predict(self, text, k, rank_by=rank_by, project=project)

    def recommend(
        self,
        task: str,
        k: int = 5,
        *,
        strategy: str = "best",
        seed: int | None = None,
        log: bool = True,
        project: str | None = None,
    ) -> Recommendation:
        """What to try for `task`: predict's ranking as a decision (strategy best, cautious
        or explore), with outcomes recorded since the build counted, declining-trend
        warnings, and a recommendation_id logged to the journal (cite it when recording
        the outcome)."""
        from engram.query import recommend as recommend_q

        return recommend_q.recommend(
            self, self.overlay, task, k, strategy=strategy, seed=seed, log=log, project=project
        )

    def evaluate(
        self,
        holdout: float = 0.05,
        min_quality: float = 0.9,
        *,
        project: str | None = None,
        share: bool = True,
    ) -> Evaluation:
        """Walk-forward check of predict on this warehouse's own history, with baselines;
        with `project`, that project's events only, borrowing from the others if `share`
        (None: the whole warehouse)."""
        from engram.query import evaluate as evaluate_q
        from engram.query import predict as predict_q

        return evaluate_q.evaluate(
            self,
            holdout,
            min_quality,
            predict_q.ranking_params(),
            project=None if project == "*" else project,
            share=share,
        )

    def global_mean(self) -> float:
        """Event-weighted mean outcome quality over all patterns: the prior of last resort."""
        from engram.query import predict as predict_q

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

    def files(
        self, file: str | None = None, top: int = 20, *, project: str | None = None
    ) -> pd.DataFrame:
        """Files that travel with `file` (or the strongest pairs overall) and how they fare,
        per project: `project` (None: the current one when the warehouse knows it, "*":
        every project's pairs, each row naming its project)."""
        from engram.query import predict as predict_q

        resolved, _ = predict_q.resolve_project(self, project)
        return files_q.files(self, file, top, resolved)

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
        """Upkeep alerts (declining, near_duplicate, stale, rising, unproven), most urgent first."""
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

    # ---------------------------------------------------------------- the agent loop
    # (record_q: the journal write path; overlay/recommend: read-your-writes, decisions)

    def record_pattern(
        self,
        description: str,
        pattern_type: str | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        pattern_id: str | None = None,
    ) -> str:
        """Record a pattern in the journal (durable on return; never waits for the
        warehouse lock); returns its id, generated when not given."""
        return record_q.record_pattern(
            self.db_path,
            description,
            pattern_type=pattern_type,
            metadata=metadata,
            pattern_id=pattern_id,
        ).id

    def record_outcome(
        self,
        pattern_id: str,
        outcome_quality: float,
        *,
        task: str | None = None,
        files: list[str] | None = None,
        tools: list[str] | None = None,
        session_id: str | None = None,
        recommendation_id: str | None = None,
        project: str | None = None,
    ) -> str:
        """Record that `pattern_id` was used (for `task`) and how well it went (0..1);
        returns the event id. Cite the recommendation_id of the advice followed.
        project: the project it happened in (default: the current project,
        ingest/project_identity.py)."""
        from ingest.project_identity import current_project

        return record_q.record_outcome(
            self.db_path,
            pattern_id,
            outcome_quality,
            task=task,
            files=files,
            tools=tools,
            session_id=session_id,
            recommendation_id=recommendation_id,
            project_id=current_project(project),
        ).id
