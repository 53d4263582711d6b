"""`engram export [--project P] OUT` and `engram import BUNDLE`: move memory between
warehouses (machines) without re-ingesting or re-embedding (ingest/bundle.py)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from engram.cli.questions import Handler
from ingest.warehouse import resolve_db_path

EXIT_OK, EXIT_FAILED, EXIT_REJECTED = 0, 1, 3


def add_parsers(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    db_parent: argparse.ArgumentParser,
    formatter: type[argparse.HelpFormatter],
) -> dict[str, Handler]:
    """Register export and import; returns name -> handler."""
    export = commands.add_parser(
        "export",
        parents=[db_parent],
        formatter_class=formatter,
        help="write the warehouse's memory (or one project's) as a portable bundle",
        description="""\
Write a bundle: the folder OUT holding Parquet files of the patterns, the usage events
(files, tools, task text, outcome, time, project), the merges (engram merge-patterns)
and the embeddings of every exported text under their model:backend tag, plus
manifest.json (format version, engram version, model tag, row counts, size and sha256
of each file, created_at, the projects). `engram import OUT` on another machine loads
it without re-embedding anything.

With --project P only P's events are exported, with the patterns they use and the
merges of those patterns. The warehouse is opened read-only; every text must already be
embedded (run `engram build` first). The bundle is written under a temporary name and
renamed at the end, so an interrupted export leaves no half bundle.""",
        epilog="example: engram export --project github.com/pallets/flask flask-memory",
    )
    export.add_argument("out", type=Path, metavar="OUT", help="the bundle folder to create")
    export.add_argument("--project", metavar="P", help="export only this project's events")
    export.add_argument("--force", action="store_true", help="replace a bundle already at OUT")

    load = commands.add_parser(
        "import",
        parents=[db_parent],
        formatter_class=formatter,
        help="load a bundle written by `engram export` (never overwrites)",
        description="""\
Load a bundle into this warehouse (created if missing). Checks first, writing nothing
if any check fails: the manifest, each file's size, sha256 and row count (a corrupted
file is named), and the model tag of the vectors.

Every row goes through ingest's input contract; a row that breaks it is quarantined in
raw.rejected_records. A record whose id is new is loaded; one already present with the
same content is skipped, so importing twice adds nothing; one present with DIFFERENT
content is a conflict: the warehouse's row is kept, the bundle's row is quarantined in
raw.rejected_records with the reason, and the conflicts are listed. Everything is
published in one transaction with the run's accounting (raw.ingest_runs,
raw.ingested_files): a killed import leaves nothing behind, and running it again does it
all.

Vectors with the warehouse's model tag (or into an empty warehouse) are loaded as they
are, so nothing is re-embedded; another tag of the same family (torch and onnx-fp32) is
relabelled; another family is refused unless --re-embed, which embeds the bundle's
texts here instead. Run `engram build` afterwards to update the marts.""",
        epilog="""\
exit status: 0 when the bundle was loaded (even with conflicts), 1 when it could not be
(corrupted, incompatible vectors, warehouse busy), 3 with --strict when any row was
rejected or in conflict.
example: engram import flask-memory && engram build""",
    )
    load.add_argument("bundle", type=Path, metavar="BUNDLE", help="a folder `engram export` wrote")
    load.add_argument(
        "--re-embed",
        action="store_true",
        help="ignore the bundle's vectors and embed its texts with this warehouse's model",
    )
    load.add_argument(
        "--strict", action="store_true", help="exit 3 if any row was rejected or in conflict"
    )
    return {"export": cmd_export, "import": cmd_import}


def cmd_export(args: argparse.Namespace) -> int:
    from ingest.bundle import (
        EMBEDDINGS,
        EVENTS,
        PATTERNS,
        SUPERSESSIONS,
        BundleError,
        export_bundle,
    )

    db_path = resolve_db_path(args.db)
    started = time.perf_counter()
    try:
        result = export_bundle(db_path, args.out, project=args.project, force=args.force)
    except BundleError as exc:
        print(f"engram export: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    manifest = result.manifest
    print(
        f"exported {result.rows(PATTERNS)} patterns, {result.rows(EVENTS)} events, "
        f"{result.rows(SUPERSESSIONS)} merges and {result.rows(EMBEDDINGS)} vectors "
        f"({manifest['model'] or 'no vectors'}) of "
        f"{', '.join(manifest['projects']) or 'no project'} -> {result.out} "
        f"({time.perf_counter() - started:.1f}s)"
    )
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from ingest.bundle import BundleError, import_bundle
    from ingest.progress import terminal_progress

    db_path = resolve_db_path(args.db)
    started = time.perf_counter()
    try:
        report = import_bundle(
            args.bundle, db_path, re_embed=args.re_embed, progress=terminal_progress
        )
    except BundleError as exc:
        print(f"engram import: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for table in report.tables.values():
        status = " (already imported)" if table.already_imported else ""
        print(
            f"{table.name}: read {table.read}, loaded {table.loaded}, skipped {table.skipped}, "
            f"rejected {table.invalid}, conflicts {table.conflicts}{status}"
        )
        for example in table.examples:
            print(f"  {table.name}: {example}", file=sys.stderr)
        if table.rejected > len(table.examples):
            print(
                f"  ... {table.rejected - len(table.examples)} more: `engram rejects`",
                file=sys.stderr,
            )
    if report.texts_embedded:
        vectors = f"{report.texts_embedded} texts embedded here ({report.model})"
    else:
        vectors = (
            f"{report.vectors_loaded} vectors loaded, {report.vectors_cached} already here "
            f"({report.model or 'none in the bundle'}), 0 texts embedded"
        )
    print(
        f"total: read {report.total('read')}, loaded {report.total('loaded')}, "
        f"skipped {report.total('skipped')}, rejected {report.total('invalid')}, "
        f"conflicts {report.total('conflicts')}; {vectors} -> {db_path} "
        f"({time.perf_counter() - started:.1f}s, run {report.run_id})"
    )
    print("run `engram build` to update the marts")
    _warn_if_build_would_re_embed(report.model)
    if args.strict and report.total("rejected"):
        print(
            f"error: --strict and {report.total('rejected')} rows were rejected or in conflict",
            file=sys.stderr,
        )
        return EXIT_REJECTED
    return EXIT_OK


def _warn_if_build_would_re_embed(model: str | None) -> None:
    """`engram build` embeds with this machine's backend, and the cache is keyed by exact
    tag: vectors imported under another tag would all be embedded again. Say so, and how
    to keep them."""
    from ingest.embedder import Embedder, tag_backend

    local = Embedder().tag
    if model is None or model == local:
        return
    print(
        f"note: the vectors are tagged {model} but this machine embeds with {local}, so "
        f"`engram build` would embed every text again; set ENGRAM_EMBEDDING_BACKEND="
        f"{tag_backend(model) or '...'} to keep using the imported vectors",
        file=sys.stderr,
    )
