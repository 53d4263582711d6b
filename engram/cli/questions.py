"""`engram similar | predict | trends | files | clusters | alerts | themes | sql | evaluate`:
thin handlers over Memory.

Tables for people by default, `--json` for agents. Errors are one line on stderr:
exit 2 for a wrong question (empty text, k <= 0, unknown id), 1 when it cannot be
answered (no warehouse, mart not built, bad SQL). Index warnings go to stderr too.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

Handler = Callable[[argparse.Namespace], int]


def _k(parser: argparse.ArgumentParser, default: int = 10, name: str = "-k") -> None:
    parser.add_argument(
        name, type=int, default=default, metavar="N", help=f"rows (default {default})"
    )


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON (for agents) not a table")


PROJECT_HELP = """\
whose memory answers (default: the current project: $ENGRAM_PROJECT, else the git
remote of the working directory normalised to host/owner/repo, e.g.
github.com/pallets/flask, else 'default'; the pooled view when the warehouse holds
one project only or none of the current one). '*' = every project pooled"""


def add_project_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """--project NAME and --all-projects (= --project '*'), for questions kept per
    project (README "Projects")."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--project", metavar="NAME", help=f"{what}: {PROJECT_HELP}")
    group.add_argument(
        "--all-projects",
        dest="project",
        action="store_const",
        const="*",
        help="the cross-project view (same as --project '*')",
    )


def add_parsers(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    db_parent: argparse.ArgumentParser,
    formatter: type[argparse.HelpFormatter],
) -> dict[str, Handler]:
    """Register the query subcommands on `engram`'s subparsers; returns name -> handler."""
    reads = """
Reads the published serving copy (read-only), so it answers while ingest or build
write the warehouse; before the first publish it reads the warehouse read-only."""
    similar = commands.add_parser(
        "similar",
        parents=[db_parent],
        formatter_class=formatter,
        help="patterns closest in meaning to a text",
        description=f"""\
Patterns whose descriptions are closest in meaning to TEXT (cosine similarity of
all-MiniLM-L6-v2 embeddings), best first, with their success rate (mean outcome
quality), usage count and cluster label. Uses the IVF index at scale, exact search
when the data is small or the index is stale.{reads}""",
        epilog='example: engram similar "test fails only around midnight" -k 5',
    )
    similar.add_argument("text", metavar="TEXT")
    _k(similar)
    _json(similar)

    predict = commands.add_parser(
        "predict",
        parents=[db_parent],
        formatter_class=formatter,
        help="patterns that fit a task and work, best first, with why",
        description=f"""\
The patterns that fit the task described by TEXT and work, best first: each known
pattern is scored relevance x predicted_success^4 (README "How predict ranks").

  relevance          how likely the pattern is the one used for tasks like this: a
                     kernel-weighted vote of the 80 nearest past task texts, smoothed
                     toward its usage in their context clusters and overall
  predicted_success  Beta-binomial shrinkage of its outcomes in those clusters toward
                     its own mean and the global mean, with a 90% interval
                     ci_low..ci_high and effective_n

Each row also has vote_share, the events behind it (n_events in the task's clusters,
n_context_events among the nearest texts, usage_count), nearest_tasks (past texts
that used it) and fallback: "" when the nearest texts voted for it, "cluster" or
"global" when only the wider evidence did. -k N returns N rows whenever N patterns
exist. The nearest texts and the context clusters are listed below the rows.{reads}""",
        epilog='example: engram predict "tokio refuses to spawn my future" -k 5 --json',
    )
    predict.add_argument("text", metavar="TASK_TEXT")
    _k(predict)
    predict.add_argument(
        "--rank-by",
        choices=("mean", "lower"),
        default="mean",
        help="posterior mean (default) or the interval's lower bound (risk-averse)",
    )
    add_project_arguments(
        predict,
        "relevance from this project's own usage; success borrows from the other "
        "projects (column borrowed)",
    )
    _json(predict)

    trends = commands.add_parser(
        "trends",
        parents=[db_parent],
        formatter_class=formatter,
        help="patterns getting better or worse; one pattern's weekly history",
        description=f"""\
Without PATTERN_ID: the patterns whose weekly mean quality rises or falls most steeply
(marts.pattern_trend_summary, direction improving/declining). With PATTERN_ID: its
last N weeks from marts.pattern_trends and its trend summary.{reads}""",
    )
    trends.add_argument("pattern_id", nargs="?", metavar="PATTERN_ID")
    trends.add_argument("--weeks", type=int, default=12, metavar="N", help="weeks (default 12)")
    _k(trends, 10, "--top")
    _json(trends)

    files = commands.add_parser(
        "files",
        parents=[db_parent],
        formatter_class=formatter,
        help="files that travel together, and how those combinations fare",
        description=f"""\
With FILE: the files most often touched in the same usage event as FILE, with the
mean quality of those events, lift over the files' own quality, and the trend.
Without FILE: the strongest pairs overall (marts.file_cooccurrence).{reads}""",
    )
    files.add_argument("file", nargs="?", metavar="FILE")
    _k(files, 20, "--top")
    add_project_arguments(files, "pairs of this project (a path is a file within one project)")
    _json(files)

    clusters = commands.add_parser(
        "clusters",
        parents=[db_parent],
        formatter_class=formatter,
        help="the largest clusters of patterns by meaning",
        description=f"""\
Pattern clusters (marts.pattern_clusters) by size with their labels and mean success;
--cluster ID lists a cluster's members, nearest its centroid first.{reads}""",
    )
    clusters.add_argument("--cluster", type=int, metavar="ID", help="list this cluster's members")
    _k(clusters, 20, "--top")
    _json(clusters)

    alerts = commands.add_parser(
        "alerts",
        parents=[db_parent],
        formatter_class=formatter,
        help="what to merge, replace, retire or promote in the pattern library",
        description=f"""\
One row per actionable finding (marts.pattern_alerts), most urgent kind first:
  declining       quality falls significantly (|t| >= trend_min_abs_t); names the
                  replacement: the pattern of the same theme with the best expected
                  quality (>= 5 events), if that beats what it does lately
  near_duplicate  another pattern of its paraphrase group has cosine >= 0.92
                  (near_duplicate_similarity) and more events: keep that one (the
                  message gives the `engram merge-patterns` command)
  stale           unused for stale_weeks (8) weeks while its theme is still used
  rising          quality improves significantly: promote it
  unproven        shown first (rank 1) by >= 5 recommendations
                  (unproven_min_recommendations) but used fewer than 3 times
                  (unproven_max_uses) since the first: try it deliberately or stop
                  recommending it; none while the recommendation log is empty
Each row has the evidence (slope, t, events, cosine, weeks) and a sentence to act
on. Thresholds are dbt vars (dbt_project.yml). "Now" is the newest event in the
data, so the same data always gives the same alerts.{reads}""",
        epilog="example: engram alerts --kind declining --json",
    )
    alerts.add_argument(
        "--kind",
        choices=("declining", "near_duplicate", "stale", "rising", "unproven"),
        help="only this kind of alert",
    )
    _k(alerts, 20, "--top")
    _json(alerts)

    themes = commands.add_parser(
        "themes",
        parents=[db_parent],
        formatter_class=formatter,
        help="themes (kinds of problem) with their approaches, success and trend",
        description=f"""\
Themes (marts.pattern_themes): patterns grouped by kind of problem, a coarser cut
than the paraphrase groups (one approach in other words) they contain. Each theme
has a label (its most central description plus its most distinctive terms), its
size, how many paraphrase groups (approaches) it holds, its members' usage and
success, and its own weekly quality trend. With THEME_ID: the theme's patterns, with
their paraphrase group, usage, success and any merge.{reads}""",
        epilog="example: engram themes; engram themes th_2ced1531bad2 --json",
    )
    themes.add_argument("theme_id", nargs="?", metavar="THEME_ID")
    _k(themes, 20, "--top")
    _json(themes)

    sql = commands.add_parser(
        "sql",
        parents=[db_parent],
        formatter_class=formatter,
        help="run read-only SQL on the marts (with embed('text'))",
        description=f"""\
Run QUERY against the serving copy (schemas marts, staging, intermediate, serving).
embed('text') returns the text's FLOAT[384] embedding, so
  order by array_cosine_similarity(embedding, embed('...')) desc
searches by meaning. The copy is opened read-only: writes fail.{reads}""",
        epilog="""\
example: engram sql "select pattern_id, description from marts.dim_patterns
  order by array_cosine_similarity(embedding, embed('flaky test')) desc limit 5" """,
    )
    sql.add_argument("query", metavar="QUERY")
    sql.add_argument("--max-rows", type=int, default=200, metavar="N", help="rows to print")
    _json(sql)

    evaluate = commands.add_parser(
        "evaluate",
        parents=[db_parent],
        formatter_class=formatter,
        help="walk-forward check: would predict have recommended what worked?",
        description=f"""\
Walk forward in time over the newest FRACTION of usage events (--holdout, default
5%). Each held-out event is predicted from events strictly earlier than it: usage
counts, success shrinkage and the past task texts predict draws on are rebuilt as
they stood then, and the same ranking code as `engram predict` ranks every pattern
for the event's task text. Scored, for the pattern actually used:

  hit@1, hit@5, MRR   over held-out events with a task text and outcome_quality >=
                      --min-quality (default 0.9: the pattern worked); 0 when the
                      pattern had never been used before
  Brier, skill        of the success estimate, over every held-out event, and its
                      skill 1 - Brier/Brier(global mean so far)

Baselines, in the same run from the same past: most_used (by event count),
nearest_10_vote (cosine-weighted vote of the 10 nearest past task texts, padded by
usage), global_success (each pattern's shrunk success rate; its Brier is that of
the pattern's own mean). Context clusters come from the texts alone (no outcomes).
See README "How predict ranks" for the model and the figures on real histories.{reads}""",
        epilog="example: engram evaluate --holdout 0.1 --min-quality 0.9 --json",
    )
    evaluate.add_argument(
        "--holdout",
        type=float,
        default=0.05,
        metavar="FRACTION",
        help="newest share of events to predict (default 0.05)",
    )
    evaluate.add_argument(
        "--min-quality",
        type=float,
        default=0.9,
        metavar="Q",
        help="outcome_quality at which a used pattern counts as the answer (default 0.9)",
    )
    evaluate.add_argument(
        "--events", action="store_true", help="also print (or include) the per-event rows"
    )
    add_project_arguments(
        evaluate,
        "hold out and learn from this project's events; its success borrows from the "
        "other projects' earlier events unless --no-sharing",
    )
    evaluate.add_argument(
        "--no-sharing",
        action="store_true",
        help="with a project: the project alone, as if it had its own warehouse",
    )
    _json(evaluate)
    return {
        "similar": cmd_similar,
        "predict": cmd_predict,
        "trends": cmd_trends,
        "files": cmd_files,
        "clusters": cmd_clusters,
        "alerts": cmd_alerts,
        "themes": cmd_themes,
        "sql": cmd_sql,
        "evaluate": cmd_evaluate,
    }


def run_with_memory(args: argparse.Namespace, body: Callable[[Any], int]) -> int:
    """Open Memory and run body with the question commands' error handling (for the
    loop's commands, engram/cli/loop.py)."""
    return _run(args, body)


def _run(args: argparse.Namespace, body: Callable[[Any], int]) -> int:
    """Open Memory, run body, turn known errors and index warnings into one-line messages."""
    import duckdb

    from engram.query.errors import InvalidQuery, QueryError
    from engram.query.memory import Memory

    name = f"engram {args.command}"
    memory = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                memory = Memory(args.db)
                return body(memory)
            finally:
                for warning in caught:
                    print(f"{name}: warning: {warning.message}", file=sys.stderr)
    except InvalidQuery as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except QueryError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # `engram ... | head`: stop quietly
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return EXIT_OK
    except duckdb.Error as exc:
        print(f"{name}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if memory is not None:
            memory.close()


def _validated(args: argparse.Namespace, checks: list[tuple[int, str]], texts: list[str]) -> int:
    """Usage errors caught before opening anything (fast, and with no warehouse needed)."""
    from engram.query.errors import InvalidQuery, check_k, check_text

    try:
        for value, flag in checks:
            check_k(value, flag)
        for attr in texts:
            check_text(getattr(args, attr), attr)
    except InvalidQuery as exc:
        print(f"engram {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


# ---------------------------------------------------------------------- handlers


def _emit(
    args: argparse.Namespace,
    frame: Any,
    columns: list[str] | None = None,
    max_rows: int = 1000,
    json_drop: tuple[str, ...] = (),
) -> int:
    """One frame out: JSON records with --json (less the `json_drop` columns), else a
    table of `columns`."""
    from engram.cli.output import dumps, frame_table, json_records

    if args.json:
        print(dumps(json_records(frame.drop(columns=list(json_drop), errors="ignore"))))
    else:
        print(frame_table(frame, columns, max_rows=max_rows))
    return EXIT_OK


def cmd_similar(args: argparse.Namespace) -> int:
    if _validated(args, [(args.k, "-k")], ["text"]):
        return EXIT_USAGE

    def body(memory: Any) -> int:
        frame = memory.find_similar(args.text, args.k)
        columns = ["pattern_id", "similarity", "success_rate", "usage_count"]
        columns += ["cluster_label", "description"]
        return _emit(args, frame, columns, json_drop=("metadata",))

    return _run(args, body)


def cmd_predict(args: argparse.Namespace) -> int:
    from engram.cli.output import dumps, frame_table

    if _validated(args, [(args.k, "-k")], ["text"]):
        return EXIT_USAGE

    def body(memory: Any) -> int:
        prediction = memory.predict(args.text, args.k, rank_by=args.rank_by, project=args.project)
        if args.json:
            result = prediction.to_dict()
            for row in result["predictions"]:
                row.pop("metadata", None)
            print(dumps(result))
            return EXIT_OK
        print(
            frame_table(
                prediction.patterns,
                [
                    "rank",
                    "pattern_id",
                    "score",
                    "relevance",
                    "predicted_success",
                    "ci_low",
                    "ci_high",
                    "n_events",
                    "n_context_events",
                    "fallback",
                    *(["borrowed"] if "borrowed" in prediction.patterns else []),
                    "description",
                ],
            )
        )
        if prediction.project is not None:
            print(f"project: {prediction.project} (success borrows from the other projects)")
        print("\nevidence: nearest past task texts (weight = exp(-(1 - similarity) / h))")
        print(
            frame_table(
                prediction.evidence,
                ["similarity", "weight", "n_events", "context_cluster_id", "context"],
            )
        )
        if len(prediction.clusters):
            print("\ncontext clusters of the task (share of the mix)")
            print(frame_table(prediction.clusters, ["context_cluster_id", "weight", "label"]))
        for note in prediction.notes:
            print(f"note: {note}")
        return EXIT_OK

    return _run(args, body)


def cmd_trends(args: argparse.Namespace) -> int:
    from engram.cli.output import dumps, frame_table, json_records

    if _validated(args, [(args.weeks, "--weeks"), (args.top, "--top")], []):
        return EXIT_USAGE

    def body(memory: Any) -> int:
        if args.pattern_id is None:
            return _emit(args, memory.trend_summary(top=args.top))
        weekly = memory.trends(args.pattern_id, args.weeks)
        summary = memory.trend_summary(args.pattern_id)
        if args.json:
            print(dumps({"summary": json_records(summary), "weeks": json_records(weekly)}))
        else:
            print(frame_table(summary))
            print()
            print(frame_table(weekly))
        return EXIT_OK

    return _run(args, body)


def cmd_files(args: argparse.Namespace) -> int:
    if _validated(args, [(args.top, "--top")], []):
        return EXIT_USAGE

    def body(memory: Any) -> int:
        return _emit(args, memory.files(args.file, args.top, project=args.project))

    return _run(args, body)


def cmd_clusters(args: argparse.Namespace) -> int:
    if _validated(args, [(args.top, "--top")], []):
        return EXIT_USAGE

    def body(memory: Any) -> int:
        if args.cluster is None:
            frame = memory.clusters(args.top)
        else:
            frame = memory.cluster_members(args.cluster, args.top)
        return _emit(args, frame)

    return _run(args, body)


def cmd_alerts(args: argparse.Namespace) -> int:
    if _validated(args, [(args.top, "--top")], []):
        return EXIT_USAGE

    def body(memory: Any) -> int:
        from engram.cli.output import frame_table

        frame = memory.alerts(args.top, args.kind)
        if args.json:
            return _emit(args, frame)
        # the message is the point, so it is printed whole below a short table
        frame = frame.assign(n=range(1, len(frame) + 1))
        print(frame_table(frame, ["n", "kind", "pattern_id", "related_pattern_id", "evidence"]))
        for n, message in zip(frame["n"], frame["message"], strict=True):
            print(f"{n:>3}. {message}")
        return EXIT_OK

    return _run(args, body)


def cmd_themes(args: argparse.Namespace) -> int:
    if _validated(args, [(args.top, "--top")], []):
        return EXIT_USAGE

    def body(memory: Any) -> int:
        if args.theme_id is None:
            return _emit(args, memory.themes(args.top))
        return _emit(args, memory.theme_members(args.theme_id, args.top))

    return _run(args, body)


def cmd_sql(args: argparse.Namespace) -> int:
    if _validated(args, [(args.max_rows, "--max-rows")], ["query"]):
        return EXIT_USAGE

    def body(memory: Any) -> int:
        return _emit(args, memory.sql(args.query), max_rows=args.max_rows)

    return _run(args, body)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from engram.cli.output import dumps, frame_table, json_records

    if not 0.0 < args.holdout < 1.0:
        print(
            f"engram evaluate: error: --holdout must be a fraction in (0, 1), got {args.holdout}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if not 0.0 <= args.min_quality <= 1.0:
        print(
            f"engram evaluate: error: --min-quality must be in [0, 1], got {args.min_quality}",
            file=sys.stderr,
        )
        return EXIT_USAGE

    def progress(done: int, total: int) -> None:
        if done == total or done % 200 == 0:
            print(f"engram evaluate: {done}/{total} held-out events", file=sys.stderr)

    def body(memory: Any) -> int:
        from engram.query.evaluate import evaluate
        from engram.query.predict import ranking_params, resolve_project

        project, notes = resolve_project(memory, args.project)
        result = evaluate(
            memory,
            args.holdout,
            args.min_quality,
            ranking_params(),
            progress=progress if sys.stderr.isatty() else None,
            project=project,
            share=not args.no_sharing,
        )
        result.notes[:0] = notes
        if args.json:
            out = result.to_dict()
            if args.events:
                out["events"] = json_records(result.per_event)
            print(dumps(out))
            return EXIT_OK
        counts = result.counts
        if project is not None:
            sharing = "alone" if args.no_sharing else "borrowing from the other projects"
            print(f"project: {project} ({sharing})")
        print(
            f"walk-forward over the newest {args.holdout:.0%} of {counts['events']} events: "
            f"{counts['held_out']} held out, {counts['ranked']} ranked "
            f"(task text, quality >= {args.min_quality}), {counts['brier_events']} for Brier"
        )
        print(frame_table(result.metrics))
        if args.events:
            print()
            print(frame_table(result.per_event))
        for note in result.notes:
            print(f"note: {note}")
        return EXIT_OK

    return _run(args, body)
