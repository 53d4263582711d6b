"""`engram record | recommend | mcp | simulate`: the agent loop's commands.

record writes to the journal (never waits for the warehouse); recommend decides what to
try and logs the advice; mcp serves all of it to an agent over stdio; simulate runs a
synthetic agent against planted truth to show whether the loop learns.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engram.cli.questions import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Handler


def add_parsers(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    db_parent: argparse.ArgumentParser,
    formatter: type[argparse.HelpFormatter],
) -> dict[str, Handler]:
    """Register the loop's subcommands on `engram`'s subparsers; returns name -> handler."""
    record = commands.add_parser(
        "record",
        parents=[db_parent],
        formatter_class=formatter,
        help="record a pattern or an outcome now (journal; no warehouse lock)",
        description="""\
Record a pattern (a debugging approach, a fix recipe) or an outcome (a pattern was used
for a task, and how well it went, 0..1) while you work. Each record is checked with the
ingest contract (same rules and messages as `engram ingest`) and appended durably
(fsync) to the journal beside the warehouse (<warehouse>.journal/), so it never waits
for an ingest or build holding the warehouse, and any number of agents can write at
once. The next `engram ingest`, `engram build` or Dagster run takes the journal in
(each line exactly once); until then `engram similar` and `engram recommend` already
see it (read-your-writes).

Prints the id of each record (generated when not given); --json prints the records.""",
        epilog="""\
examples:
  engram record pattern "freeze the clock with time-machine in the test" --type fix
  engram record outcome pat-3f2a... 0.9 --task "test fails at midnight" --file tests/test_a.py
  engram record outcome --stdin < outcomes.jsonl    # one JSON object per line
exit status: 0 when written, 2 when a record breaks the contract (nothing is written).""",
    )
    kinds = record.add_subparsers(dest="kind", metavar="KIND", required=True)
    pattern = kinds.add_parser(
        "pattern",
        parents=[db_parent],
        formatter_class=formatter,
        help="record a pattern",
        description="Record a pattern: DESCRIPTION (or JSON Lines on stdin with --stdin).",
    )
    pattern.add_argument("description", nargs="?", metavar="DESCRIPTION")
    pattern.add_argument("--type", dest="pattern_type", metavar="TYPE", help="fix, diagnose, ...")
    pattern.add_argument("--metadata", metavar="JSON", help="a JSON object stored with it")
    pattern.add_argument("--id", dest="record_id", metavar="ID", help="pattern id (default: new)")
    outcome = kinds.add_parser(
        "outcome",
        parents=[db_parent],
        formatter_class=formatter,
        help="record an outcome (a usage event)",
        description="""\
Record that PATTERN_ID was used and how well it went: QUALITY in [0, 1] (or JSON Lines of
usage events on stdin with --stdin; `task` is accepted for `context` there).""",
    )
    outcome.add_argument("pattern_id", nargs="?", metavar="PATTERN_ID")
    outcome.add_argument("quality", nargs="?", type=float, metavar="QUALITY")
    outcome.add_argument("--task", metavar="TEXT", help="the task the pattern was applied to")
    outcome.add_argument("--file", dest="files", action="append", metavar="PATH", default=None)
    outcome.add_argument("--tool", dest="tools", action="append", metavar="NAME", default=None)
    outcome.add_argument("--session", metavar="ID", help="session id ($ENGRAM_SESSION_ID)")
    outcome.add_argument(
        "--recommendation", metavar="ID", help="recommendation_id of the advice followed"
    )
    outcome.add_argument("--id", dest="record_id", metavar="ID", help="event id (default: new)")
    outcome.add_argument(
        "--project",
        metavar="NAME",
        help="project of outcomes that lack one (default: $ENGRAM_PROJECT, else the "
        "normalised git remote of the working directory, e.g. github.com/owner/repo, "
        "else 'default')",
    )
    for sub in (pattern, outcome):
        sub.add_argument("--stdin", action="store_true", help="read JSON Lines from stdin")
        sub.add_argument("--json", action="store_true", help="print the records as JSON")

    recommend = commands.add_parser(
        "recommend",
        parents=[db_parent],
        formatter_class=formatter,
        help="what to try for a task: a logged recommendation",
        description="""\
Recommend patterns to try for TASK, as a decision. Candidates, their relevance and
their Beta posteriors of success come from `engram predict`, updated with the outcomes
recorded since the last build; patterns recorded since the build that are close to the
task join too. Ranked by predict's relevance x success^exponent, with as success:
  best      the posterior mean (expected outcome)
  cautious  the lower end of the 90% credible interval (proven approaches)
  explore   one Thompson draw from each posterior (seeded; --seed replays it)
A candidate whose trend is declining (marts.pattern_trend_summary) gets a warning.
Each call gets a recommendation_id and is logged to the journal with the candidates
shown, their rank, score and the probability each strategy had of showing each first
(its propensity): cite the id in `engram record outcome --recommendation ID`, and the
marts recommendation_log / recommendation_outcomes / recommendation_impact measure
whether the advice helped. --no-log skips the journal entry.""",
        epilog='example: engram recommend "pytest fails only at midnight" --strategy explore',
    )
    recommend.add_argument("task", metavar="TASK")
    recommend.add_argument("-k", type=int, default=5, metavar="N", help="patterns (default 5)")
    recommend.add_argument("--strategy", choices=("best", "cautious", "explore"), default="best")
    recommend.add_argument("--seed", type=int, metavar="S", help="Thompson seed (default: new)")
    recommend.add_argument("--no-log", action="store_true", help="do not log to the journal")
    recommend.add_argument("--json", action="store_true", help="print JSON (for agents)")
    from engram.cli.questions import add_project_arguments

    add_project_arguments(
        recommend,
        "relevance from this project's own usage; success borrows from the other "
        "projects (column borrowed)",
    )

    mcp = commands.add_parser(
        "mcp",
        parents=[db_parent],
        formatter_class=formatter,
        help="serve engram to agents over MCP (stdio)",
        description="""\
Run an MCP server on stdin/stdout (the official MCP Python SDK) with the tools
recommend_patterns, find_similar_patterns, record_pattern, record_outcome,
pattern_trends and related_files. The model and the serving copy stay loaded between
calls; each call checks for a newly published build and switches to it. Writes go to
the journal, so they never wait for a build. Logs go to stderr; stdout is the protocol.
Register it with an MCP client as {"command": "engram", "args": ["mcp", "--db", PATH]}
(README "The agent loop").""",
    )
    del mcp

    simulate = commands.add_parser(
        "simulate",
        formatter_class=formatter,
        help="a synthetic agent runs the loop against planted truth; plots regret",
        description="""\
Show whether the loop learns. Generates planted data (`engram generate`: topics whose
best patterns are known), ingests and builds it under OUTDIR, then runs three agents on
copies of that warehouse over the same TASKS tasks (unseen phrasings of the topics):
recommend -> choose -> draw the outcome from the planted success rate of the choice ->
record it through the write path (citing the recommendation_id) -> rebuild every M
tasks. explore and best follow the first recommendation of that strategy; random picks
uniformly among the same candidates the strategies choose from (recommend's pool).
Prints the cumulative regret (planted success of the topic's best pattern minus the
chosen one's) and writes OUTDIR/regret.png and OUTDIR/simulation.json. Each agent's
warehouse (OUTDIR/agents/NAME) keeps its log, so `engram sql --db ... "select * from
marts.recommendation_impact"` shows the impact marts after its last rebuild. See
engram/cli/simulate.py for the planted success rates.""",
        epilog="example: engram simulate /tmp/sim --tasks 150 --rebuild-every 50",
    )
    simulate.add_argument("outdir", type=Path, metavar="OUTDIR")
    simulate.add_argument("--patterns", type=int, default=300, metavar="N")
    simulate.add_argument("--events", type=int, default=6000, metavar="M")
    simulate.add_argument("--seed", type=int, default=7, metavar="S")
    simulate.add_argument("--tasks", type=int, default=150, metavar="N", help="tasks per agent")
    simulate.add_argument(
        "--rebuild-every", type=int, default=50, metavar="M", help="0: never rebuild"
    )
    simulate.add_argument("-k", type=int, default=5, metavar="K", help="candidates shown")
    simulate.add_argument("--json", action="store_true", help="print the result as JSON")
    return {
        "record": cmd_record,
        "recommend": cmd_recommend,
        "mcp": cmd_mcp,
        "simulate": cmd_simulate,
    }


def _fail(args: argparse.Namespace, message: str, code: int = EXIT_USAGE) -> int:
    print(f"engram {args.command}: error: {message}", file=sys.stderr)
    return code


def cmd_record(args: argparse.Namespace) -> int:
    import orjson

    from engram.cli.output import dumps
    from engram.query import record as record_q
    from ingest.project_identity import current_project
    from ingest.warehouse import resolve_db_path

    db_path: Path = resolve_db_path(args.db)
    kind = args.kind
    try:
        if args.stdin:
            given = args.description if kind == "pattern" else args.pattern_id
            if given is not None:
                return _fail(args, "give either --stdin or the record's arguments, not both")
            project = current_project(args.project) if kind == "outcome" else None
            prepared, problems = record_q.check_json_lines(kind, sys.stdin, project)
            if problems:
                for problem in problems[:20]:
                    print(f"engram record {kind}: error: {problem}", file=sys.stderr)
                more = len(problems) - 20
                if more > 0:
                    print(f"  ... and {more} more", file=sys.stderr)
                return _fail(args, f"{len(problems)} bad line(s): nothing was written")
            written = record_q.write(db_path, prepared)
        elif kind == "pattern":
            if args.description is None:
                return _fail(args, "give DESCRIPTION (or --stdin)")
            metadata: Any = None
            if args.metadata is not None:
                try:
                    metadata = orjson.loads(args.metadata)
                except orjson.JSONDecodeError as exc:
                    return _fail(args, f"metadata: --metadata is not valid JSON: {exc}")
            written = [
                record_q.record_pattern(
                    db_path,
                    args.description,
                    pattern_type=args.pattern_type,
                    metadata=metadata,
                    pattern_id=args.record_id,
                )
            ]
        else:
            if args.pattern_id is None or args.quality is None:
                return _fail(args, "give PATTERN_ID and QUALITY (or --stdin)")
            written = [
                record_q.record_outcome(
                    db_path,
                    args.pattern_id,
                    args.quality,
                    task=args.task,
                    files=args.files,
                    tools=args.tools,
                    session_id=args.session,
                    recommendation_id=args.recommendation,
                    event_id=args.record_id,
                    project_id=current_project(args.project),
                )
            ]
    except record_q.InvalidRecord as exc:
        return _fail(args, str(exc))
    except OSError as exc:
        return _fail(args, f"cannot write the journal: {exc}", EXIT_FAILED)
    if args.json:
        print(dumps([r.to_dict() for r in written]))
    else:
        for item in written:
            print(item.id)
    return EXIT_OK


def cmd_recommend(args: argparse.Namespace) -> int:
    from engram.cli.output import dumps, frame_table
    from engram.cli.questions import run_with_memory
    from engram.query.errors import InvalidQuery, check_k, check_text

    try:
        check_k(args.k, "-k")
        check_text(args.task, "task")
    except InvalidQuery as exc:
        return _fail(args, str(exc))

    def body(memory: Any) -> int:
        result = memory.recommend(
            args.task,
            args.k,
            strategy=args.strategy,
            seed=args.seed,
            log=not args.no_log,
            project=args.project,
        )
        if args.json:
            print(dumps(result.to_dict()))
            return EXIT_OK
        columns = ["rank", "pattern_id", "score", "predicted_success", "ci_low"]
        columns += ["propensity", "pending_outcomes", "built"]
        columns += ["borrowed"] if (result.patterns["borrowed"] != "").any() else []
        columns += ["description"]
        print(frame_table(result.patterns, columns))
        for warning in result.warnings:
            print(f"warning: {warning}")
        for note in result.notes:
            print(f"note: {note}")
        logged = "not logged" if args.no_log else "logged to the journal"
        print(
            f"recommendation_id {result.recommendation_id} (strategy {result.strategy}, "
            f"seed {result.seed}; {logged})"
        )
        return EXIT_OK

    return run_with_memory(args, body)


def cmd_mcp(args: argparse.Namespace) -> int:
    from engram.cli.mcp_server import serve
    from ingest.warehouse import resolve_db_path

    serve(resolve_db_path(args.db))
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    import orjson

    from engram.build import build
    from engram.cli.output import dumps
    from engram.cli.simulate import plot, simulate
    from engram.generate import generate
    from ingest.loader import ingest_paths
    from ingest.progress import terminal_progress

    for value, name in ((args.patterns, "--patterns"), (args.events, "--events")):
        if value <= 0:
            return _fail(args, f"{name} must be a positive integer, got {value}")
    if args.tasks <= 0 or args.k <= 0 or args.rebuild_every < 0:
        return _fail(args, "--tasks and -k must be positive, --rebuild-every zero or more")
    outdir: Path = args.outdir
    data, base = outdir / "data", outdir / "base" / "engram.duckdb"
    print(f"generating {args.patterns} patterns / {args.events} events (seed {args.seed})")
    generate(data, args.patterns, args.events, seed=args.seed)
    if base.parent.exists():
        import shutil

        shutil.rmtree(base.parent)
    ingest_paths([data], base, progress=terminal_progress)
    print("building the starting warehouse (dbt)")
    build(base, capture=True)
    bar = terminal_progress(args.tasks * 3, "simulating")
    try:
        result = simulate(
            base,
            data / "truth.json",
            outdir / "agents",
            tasks=args.tasks,
            rebuild_every=args.rebuild_every,
            k=args.k,
            seed=args.seed,
            on_task=bar.update,
        )
    finally:
        bar.close()
    png = plot(result, outdir / "regret.png")
    (outdir / "simulation.json").write_bytes(orjson.dumps(result.to_dict()))
    if args.json:
        print(dumps(result.to_dict()))
        return EXIT_OK
    print("cumulative regret (lower is better)")
    print(result.table())
    means = ", ".join(f"{a} {m:.3f}" for a, m in result.mean_outcome.items())
    print(f"mean outcome: {means}; {result.builds} rebuilds")
    print(f"plot: {png}")
    return EXIT_OK
