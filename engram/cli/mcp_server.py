"""`engram mcp`: engram as an MCP server on stdio, for agents.

Built on the official MCP Python SDK (v2: `MCPServer`, `ToolError`); imported only by
this command, since importing the SDK costs about two seconds. stdout is the protocol
transport, so everything else (logs, warnings) goes to stderr.

The server stays warm: the embedding model and the read-only connection to the serving
copy are opened once; before each call it checks CURRENT.json (one small file read) and
switches to a newly published build, keeping the model, the query-vector cache and the
read-your-writes overlay. Tool results are structured JSON with the fields of the CLI's
`--json`; a bad argument becomes an MCP tool error with a clear message, never a crash.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import Any, Literal

from typing_extensions import TypedDict

from engram.query.errors import InvalidQuery, QueryError
from engram.query.jsonable import records
from engram.query.memory import Memory
from engram.query.overlay import Overlay
from engram.query.record import InvalidRecord
from engram.query.record import record_outcome as write_outcome
from engram.query.record import record_pattern as write_pattern
from engram.query.serving import current
from engram.query.udf import QueryEmbedder
from ingest.project_identity import current_project

LOG = logging.getLogger("engram.mcp")

INSTRUCTIONS = """\
engram is a memory of coding approaches (patterns) and how well they worked (outcomes).
Before working on a task, call recommend_patterns with the task text and try the first
recommendation unless you have a reason not to. Record what you learn: record_pattern for
a new approach (keep the returned pattern_id), and record_outcome after using a pattern,
with outcome_quality from 0 (failed) to 1 (worked perfectly), the task text and the
recommendation_id you were given. Writes are visible to find_similar_patterns and
recommend_patterns at once."""


class PatternList(TypedDict):
    patterns: list[dict[str, Any]]


class RecommendResult(TypedDict):
    recommendation_id: str
    task: str
    strategy: str
    seed: int
    created_at: str
    recommendations: list[dict[str, Any]]
    warnings: list[str]
    notes: list[str]


class RecordedPattern(TypedDict):
    pattern_id: str
    description: str


class RecordedOutcome(TypedDict):
    event_id: str
    pattern_id: str
    outcome_quality: float
    recommendation_id: str | None


class TrendsResult(TypedDict):
    summary: list[dict[str, Any]]
    weeks: list[dict[str, Any]]


class FilesResult(TypedDict):
    file: str
    related: list[dict[str, Any]]


AlertKind = Literal["declining", "near_duplicate", "stale", "rising", "unproven"]


class AlertsResult(TypedDict):
    alerts: list[dict[str, Any]]


class Warm:
    """The long-lived state: model, overlay, and a Memory on the newest published build."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.embedder = QueryEmbedder()
        self.overlay = Overlay(db)
        self.memory: Memory | None = None
        self.build_id: str | None = None
        self.lock = threading.Lock()  # one DuckDB connection: one call at a time

    def get(self) -> Memory:
        """The Memory for the current build, reopened when a new one was published."""
        copy = current(self.db)
        build_id = copy.build_id if copy else None
        if self.memory is None or build_id != self.build_id:
            fresh = Memory(self.db, embedder=self.embedder)
            fresh.overlay = self.overlay
            if self.memory is not None:
                self.memory.close()
                LOG.info("switched to build %s", build_id)
            self.memory, self.build_id = fresh, build_id
        return self.memory


def _json_rows(frame: Any) -> list[dict[str, Any]]:
    return records(frame.drop(columns=["metadata", "embedding"], errors="ignore"))


def create_server(db: Path) -> Any:
    """The MCPServer with engram's tools, bound to the warehouse `db`."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    warm = Warm(db)
    server = MCPServer("engram", instructions=INSTRUCTIONS, log_level="WARNING")

    def guarded(call: Any) -> Any:
        with warm.lock:
            try:
                return call()
            except (InvalidRecord, InvalidQuery, QueryError) as exc:
                raise ToolError(str(exc)) from None
            except (TypeError, ValueError) as exc:
                raise ToolError(f"bad argument: {exc}") from None

    @server.tool()
    def recommend_patterns(
        task: str, k: int = 5, strategy: str = "best", project: str | None = None
    ) -> RecommendResult:
        """Recommend coding patterns (approaches) to try for a task, best first.

        task: what you are about to do, in plain words (e.g. "pytest fails only at
        midnight"). k: how many to return (1-1000, default 5). strategy: "best" (highest
        expected outcome, default), "cautious" (highest lower credible bound: proven
        approaches), or "explore" (Thompson sampling: sometimes tries less-proven ones so
        the memory learns). Each result has predicted_success (0-1), ci_low, the number
        of past uses, and `declining` with a warning when the pattern's results are getting
        worse. Keep the returned recommendation_id and pass it to record_outcome.
        project: the repository you work in, e.g. "github.com/owner/repo" (default: the
        server's current project, from $ENGRAM_PROJECT or its working directory's git
        remote; "*" for every project pooled); a result whose success estimate leans on
        other projects says so in `borrowed` (e.g. "borrowed: 34 uses in 2 other
        projects")."""
        return guarded(  # type: ignore[no-any-return]
            lambda: warm.get().recommend(task, k, strategy=strategy, project=project).to_dict()
        )

    @server.tool()
    def find_similar_patterns(text: str, k: int = 10) -> PatternList:
        """Find recorded patterns closest in meaning to `text` (a description of an
        approach or a problem), most similar first, including patterns recorded moments
        ago (built=false). Each has pattern_id, description, similarity (cosine, -1..1),
        success_rate (mean outcome 0-1, null if never used), usage_count, and
        pending_outcomes (outcomes recorded since the last build, not yet in the counts)."""
        return guarded(lambda: {"patterns": _json_rows(warm.get().find_similar(text, k))})  # type: ignore[no-any-return]

    @server.tool()
    def record_pattern(
        description: str, pattern_type: str | None = None, metadata: dict[str, Any] | None = None
    ) -> RecordedPattern:
        """Record a new pattern: a reusable approach you found (e.g. "freeze time with
        time-machine in date-dependent tests"). pattern_type: optional label such as fix,
        diagnose, refactor. metadata: optional JSON object. Returns the new pattern_id;
        use it with record_outcome. Findable by find_similar_patterns immediately."""

        def call() -> RecordedPattern:
            done = write_pattern(db, description, pattern_type=pattern_type, metadata=metadata)
            return {"pattern_id": done.id, "description": done.record["description"]}

        return guarded(call)  # type: ignore[no-any-return]

    @server.tool()
    def record_outcome(
        pattern_id: str,
        outcome_quality: float,
        task: str | None = None,
        files: list[str] | None = None,
        tools: list[str] | None = None,
        session_id: str | None = None,
        recommendation_id: str | None = None,
        project: str | None = None,
    ) -> RecordedOutcome:
        """Record how well a pattern worked after you used it. outcome_quality: 0 (did not
        work) to 1 (worked perfectly). task: the task text it was applied to. files: paths
        touched. tools: tools used. recommendation_id: the id from recommend_patterns if
        you followed (or ignored) a recommendation, so engram can measure whether its
        advice helps. project: the repository it happened in, e.g. "github.com/owner/repo"
        (default: the server's current project). Returns the event_id."""

        def call() -> RecordedOutcome:
            done = write_outcome(
                db,
                pattern_id,
                outcome_quality,
                task=task,
                files=files,
                tools=tools,
                session_id=session_id,
                recommendation_id=recommendation_id,
                project_id=current_project(project),
            )
            return {
                "event_id": done.id,
                "pattern_id": done.record["pattern_id"],
                "outcome_quality": float(done.record["outcome_quality"]),
                "recommendation_id": recommendation_id,
            }

        return guarded(call)  # type: ignore[no-any-return]

    @server.tool()
    def pattern_trends(pattern_id: str | None = None, weeks: int = 12) -> TrendsResult:
        """Is a pattern getting better or worse? With pattern_id: its trend summary
        (direction improving/declining/stable, slope per week, t statistic) and its last
        `weeks` weekly rows. Without: the patterns improving or declining most steeply."""

        def call() -> TrendsResult:
            memory = warm.get()
            if pattern_id is None:
                return {"summary": _json_rows(memory.trend_summary(top=weeks)), "weeks": []}
            return {
                "summary": _json_rows(memory.trend_summary(pattern_id)),
                "weeks": _json_rows(memory.trends(pattern_id, weeks)),
            }

        return guarded(call)  # type: ignore[no-any-return]

    @server.tool()
    def related_files(path: str, k: int = 20, project: str | None = None) -> FilesResult:
        """Files most often changed together with `path` (a repository-relative path), with
        how often, the mean outcome when they travel together, and its trend. project:
        the repository the path belongs to (default: the server's current project; "*":
        that path in every project, each row naming its project)."""
        return guarded(  # type: ignore[no-any-return]
            lambda: {
                "file": path,
                "related": _json_rows(warm.get().files(path, k, project=project)),
            }
        )

    @server.tool()
    def pattern_alerts(kind: AlertKind | None = None, top: int = 20) -> AlertsResult:
        """What needs attention in the pattern library, most urgent first: each alert has
        kind, pattern_id, related_pattern_id, evidence (the numbers) and message (what to
        do, one or two sentences). kind keeps one kind: "declining" (results getting
        significantly worse; related_pattern_id is the replacement to use instead),
        "near_duplicate" (same approach in other words; related_pattern_id is the one to
        keep), "stale" (unused for weeks while its kind of problem is still worked on),
        "rising" (significantly improving: prefer it), "unproven" (recommended first often
        but rarely used: try it deliberately and record the outcome, or avoid it). Omit kind
        for all. top: how many (1-1000, default 20). Alerts come from the last build."""
        return guarded(  # type: ignore[no-any-return]
            lambda: {"alerts": _json_rows(warm.get().alerts(top, kind))}
        )

    return server


def serve(db: Path) -> None:
    """Run the server on stdio until the client closes it."""
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="engram mcp: %(levelname)s %(message)s"
    )
    LOG.info("serving %s on stdio", db)
    create_server(db).run("stdio")
