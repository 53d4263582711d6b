"""`engram merge-patterns KEEP DROP...` and `engram unmerge DROP...`: record or revoke
merges in raw.pattern_supersessions (engram/merges.py). Input is never edited; the
marts count a dropped pattern's events toward the kept one from the next build on."""

from __future__ import annotations

import argparse
import sys

from engram.cli.questions import Handler
from ingest.warehouse import resolve_db_path


def add_parsers(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    db_parent: argparse.ArgumentParser,
    formatter: type[argparse.HelpFormatter],
) -> dict[str, Handler]:
    """Register merge-patterns and unmerge; returns name -> handler."""
    merge = commands.add_parser(
        "merge-patterns",
        parents=[db_parent],
        formatter_class=formatter,
        help="count DROP patterns' events toward KEEP in every mart (reversible)",
        description="""\
Record that each DROP pattern is superseded by KEEP (a row per DROP in
raw.pattern_supersessions). From the next `engram build` on, every mart counts the
DROP patterns' events toward KEEP: usage, success, trends, themes, predictions and
alerts; dim_patterns.superseded_by names KEEP on the dropped rows. Nothing is deleted
(the input and the dropped patterns stay), and `engram unmerge DROP` undoes it.

Refused, with nothing recorded: an unknown id, KEEP among the DROPs, a KEEP that was
itself merged away (merge into its keeper instead), a DROP already merged (unmerge it
first). `engram alerts --kind near_duplicate` suggests merges.""",
        epilog="example: engram merge-patterns p0000042 p0000107 p0000311 --reason duplicate",
    )
    merge.add_argument("keep", metavar="KEEP", help="the pattern to keep")
    merge.add_argument("drops", nargs="+", metavar="DROP", help="patterns merged into KEEP")
    merge.add_argument("--reason", metavar="TEXT", help="why (kept with the merge)")
    merge.add_argument(
        "--build", action="store_true", help="run `engram build` right after recording"
    )

    unmerge = commands.add_parser(
        "unmerge",
        parents=[db_parent],
        formatter_class=formatter,
        help="undo merge-patterns for DROP patterns (their events count for them again)",
        description="""\
Revoke the merge in force of each DROP pattern (sets revoked_at in
raw.pattern_supersessions; the record of the merge stays). From the next `engram
build` on, their events count toward themselves again. --list shows every merge
recorded, in force or revoked, newest first.""",
        epilog="example: engram unmerge p0000107; engram unmerge --list",
    )
    unmerge.add_argument("drops", nargs="*", metavar="DROP")
    unmerge.add_argument("--list", action="store_true", help="list the recorded merges")
    unmerge.add_argument(
        "--build", action="store_true", help="run `engram build` right after recording"
    )
    return {"merge-patterns": cmd_merge_patterns, "unmerge": cmd_unmerge}


def _rebuild_or_hint(args: argparse.Namespace) -> None:
    db_path = resolve_db_path(args.db)
    if args.build:
        from engram.build import build

        build(db_path)
        print("rebuilt: the marts now reflect the change")
    else:
        print("run `engram build` to recount the marts")


def cmd_merge_patterns(args: argparse.Namespace) -> int:
    from engram.merges import MergeError, merge_patterns

    try:
        records = merge_patterns(resolve_db_path(args.db), args.keep, args.drops, args.reason)
    except MergeError as exc:
        print(f"engram merge-patterns: error: {exc}", file=sys.stderr)
        return 2
    for record in records:
        print(f"merged {record.dropped_pattern_id} into {record.kept_pattern_id}")
    _rebuild_or_hint(args)
    return 0


def cmd_unmerge(args: argparse.Namespace) -> int:
    from engram.merges import MergeError, supersessions, unmerge

    db_path = resolve_db_path(args.db)
    if args.list:
        print("kept_pattern_id  dropped_pattern_id  recorded_at  revoked_at  reason")
        for row in supersessions(db_path):
            print("  ".join("-" if v is None else str(v) for v in row))
        return 0
    if not args.drops:
        print("engram unmerge: error: give DROP ids, or --list", file=sys.stderr)
        return 2
    try:
        records = unmerge(db_path, args.drops)
    except MergeError as exc:
        print(f"engram unmerge: error: {exc}", file=sys.stderr)
        return 2
    for record in records:
        print(f"unmerged {record.dropped_pattern_id} (was merged into {record.kept_pattern_id})")
    _rebuild_or_hint(args)
    return 0
