"""The `engram` command: a thin layer over the library, with manual-style help."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ingest.warehouse import DB_ENV_VAR, default_db_label, resolve_db_path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REJECTED = 0, 1, 2, 3

DESCRIPTION = """\
engram: a memory for coding agents that learns which approaches work.

Agents record patterns (a debugging approach, a fix recipe) and usage events (a pattern
used in a session, how well it went, which files and tools, the task text). engram loads
that log into a DuckDB warehouse, embeds the texts, and builds dbt marts that answer:
which patterns are similar, which are getting better or worse, which files travel
together, and what works for a kind of task.

Typical session:
  engram ingest logs/            validate, load and embed new records
  engram build                   run dbt: staging views, marts, and their tests
  engram report                  print the headline answers
"""

EPILOG = f"""\
The warehouse is one DuckDB file: --db PATH (before or after the command), else
${DB_ENV_VAR}, else {default_db_label()}. dbt reads the same variable (profiles.yml).
Run `engram COMMAND --help` for each command's manual.
"""


def _db_argument(parser: argparse.ArgumentParser, *, default: object) -> None:
    parser.add_argument(
        "--db",
        metavar="PATH",
        default=default,
        help=f"warehouse file (default: ${DB_ENV_VAR} or {default_db_label()})",
    )


def _db_parent() -> argparse.ArgumentParser:
    """--db on each command; SUPPRESS keeps a value given before the command."""
    parent = argparse.ArgumentParser(add_help=False)
    _db_argument(parent, default=argparse.SUPPRESS)
    return parent


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="engram", description=DESCRIPTION, epilog=EPILOG, formatter_class=formatter
    )
    from engram import __version__

    parser.add_argument("--version", action="version", version=f"engram {__version__}")
    _db_argument(parser, default=None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    db = _db_parent()

    ingest = commands.add_parser(
        "ingest",
        parents=[db],
        formatter_class=formatter,
        help="validate, load and embed pattern and event files",
        description="""\
Load patterns and usage events from JSON Lines (*.jsonl) or JSON array (*.json) files,
or folders of them (searched recursively). Records are patterns or events by file name
(patterns*, events*) or else by their fields; see README "Input contract".

Every record read is either loaded, skipped as already present (duplicate event id,
unchanged pattern, file ingested before) or rejected into raw.rejected_records with
the file, line, field and reason. A file that cannot be read at all (permission
denied, not UTF-8 text, ...) is listed in raw.rejected_files and the run goes on with
the next file. Each file is loaded in one transaction: an interrupted ingest leaves no
partial file, and running it again completes the work. Texts (pattern descriptions,
event contexts) are then embedded once each and cached.

The journal (what `engram record` and `engram mcp` wrote) is taken in too, after the
files: each journal line is loaded or quarantined exactly once, even after a kill.""",
        epilog="""\
exit status: 0 when something was read (even with rejections), 1 when nothing could
be read, 2 on a usage error, 3 with --strict when any record or file was rejected.""",
    )
    ingest.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="file or folder; none: take in only the journal (`engram record`)",
    )
    ingest.add_argument(
        "--strict", action="store_true", help="exit 3 if any record or file was rejected"
    )
    ingest.add_argument(
        "--no-embed",
        action="store_true",
        help="load only; texts are embedded later (engram build does it first)",
    )
    ingest.add_argument(
        "--quiet", action="store_true", help="print only the totals line and errors"
    )
    ingest.add_argument(
        "--project",
        metavar="NAME",
        help="project of events that lack a project_id (default: $ENGRAM_PROJECT, else the "
        "normalised git remote of the working directory, e.g. github.com/owner/repo, "
        "else 'default'); files, file pairs and predictions are kept per project",
    )

    build = commands.add_parser(
        "build",
        parents=[db],
        formatter_class=formatter,
        help="run dbt build (models and tests) on the warehouse",
        description="""\
Embed any texts not yet embedded, then run `dbt build` on the warehouse: staging views,
intermediate models, marts, and every dbt test. The same as `dbt build --profiles-dir .`
from the project root with ENGRAM_DB set to the warehouse.

A build after an ingest is incremental (README "Incremental builds"): new patterns and
task texts join existing paraphrase groups, themes and context clusters (ids stay), the
similar pairs of new patterns are merged in, and the expensive data tests check only the
rows loaded since the last build. dbt's unit tests (the models' SQL on fixed rows, which
the data cannot change) are skipped while the model code is the one they last passed
with in a build of this warehouse; a first build, --full-refresh and any build after the
code changed run them. A full re-cluster happens on --full-refresh or once more than
var('recluster_drift_share') (0.2) of the rows were placed incrementally.""",
    )
    build.add_argument("--select", metavar="SELECTOR", help="dbt node selection, e.g. +marts")
    build.add_argument(
        "--full-refresh",
        action="store_true",
        help="rebuild from scratch: re-cluster (fresh ids), recompute every similar pair, "
        "run every data test on every row and every unit test, rebuild the serving copy "
        "and its vector index",
    )

    compact = commands.add_parser(
        "compact",
        parents=[db],
        formatter_class=formatter,
        help="give back the disk space that builds left free in the warehouse file",
        description="""\
Write the warehouse's live data into a fresh file and put it in place of the old one.

A DuckDB file never shrinks by itself: each build replaces the marts it rebuilds and the
old tables' blocks stay in the file as free space (at 1M patterns / 10M events a full
build plus one refresh left 1.6 GiB of a 3.7 GiB file free). `engram build` compacts on
its own once free blocks pass half the file; this command does it now.

Safe to kill: the copy is written beside the warehouse, checked table by table (same
tables and views, same row counts) and only then renamed over it; a killed copy leaves
the warehouse as it was and its partial file is removed next time. Takes the writers'
lock, like a build, so it waits for nothing and fails clearly if a build or an ingest
holds the warehouse. Queries keep reading the serving copy meanwhile.""",
    )
    compact.add_argument(
        "--if-free-above",
        type=float,
        metavar="SHARE",
        help="compact only when free blocks exceed this share of the file (0..1); "
        "by default always",
    )

    report = commands.add_parser(
        "report",
        parents=[db],
        formatter_class=formatter,
        help="print the headline answers from the warehouse",
        description="""\
Row counts, the most-used patterns with their success rate, the most similar pattern
pairs, and, once built, improving and declining patterns, files that travel together,
the largest clusters, themes and alerts, and the prediction backtest. Opens the
warehouse read-only.""",
    )
    report.add_argument("--top", type=int, default=10, metavar="N", help="rows per section")

    rejects = commands.add_parser(
        "rejects",
        parents=[db],
        formatter_class=formatter,
        help="show quarantined records and why they were rejected",
        description="""\
List the records ingest quarantined in raw.rejected_records, newest first: the source
file, the line where the record starts, the offending field and the reason; then the
files that could not be read at all (raw.rejected_files). Nothing is lost: every record
read is loaded, skipped as already present, or listed here.""",
    )
    rejects.add_argument("--limit", type=int, default=20, metavar="N", help="rows to show")

    generate = commands.add_parser(
        "generate",
        formatter_class=formatter,
        help="write synthetic input files with planted structure",
        description="""\
Write OUTDIR/patterns.jsonl, OUTDIR/events.jsonl and OUTDIR/truth.json: contract-
conforming synthetic data with planted structure (topic families of paraphrased
patterns, per-topic best patterns, improving and declining patterns, file pairs that
travel together), for tests and benchmarks. Streams: 1M patterns / 10M events fit in
memory. The same arguments always give the same files.""",
    )
    generate.add_argument("outdir", type=Path, metavar="OUTDIR")
    generate.add_argument("--patterns", type=int, required=True, metavar="N")
    generate.add_argument("--events", type=int, required=True, metavar="M")
    generate.add_argument("--seed", type=int, default=0, metavar="S")
    generate.add_argument("--weeks", type=int, default=52, metavar="W", help="time span")

    from engram.cli.questions import add_parsers

    COMMANDS.update(add_parsers(commands, db, formatter))
    from engram.cli.embedding import add_parser as add_embedding_parser

    COMMANDS.update(add_embedding_parser(commands, db, formatter))
    from engram.cli import loop

    COMMANDS.update(loop.add_parsers(commands, db, formatter))
    from engram.cli import merges

    COMMANDS.update(merges.add_parsers(commands, db, formatter))
    from engram.cli import bundle

    COMMANDS.update(bundle.add_parsers(commands, db, formatter))
    return parser


def _positive(value: int, name: str) -> None:
    if value <= 0:
        raise UsageError(f"{name} must be a positive integer, got {value}")


class UsageError(Exception):
    pass


def cmd_ingest(args: argparse.Namespace) -> int:
    from ingest.loader import FileReport, ingest_paths
    from ingest.progress import terminal_progress
    from ingest.project_identity import current_project

    db_path = resolve_db_path(args.db)
    started = time.perf_counter()

    def show(report: FileReport) -> None:
        if args.quiet:
            return
        if report.file_rejected is not None:
            print(f"{report.name}: file rejected, nothing read: {report.file_rejected}")
            return
        status = "already ingested" if report.already_ingested else "loaded"
        print(
            f"{report.name}: read {report.read}, loaded {report.loaded}, "
            f"skipped {report.skipped}, rejected {report.rejected} ({status})"
        )
        for example in report.examples:
            print(f"  {report.path.name}: {example}", file=sys.stderr)
        if report.rejected > len(report.examples):
            print(
                f"  ... {report.rejected - len(report.examples)} more: `engram rejects`",
                file=sys.stderr,
            )

    result = ingest_paths(
        args.paths,
        db_path,
        embed=not args.no_embed,
        progress=terminal_progress,
        on_file=show,
        project=current_project(args.project),
    )
    read, loaded = result.total("read"), result.total("loaded")
    skipped, rejected = result.total("skipped"), result.total("rejected")
    files_rejected = len(result.files_rejected)
    unread = f", {_plural(files_rejected, 'file')} rejected" if files_rejected else ""
    print(
        f"total: {len(result.files)} files{unread}, read {read}, loaded {loaded}, "
        f"skipped {skipped}, rejected {rejected} -> {db_path} "
        f"({time.perf_counter() - started:.1f}s, run {result.run_id})"
    )
    if result.embed:
        print(
            f"embeddings: {result.embed.texts_embedded} texts embedded, "
            f"{result.embed.texts_cached} served from the cache ({result.embed.model})"
        )
    for report in result.files_rejected:
        print(f"  file rejected: {report.name}: {report.file_rejected}", file=sys.stderr)
    if result.nothing_read and not args.paths:
        print("nothing new in the journal")
        return EXIT_OK
    if result.nothing_read:
        print("error: no records could be read from the given paths", file=sys.stderr)
        return EXIT_FAILED
    if args.strict and result.anything_rejected:
        what = [_plural(rejected, "record")] if rejected else []
        what += [_plural(files_rejected, "file")] if files_rejected else []
        print(f"error: --strict and {' and '.join(what)} were rejected", file=sys.stderr)
        return EXIT_REJECTED
    return EXIT_OK


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def cmd_build(args: argparse.Namespace) -> int:
    from engram.build import build
    from ingest.progress import terminal_progress

    db_path = resolve_db_path(args.db)
    started = time.perf_counter()
    build(db_path, select=args.select, full_refresh=args.full_refresh, progress=terminal_progress)
    print(f"build finished in {time.perf_counter() - started:.1f}s -> {db_path}")
    return EXIT_OK


def cmd_compact(args: argparse.Namespace) -> int:
    from engram.compact import compact, free_share, maybe_compact

    db_path = _existing_db(args)
    if args.if_free_above is None:
        result = compact(db_path)
    else:
        if not 0 <= args.if_free_above <= 1:
            raise UsageError(f"--if-free-above must be in [0, 1], got {args.if_free_above}")
        result = maybe_compact(db_path, args.if_free_above)
        if result is None:
            share = free_share(db_path)
            print(f"{db_path}: {share:.0%} free, not above {args.if_free_above:.0%}: left as is")
            return EXIT_OK
    mib = 2**20
    print(
        f"{db_path}: {result.bytes_before / mib:,.1f} MiB -> {result.bytes_after / mib:,.1f} MiB "
        f"({result.free_bytes_before / mib:,.1f} MiB were free blocks; {result.tables} tables "
        f"checked) in {result.seconds:.1f}s"
    )
    return EXIT_OK


def _existing_db(args: argparse.Namespace) -> Path:
    db_path = resolve_db_path(args.db)
    if not db_path.exists():
        raise UsageError(
            f"no warehouse at {db_path}: run `engram ingest PATH` and `engram build` first "
            f"(or `make demo`), or point --db / ${DB_ENV_VAR} at one"
        )
    return db_path


def cmd_report(args: argparse.Namespace) -> int:
    from engram.cli.report import build_report

    _positive(args.top, "--top")
    for section in build_report(_existing_db(args), top=args.top):
        print(section.render())
        print()
    return EXIT_OK


def cmd_rejects(args: argparse.Namespace) -> int:
    from engram.render import format_table
    from ingest.warehouse import connect_for_read

    _positive(args.limit, "--limit")
    con = connect_for_read(_existing_db(args))
    try:
        total = con.execute("select count(*) from raw.rejected_records").fetchone()[0]  # type: ignore[index]
        rows = con.execute(
            """
            select source_file, line_number, coalesce(field, '-'), reason
            from raw.rejected_records order by rejected_at desc, source_file, line_number
            limit ?
            """,
            [args.limit],
        ).fetchall()
        # Warehouses made before raw.rejected_files existed do not have it (read-only here).
        has_files = con.execute(
            "select count(*) from information_schema.tables"
            " where table_schema = 'raw' and table_name = 'rejected_files'"
        ).fetchone()[0]  # type: ignore[index]
        file_rows: list[tuple[object, ...]] = []
        files_total = 0
        if has_files:
            files_total = con.execute("select count(*) from raw.rejected_files").fetchone()[0]  # type: ignore[index]
            file_rows = con.execute(
                """
                select source_file, coalesce(size_bytes::varchar, '-'), reason, run_id
                from raw.rejected_files order by rejected_at desc, source_file limit ?
                """,
                [args.limit],
            ).fetchall()
    finally:
        con.close()
    print(format_table(["file", "line", "field", "reason"], rows, max_width=90))
    print(f"{total} rejected records in all")
    if file_rows:
        print()
        print(format_table(["file", "bytes", "reason", "run"], file_rows, max_width=90))
    print(f"{files_total} rejected files (not read at all) in all")
    return EXIT_OK


def cmd_generate(args: argparse.Namespace) -> int:
    from engram.generate import generate
    from ingest.progress import terminal_progress

    _positive(args.patterns, "--patterns")
    if args.events < 0:
        raise UsageError(f"--events must be zero or more, got {args.events}")
    _positive(args.weeks, "--weeks")
    bar = terminal_progress(args.events, "generating events")
    try:
        summary = generate(
            args.outdir,
            args.patterns,
            args.events,
            seed=args.seed,
            weeks=args.weeks,
            progress=bar.update,
        )
    finally:
        bar.close()
    print(
        f"wrote {summary.n_patterns} patterns and {summary.n_events} events "
        f"({summary.n_distinct_contexts} distinct task texts) to {summary.outdir} "
        f"in {summary.seconds:.1f}s"
    )
    return EXIT_OK


COMMANDS = {
    "ingest": cmd_ingest,
    "build": cmd_build,
    "compact": cmd_compact,
    "report": cmd_report,
    "rejects": cmd_rejects,
    "generate": cmd_generate,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: known failures become one clear line on stderr and a non-zero exit."""
    import duckdb

    from engram.build import BuildError
    from engram.compact import CompactError
    from engram.project import ProjectNotFound
    from engram.query.errors import QueryError
    from ingest.reader import InputError
    from ingest.warehouse import WarehouseError

    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (UsageError, InputError, ValueError) as exc:  # incl. EmbeddingConfigError
        print(f"engram {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (BuildError, CompactError, WarehouseError, QueryError, ProjectNotFound) as exc:
        print(f"engram {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except duckdb.Error as exc:  # a full disk, a corrupt file: the run failed, not the input
        print(f"engram {args.command}: database error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"engram {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
