"""Move memory between warehouses: `export_bundle` writes a bundle, `import_bundle` loads one.

A bundle is a directory of Parquet files plus `manifest.json`:

    patterns.parquet               the patterns the exported events use (or all of them)
    usage_events.parquet           events: files, tools, task text, outcome, time, project
    pattern_supersessions.parquet  merges (`engram merge-patterns`) touching those patterns
    embeddings.parquet             the vectors of every exported text, under one model tag
    manifest.json                  format version, engram version, model tag, row counts,
                                   sha256 and size of each file, created_at, projects

Why a directory of Parquet: DuckDB's COPY writes and reads it streaming (the warehouse is
never held in Python memory), any tool can read it, and a checksum per file lets a
corrupted file be named. The export is written beside OUT under a temporary name and
renamed into place at the end, so an interrupted export leaves no half bundle.

Importing goes through ingest's contract (`validate_pattern`, `validate_event`) row by
row, in Parquet batches, staged in a scratch DuckDB file beside the warehouse (as the
loader does), then published into raw.* in ONE transaction with the ledger rows: a kill
leaves nothing of the bundle, and a re-run does it all. Unlike `engram ingest`, which
replaces a pattern whose JSON changed (the log is the source of truth), an import never
overwrites: a record whose id is already in the warehouse with different content is a
conflict, quarantined in raw.rejected_records with the reason (the warehouse's row is
kept) and reported. Identical records are skipped, so re-importing adds nothing.

Vectors travel with their model:backend tag (ingest.embedder.make_tag). They are loaded
as they are when the warehouse has no vectors yet or uses the same tag; relabelled with
the warehouse's tag when it is another tag of the same family (interchangeable vectors,
see `compatible`); refused when the families differ, unless `re_embed` asks for the
bundle's texts to be embedded here instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from ingest import __version__
from ingest.contract import (
    MAX_ID_CHARS,
    Rejected,
    storable_text,
    validate_event,
    validate_pattern,
)
from ingest.embedder import EMBEDDING_DIM, Embedder, compatible, tag_backend
from ingest.embeddings import TEXTS_SQL, embed_missing
from ingest.loader import remove_stale_scratch, scratch_path
from ingest.progress import ProgressFactory
from ingest.warehouse import connect_for_read, connect_for_write, sql_string

FORMAT = "engram-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PATTERNS, EVENTS, SUPERSESSIONS, EMBEDDINGS = (
    "patterns.parquet",
    "usage_events.parquet",
    "pattern_supersessions.parquet",
    "embeddings.parquet",
)
DATA_FILES = (PATTERNS, EVENTS, SUPERSESSIONS, EMBEDDINGS)
# The files whose rows are records (counted read = loaded + skipped + rejected, with a
# ledger row in raw.ingested_files); vectors are a cache and counted apart.
RECORD_FILES = {PATTERNS: "pattern", EVENTS: "event", SUPERSESSIONS: "supersession"}
BATCH_ROWS = 20_000
PROGRESS_MIN_ROWS = 200_000  # a bar per file past this many rows
MAX_EXAMPLES = 5
IMPORT_MEMORY_LIMIT = "256MB"

# A hook called inside the publish transaction after each step (tests kill the process
# there to prove a kill leaves no half bundle).
StepHook = Callable[[str], None]


class BundleError(Exception):
    """The bundle cannot be written or read as asked; the message names the file and why."""


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def file_digest(path: Path) -> str:
    """sha256 hex of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------ export


@dataclass
class ExportReport:
    out: Path
    manifest: dict[str, Any]

    def rows(self, name: str) -> int:
        return int(self.manifest["files"][name]["rows"])


def active_model(con: duckdb.DuckDBPyConnection) -> str | None:
    """The tag the marts read (macros/active_embedding_model.sql, said once more in Python
    because export and import run without dbt): the newest embed pass's tag, else the
    newest vector's, else None for a warehouse never embedded."""
    row = con.execute(
        """
        select model from (
            select model, finished_at as happened_at, 1 as priority from raw.embedding_runs
            union all
            select model, embedded_at, 2 from raw.embeddings
        ) order by priority, happened_at desc, model limit 1
        """
    ).fetchone()
    return str(row[0]) if row else None


def projects(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The project ids the warehouse's events carry."""
    return [
        str(r[0])
        for r in con.execute(
            "select distinct project_id from raw.usage_events order by 1"
        ).fetchall()
    ]


def _export_queries(project: str | None, model: str | None) -> dict[str, tuple[str, list[Any]]]:
    """file -> (select, parameters). With a project: its events, the patterns they use,
    the merges of those patterns and the patterns those merges keep.

    Rows keep the warehouse's own order (rowid), and import keeps the bundle's: the marts
    of the copy then sum in the same order as the original's, so even statistics that are
    pure rounding (the t of a flat line) come out the same."""
    event_filter = "where project_id = ?" if project is not None else ""
    event_params: list[Any] = [project] if project is not None else []
    events = f"select * from raw.usage_events {event_filter}"
    if project is None:
        wanted_patterns = "select pattern_id from raw.patterns"
        merge_filter = ""
        pattern_params: list[Any] = []
    else:
        merge_filter = f"where dropped_pattern_id in (select pattern_id from ({events}))"
        wanted_patterns = f"""
            select pattern_id from ({events})
            union select kept_pattern_id from raw.pattern_supersessions {merge_filter}
        """
        pattern_params = [project, project]
    texts = f"""
        select description_hash as text_hash from raw.patterns
        where pattern_id in ({wanted_patterns})
        union
        select context_hash from ({events}) where context_hash is not null
    """
    return {
        PATTERNS: (
            f"""
            select pattern_id, description, pattern_type, first_seen,
                   metadata::varchar as metadata
            from raw.patterns where pattern_id in ({wanted_patterns}) order by rowid
            """,
            pattern_params,
        ),
        EVENTS: (
            f"""
            select event_id, pattern_id, session_id, occurred_at, outcome_quality,
                   files_involved, tools_used, context, project_id
            from raw.usage_events {event_filter} order by rowid
            """,
            event_params,
        ),
        SUPERSESSIONS: (
            f"""
            select supersession_id, kept_pattern_id, dropped_pattern_id, reason,
                   recorded_at, revoked_at
            from raw.pattern_supersessions {merge_filter} order by rowid
            """,
            event_params,
        ),
        EMBEDDINGS: (
            f"""
            select e.text_hash, any_value(e.text) as text, any_value(e.embedding) as embedding,
                   any_value(e.model) as model
            from raw.embeddings as e
            where e.model = ? and e.text_hash in ({texts})
            group by e.text_hash order by e.text_hash
            """,
            [model, *pattern_params, *event_params],
        ),
    }


def export_bundle(
    db_path: Path,
    out: Path,
    *,
    project: str | None = None,
    force: bool = False,
) -> ExportReport:
    """Write the warehouse's raw memory (or one project's) as a bundle directory at `out`.

    Refuses an `out` that exists (unless `force`, which replaces a previous bundle only),
    an unknown project, and a warehouse whose texts are not all embedded under its model
    tag (run `engram build` first: a bundle must not make the other side re-embed)."""
    out = Path(out)
    _check_out(out, force)
    con = connect_for_read(Path(db_path))
    partial = out.with_name(f".{out.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        known = projects(con)
        if project is not None and project not in known:
            raise BundleError(
                f"no events of project {project!r} in {db_path}; its projects are: "
                + (", ".join(known) if known else "(none: the warehouse has no events)")
            )
        model = active_model(con)
        queries = _export_queries(project, model)
        missing = _unembedded(con, queries, model)
        if missing:
            raise BundleError(
                f"{missing} exported texts have no vector under "
                f"{model or 'any model'} in {db_path}: run `engram build` (it embeds what "
                "is missing) and export again, so the importing side need not re-embed"
            )
        partial.mkdir(parents=True)
        files: dict[str, dict[str, Any]] = {}
        for name, (select, params) in queries.items():
            target = partial / name
            row = con.execute(
                f"copy ({select}) to {sql_string(target)} (format parquet, compression zstd)",
                params,
            ).fetchone()
            files[name] = {
                "rows": int(row[0]) if row else 0,
                "bytes": target.stat().st_size,
                "sha256": file_digest(target),
            }
        exported_projects = [
            str(r[0])
            for r in con.execute(
                f"select distinct project_id from read_parquet({sql_string(partial / EVENTS)})"
                " order by 1"
            ).fetchall()
        ]
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "engram_version": __version__,
            "created_at": _now().isoformat(timespec="seconds") + "Z",
            "source_warehouse": str(Path(db_path).resolve()),
            "project_filter": project,
            "projects": exported_projects,
            "model": model,
            "embedding_dim": EMBEDDING_DIM,
            "files": files,
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():  # empty, or (force) a previous bundle: checked by _check_out
            shutil.rmtree(out)
        partial.rename(out)
        return ExportReport(out, manifest)
    finally:
        con.close()
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)


def _check_out(out: Path, force: bool) -> None:
    if not out.exists():
        if not out.parent.is_dir():
            raise BundleError(f"cannot write {out}: the folder {out.parent} does not exist")
        return
    if out.is_dir() and not any(out.iterdir()):
        return  # an empty folder is taken (replaced at the end, when the bundle is whole)
    if force and out.is_dir() and (out / MANIFEST).is_file():
        return
    raise BundleError(
        f"{out} already exists: choose a new name"
        + (", or --force to replace the bundle there" if (out / MANIFEST).is_file() else "")
    )


def _unembedded(
    con: duckdb.DuckDBPyConnection, queries: dict[str, tuple[str, list[Any]]], model: str | None
) -> int:
    """Distinct exported texts without a vector under `model`."""
    patterns, pattern_params = queries[PATTERNS]
    events, event_params = queries[EVENTS]
    row = con.execute(
        f"""
        with texts as (
            select distinct sha256(description) as text_hash from ({patterns})
            union
            select distinct sha256(context) from ({events}) where context is not null
        )
        select count(*) from texts
        anti join (select text_hash from raw.embeddings where model = ?) as e
            on e.text_hash = texts.text_hash
        """,
        [*pattern_params, *event_params, model],
    ).fetchone()
    return int(row[0]) if row else 0


# ------------------------------------------------------------------------------ import


@dataclass
class TableReport:
    """One bundle file's accounting: read = loaded + skipped + rejected, where rejected
    = invalid (failed the contract) + conflicts (id present with different content)."""

    name: str
    read: int = 0
    loaded: int = 0
    skipped: int = 0
    invalid: int = 0
    conflicts: int = 0
    already_imported: bool = False
    examples: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return self.invalid + self.conflicts


@dataclass
class ImportReport:
    run_id: str
    bundle: Path
    manifest: dict[str, Any]
    tables: dict[str, TableReport]
    vectors_loaded: int = 0  # vectors taken from the bundle
    vectors_cached: int = 0  # bundle vectors the warehouse already had
    texts_embedded: int = 0  # computed here (re_embed only)
    model: str | None = None  # the tag the bundle's texts are embedded under here

    def total(self, name: str) -> int:
        return sum(getattr(t, name) for t in self.tables.values())


@dataclass(frozen=True)
class _Plan:
    """How the bundle's vectors are treated, decided before anything is written."""

    load_vectors: bool
    store_tag: str | None  # the tag loaded vectors are stored under
    embedder: Embedder | None  # re_embed: embeds the bundle's texts here


def read_manifest(bundle: Path) -> dict[str, Any]:
    """The manifest, checked for shape and version; BundleError naming what is wrong."""
    bundle = Path(bundle)
    if not bundle.is_dir():
        what = "does not exist" if not bundle.exists() else "is a file, not a bundle folder"
        raise BundleError(f"{bundle} {what}: give the folder `engram export` wrote")
    path = bundle / MANIFEST
    if not path.is_file():
        raise BundleError(f"{bundle} is not an engram bundle: it has no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is corrupted: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path} is not an engram bundle manifest (no format {FORMAT!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BundleError(
            f"{path} has bundle format version {version!r}; this engram "
            f"({__version__}) reads version {FORMAT_VERSION}: upgrade engram to import it"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != set(DATA_FILES):
        raise BundleError(f"{path} is corrupted: it must list the files {', '.join(DATA_FILES)}")
    for name, entry in files.items():
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("rows"), int)
            and isinstance(entry.get("sha256"), str)
        ):
            raise BundleError(f"{path} is corrupted: the entry of {name} lacks rows or sha256")
    return manifest


def verify_bundle(bundle: Path, manifest: dict[str, Any]) -> None:
    """Every data file present, with the size, sha256 and row count the manifest says."""
    for name in DATA_FILES:
        entry = manifest["files"][name]
        path = Path(bundle) / name
        if not path.is_file():
            raise BundleError(f"bundle file {path} is missing (the manifest lists it)")
        size = path.stat().st_size
        if "bytes" in entry and size != entry["bytes"]:
            raise BundleError(
                f"bundle file {path} is corrupted: {size} bytes, the manifest says "
                f"{entry['bytes']} (truncated or changed after export?)"
            )
        digest = file_digest(path)
        if digest != entry["sha256"]:
            raise BundleError(
                f"bundle file {path} is corrupted: its sha256 is {digest}, the manifest "
                f"says {entry['sha256']} (changed after export?)"
            )
        try:
            rows = pq.ParquetFile(path).metadata.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise BundleError(f"bundle file {path} is not readable Parquet: {exc}") from None
        if rows != entry["rows"]:
            raise BundleError(
                f"bundle file {path} holds {rows} rows, the manifest says {entry['rows']}"
            )


def _plan(
    con: duckdb.DuckDBPyConnection,
    manifest: dict[str, Any],
    re_embed: bool,
    embedder: Embedder | None,
) -> _Plan:
    """Decide what happens to the vectors (see the module docstring); refuse with the fix."""
    bundle_tag = manifest.get("model")
    here = active_model(con)
    if re_embed:
        if embedder is None:
            backend = tag_backend(here) if here else None
            embedder = Embedder(backend=backend) if backend else Embedder()
        return _Plan(False, None, embedder)
    if manifest["files"][EMBEDDINGS]["rows"] == 0 or bundle_tag is None:
        # Nothing embedded in the bundle (an empty export): `engram build` embeds.
        return _Plan(False, None, None)
    if here is None or here == bundle_tag:
        if tag_backend(bundle_tag) is None:
            raise BundleError(
                f"the bundle's vectors are tagged {bundle_tag!r}, a model this engram cannot "
                "embed queries with: import with --re-embed to embed its texts here"
            )
        return _Plan(True, bundle_tag, None)
    if compatible(here, bundle_tag):
        return _Plan(True, here, None)
    raise BundleError(
        f"the bundle's vectors are tagged {bundle_tag!r} but this warehouse's are {here!r}: "
        "vectors of the two cannot be compared. Import with --re-embed to embed the "
        f"bundle's texts with {here} here, or import into a warehouse embedded with "
        f"{bundle_tag} (ENGRAM_EMBEDDING_BACKEND)"
    )


def import_bundle(
    bundle: Path,
    db_path: Path,
    *,
    re_embed: bool = False,
    embedder: Embedder | None = None,
    progress: ProgressFactory | None = None,
    on_step: StepHook | None = None,
) -> ImportReport:
    """Load a bundle into the warehouse (created if missing); see the module docstring.

    Raises BundleError, with nothing written, for a bundle that is not one, a corrupted or
    missing file, or vectors of another model family (unless `re_embed`). `embedder` is
    used only with `re_embed` (default: the warehouse's backend, else the machine's)."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    verify_bundle(bundle, manifest)
    db_path = Path(db_path)
    con = connect_for_write(db_path)
    run_id = uuid.uuid4().hex[:12]
    try:
        plan = _plan(con, manifest, re_embed, embedder)
        con.execute(f"set memory_limit = '{IMPORT_MEMORY_LIMIT}'")
        remove_stale_scratch(db_path, {run_id})
        con.execute(
            "insert into raw.ingest_runs (run_id, started_at, status, files_seen, engram_version)"
            " values (?, ?, 'running', ?, ?)",
            [run_id, _now(), len(RECORD_FILES), __version__],
        )
        report = ImportReport(
            run_id, bundle, manifest, {name: TableReport(name) for name in RECORD_FILES}
        )
        try:
            _import(con, db_path, bundle, report, plan, progress, on_step)
        except BaseException as exc:
            with contextlib.suppress(duckdb.Error):
                _finish_run(con, report, "failed", storable_text(f"{type(exc).__name__}: {exc}"))
            raise
        _finish_run(con, report, "succeeded", None)
        return report
    finally:
        con.close()


def _import(
    con: duckdb.DuckDBPyConnection,
    db_path: Path,
    bundle: Path,
    report: ImportReport,
    plan: _Plan,
    progress: ProgressFactory | None,
    on_step: StepHook | None,
) -> None:
    """Stage, publish in one transaction, then (re_embed) embed what is missing."""
    manifest = report.manifest
    digests = {name: manifest["files"][name]["sha256"] for name in RECORD_FILES}
    seen = {
        str(r[0])
        for r in con.execute(
            "select distinct content_sha256 from raw.ingested_files"
            " where content_sha256 in (select unnest(?::varchar[]))",
            [list(digests.values())],
        ).fetchall()
    }
    scratch = scratch_path(db_path, report.run_id)
    staging = _BundleStaging(con, scratch, report.run_id)
    try:
        for name, kind in RECORD_FILES.items():
            table = report.tables[name]
            rows = manifest["files"][name]["rows"]
            if rows and digests[name] in seen:  # this very file was imported before
                table.read = table.skipped = rows
                table.already_imported = True
                continue
            staging.stage_records(bundle / name, kind, table, progress)
        if plan.load_vectors:
            staging.stage_vectors(bundle / EMBEDDINGS, plan.store_tag or "")
        staging.check_vectors(bundle / EMBEDDINGS)
        con.execute("begin transaction")
        try:
            staging.publish(report, bundle, plan, on_step)
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            for table in report.tables.values():
                if not table.already_imported:
                    table.loaded = table.skipped = table.conflicts = 0
            raise
    finally:
        staging.close()
    if plan.embedder is not None:
        stats = embed_missing(con, plan.embedder, progress=progress)
        report.texts_embedded = stats.texts_embedded
        report.model = stats.model


def _finish_run(
    con: duckdb.DuckDBPyConnection, report: ImportReport, status: str, error: str | None
) -> None:
    con.execute(
        """
        update raw.ingest_runs set finished_at = ?, status = ?, records_read = ?,
            records_loaded = ?, records_skipped = ?, records_rejected = ?,
            texts_embedded = ?, texts_cached = ?, error = ?
        where run_id = ?
        """,
        [
            _now(),
            status,
            report.total("read"),
            report.total("loaded"),
            report.total("skipped"),
            report.total("rejected"),
            report.texts_embedded,
            report.vectors_loaded + report.vectors_cached,
            error,
            report.run_id,
        ],
    )


def _iso(value: datetime | None) -> str | None:
    """A Parquet timestamp (naive UTC) as the ISO text the contract parses."""
    return None if value is None else value.isoformat()


def _pattern_record(row: dict[str, Any]) -> dict[str, Any]:
    """A bundle row in the input contract's shape, so `validate_pattern` judges it."""
    record = dict(row)
    record["first_seen"] = _iso(row.get("first_seen"))
    metadata = row.get("metadata")
    if isinstance(metadata, str):
        try:
            record["metadata"] = orjson.loads(metadata)
        except orjson.JSONDecodeError:
            raise Rejected("metadata", "'metadata' is not valid JSON text") from None
    return record


def _event_record(row: dict[str, Any]) -> dict[str, Any]:
    record = dict(row)
    record["timestamp"] = _iso(row.get("occurred_at"))
    return record


def _supersession_row(row: dict[str, Any]) -> tuple[Any, ...]:
    """Supersessions have no input contract of their own: ids as the contract checks them,
    and a recorded_at."""
    values = []
    for name in ("supersession_id", "kept_pattern_id", "dropped_pattern_id"):
        value = row.get(name)
        if not isinstance(value, str) or not value.strip():
            raise Rejected(name, f"required field '{name}' is missing or empty")
        if len(value) > MAX_ID_CHARS:
            raise Rejected(name, f"'{name}' is {len(value)} characters long (limit {MAX_ID_CHARS})")
        values.append(value.strip())
    if values[1] == values[2]:
        raise Rejected("kept_pattern_id", "a pattern cannot be merged into itself")
    if not isinstance(row.get("recorded_at"), datetime):
        raise Rejected("recorded_at", "required field 'recorded_at' is missing")
    return (*values, row.get("reason"), row["recorded_at"], row.get("revoked_at"))


def _shown(row: dict[str, Any]) -> str:
    """The row as JSON text for the quarantine's raw_text."""
    return storable_text(orjson.dumps(row, default=str, option=orjson.OPT_SORT_KEYS).decode())


STAGED_DDL = f"""
create table {{alias}}.patterns (
    source_line bigint, pattern_id varchar, description varchar, pattern_type varchar,
    first_seen timestamp, metadata varchar, raw_text varchar);
create table {{alias}}.events (
    source_line bigint, event_id varchar, pattern_id varchar, session_id varchar,
    occurred_at timestamp, outcome_quality double, files_involved varchar[],
    tools_used varchar[], context varchar, project_id varchar, raw_text varchar);
create table {{alias}}.supersessions (
    source_line bigint, supersession_id varchar, kept_pattern_id varchar,
    dropped_pattern_id varchar, reason varchar, recorded_at timestamp, revoked_at timestamp,
    raw_text varchar);
create table {{alias}}.invalid (
    source_file varchar, line_number bigint, record_kind varchar, field varchar,
    reason varchar, raw_text varchar);
create table {{alias}}.vectors (text_hash varchar, text varchar,
    embedding float[{EMBEDDING_DIM}], model varchar);
"""


_TS, _STR, _LINE = pa.timestamp("us"), pa.string(), pa.int64()
STAGED_SCHEMAS = {
    "patterns": pa.schema(
        [
            ("source_line", _LINE),
            ("pattern_id", _STR),
            ("description", _STR),
            ("pattern_type", _STR),
            ("first_seen", _TS),
            ("metadata", _STR),
            ("raw_text", _STR),
        ]
    ),
    "events": pa.schema(
        [
            ("source_line", _LINE),
            ("event_id", _STR),
            ("pattern_id", _STR),
            ("session_id", _STR),
            ("occurred_at", _TS),
            ("outcome_quality", pa.float64()),
            ("files_involved", pa.list_(_STR)),
            ("tools_used", pa.list_(_STR)),
            ("context", _STR),
            ("project_id", _STR),
            ("raw_text", _STR),
        ]
    ),
    "supersessions": pa.schema(
        [
            ("source_line", _LINE),
            ("supersession_id", _STR),
            ("kept_pattern_id", _STR),
            ("dropped_pattern_id", _STR),
            ("reason", _STR),
            ("recorded_at", _TS),
            ("revoked_at", _TS),
            ("raw_text", _STR),
        ]
    ),
    "invalid": pa.schema(
        [
            ("source_file", _STR),
            ("line_number", _LINE),
            ("record_kind", _STR),
            ("field", _STR),
            ("reason", _STR),
            ("raw_text", _STR),
        ]
    ),
}


class _BundleStaging:
    """The bundle's validated rows in a scratch DuckDB file attached to the warehouse
    connection (bounded memory, nothing in raw.* until `publish`)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, run_id: str) -> None:
        self.con = con
        self.path = path
        self.alias = f"engram_bundle_{run_id}"
        _remove(path)
        con.execute(f"attach {sql_string(path)} as {self.alias}")
        self.attached = True
        con.execute(STAGED_DDL.format(alias=self.alias))

    def _batches(self, path: Path) -> Iterator[list[dict[str, Any]]]:
        try:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
                yield batch.to_pylist()
        except (pa.ArrowException, OSError) as exc:
            raise BundleError(f"bundle file {path} cannot be read: {exc}") from None

    def stage_records(
        self, path: Path, kind: str, table: TableReport, progress: ProgressFactory | None
    ) -> None:
        """Validate each row through the contract; stage the good, the bad as quarantine."""
        rows_total = pq.ParquetFile(path).metadata.num_rows
        bar = progress(rows_total, f"checking {path.name}") if progress else None
        if bar is not None and rows_total < PROGRESS_MIN_ROWS:
            bar.close()
            bar = None
        line = 0
        for batch in self._batches(path):
            good: list[tuple[Any, ...]] = []
            bad: list[tuple[Any, ...]] = []
            for row in batch:
                line += 1
                table.read += 1
                raw = _shown(row)
                try:
                    good.append((line, *self._validated(kind, row), raw))
                except Rejected as rejection:
                    bad.append((str(path), line, kind, rejection.field, rejection.reason, raw))
                    table.invalid += 1
                    if len(table.examples) < MAX_EXAMPLES:
                        label = f"{rejection.field}: " if rejection.field else ""
                        table.examples.append(f"row {line}: {label}{rejection.reason}")
            target = {"pattern": "patterns", "event": "events"}.get(kind, "supersessions")
            self._append(target, good)
            self._append("invalid", bad)
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()

    def _append(self, name: str, rows: list[tuple[Any, ...]]) -> None:
        """Rows into a staged table through Arrow (one insert per batch, not per row)."""
        if not rows:
            return
        schema = STAGED_SCHEMAS[name]
        columns = list(zip(*rows, strict=True))
        batch = pa.table(
            [pa.array(list(col), type=f.type) for col, f in zip(columns, schema, strict=True)],
            schema=schema,
        )
        self.con.register("_bundle_batch", batch)
        try:
            self.con.execute(f"insert into {self.alias}.{name} select * from _bundle_batch")
        finally:
            self.con.unregister("_bundle_batch")

    @staticmethod
    def _validated(kind: str, row: dict[str, Any]) -> tuple[Any, ...]:
        if kind == "pattern":
            p = validate_pattern(_pattern_record(row))
            return (p.pattern_id, p.description, p.pattern_type, p.first_seen, p.metadata)
        if kind == "event":
            e = validate_event(_event_record(row))
            return (
                e.event_id,
                e.pattern_id,
                e.session_id,
                e.occurred_at,
                e.outcome_quality,
                e.files_involved,
                e.tools_used,
                e.context,
                e.project_id,
            )
        return _supersession_row(row)

    def stage_vectors(self, path: Path, tag: str) -> None:
        """The bundle's vectors, streamed by DuckDB from Parquet into the scratch file."""
        try:
            self.con.execute(
                f"""
                insert into {self.alias}.vectors
                select text_hash, text, embedding::float[{EMBEDDING_DIM}], ?
                from read_parquet({sql_string(path)})
                """,
                [tag],
            )
        except duckdb.Error as exc:
            raise BundleError(f"bundle file {path} does not hold valid vectors: {exc}") from None

    def check_vectors(self, path: Path) -> None:
        """A vector whose text does not hash to its key, or that is not unit length, would
        silently corrupt every similarity: refuse the bundle instead."""
        row = self.con.execute(
            f"""
            select count(*), any_value(text_hash) from {self.alias}.vectors
            where sha256(text) <> text_hash
               or abs(list_dot_product(embedding, embedding) - 1) > 1e-3
            """
        ).fetchone()
        if row and row[0]:
            raise BundleError(
                f"bundle file {path} is corrupted: {row[0]} vectors do not match their text "
                f"or are not unit length (e.g. text_hash {row[1]})"
            )

    def publish(
        self, report: ImportReport, bundle: Path, plan: _Plan, on_step: StepHook | None
    ) -> None:
        """Inside the caller's transaction: records, conflicts, quarantine, vectors, the
        embed pass, and a ledger row per record file."""
        steps: list[tuple[str, Callable[[], None]]] = [
            (PATTERNS, lambda: self._publish_patterns(report, bundle)),
            (EVENTS, lambda: self._publish_events(report, bundle)),
            (SUPERSESSIONS, lambda: self._publish_supersessions(report, bundle)),
            ("invalid", lambda: self._publish_invalid(report)),
            (EMBEDDINGS, lambda: self._publish_vectors(report, plan)),
            ("ledger", lambda: self._publish_ledger(report, bundle)),
        ]
        for name, step in steps:
            step()
            if on_step:
                on_step(name)

    def _count(self, sql: str, params: list[Any]) -> int:
        row = self.con.execute(sql, params).fetchone()
        return int(row[0]) if row else 0

    def _publish_keyed(
        self,
        report: ImportReport,
        bundle: Path,
        name: str,
        *,
        staged: str,
        key: str,
        kind: str,
        compared: list[str],
        insert: str,
        provenance: bool = True,
    ) -> None:
        """The shared shape of the three record files. Within the bundle the first row of an
        id wins (a later one that differs is a conflict); an id present with the same
        content is skipped; with different content it is a conflict, quarantined (once per
        file, row and content) naming the first field that differs; the rest is inserted."""
        table = report.tables[name]
        if table.already_imported:
            return
        source = str(bundle / name)
        con, now, run_id = self.con, _now(), report.run_id

        def side(alias: str, col: str) -> str:
            return f"{alias}.{col}::varchar" if col == "metadata" else f"{alias}.{col}"

        differs = " or ".join(f"{side('c', c)} is distinct from {side('w', c)}" for c in compared)
        first_diff = (
            "coalesce("
            + ", ".join(
                f"case when {side('c', c)} is distinct from {side('w', c)} then '{c}' end"
                for c in compared
            )
            + ")"
        )
        con.execute(
            f"""
            create or replace temp table _bundle_rows as
            select *, row_number() over (partition by {key} order by source_line) as nth
            from {self.alias}.{staged}
            """
        )
        in_force = ""
        if kind == "supersession":
            # A new merge of a pattern this warehouse has already merged into another one
            # (a merge in force) would silently re-point its events: a conflict too.
            in_force = """
            union all
            select c.source_line, c.supersession_id, 'dropped_pattern_id', c.raw_text
            from _bundle_rows as c
            join raw.pattern_supersessions as w
                on w.dropped_pattern_id = c.dropped_pattern_id
                and w.supersession_id <> c.supersession_id
                and w.revoked_at is null and c.revoked_at is null
            where c.nth = 1
            """
        con.execute(
            f"""
            create or replace temp table _bundle_conflicts as
            select c.source_line, c.{key} as id, {first_diff} as field, c.raw_text
            from _bundle_rows as c
            join {_target(kind)} as w on w.{key} = c.{key}
            where c.nth = 1 and ({differs})
            union all
            select c.source_line, c.{key}, {first_diff}, c.raw_text
            from _bundle_rows as c
            join _bundle_rows as w on w.{key} = c.{key} and w.nth = 1
            where c.nth > 1 and ({differs})
            {in_force}
            """
        )
        table.conflicts = self._count(
            "select count(distinct source_line) from _bundle_conflicts", []
        )
        table.loaded = self._count(
            f"""
            {insert}
            from _bundle_rows as c
            anti join {_target(kind)} as w on w.{key} = c.{key}
            where c.nth = 1
              and c.source_line not in (select source_line from _bundle_conflicts)
            order by c.source_line  -- the bundle's order (see _export_queries)
            """,
            [source, run_id, now] if provenance else [],
        )
        table.skipped = table.read - table.invalid - table.loaded - table.conflicts
        for line, ident, what in con.execute(
            "select source_line, id, any_value(field) from _bundle_conflicts"
            f" group by all order by source_line limit {MAX_EXAMPLES}"
        ).fetchall():
            table.examples.append(
                f"row {line}: conflict: {kind} {ident!r} is already in the warehouse with a "
                f"different {what}; the warehouse's row was kept"
            )
        con.execute(
            """
            insert into raw.rejected_records
            select ?, ?, q.line_number, ?, q.field, q.reason, q.raw_text, q.raw_hash, ?
            from (
                select source_line as line_number, any_value(field) as field,
                       'conflict: ' || ? || ' ' || any_value(id)
                       || ' is already in the warehouse with a different '
                       || any_value(field) || '; the warehouse''s row was kept' as reason,
                       any_value(raw_text) as raw_text,
                       sha256(any_value(raw_text)) as raw_hash
                from _bundle_conflicts group by source_line
            ) as q
            anti join raw.rejected_records as r
                on r.source_file = ? and r.line_number = q.line_number
                and r.raw_hash = q.raw_hash
            """,
            [run_id, source, kind, now, kind, source],
        )
        con.execute("drop table _bundle_rows")
        con.execute("drop table _bundle_conflicts")

    def _publish_patterns(self, report: ImportReport, bundle: Path) -> None:
        self._publish_keyed(
            report,
            bundle,
            PATTERNS,
            staged="patterns",
            key="pattern_id",
            kind="pattern",
            compared=["description", "pattern_type", "first_seen", "metadata"],
            insert="""
            insert into raw.patterns
            select c.pattern_id, c.description, sha256(c.description), c.pattern_type,
                   c.first_seen, c.metadata, ?, c.source_line, ?, ?
            """,
        )

    def _publish_events(self, report: ImportReport, bundle: Path) -> None:
        self._publish_keyed(
            report,
            bundle,
            EVENTS,
            staged="events",
            key="event_id",
            kind="event",
            compared=[
                "pattern_id",
                "session_id",
                "occurred_at",
                "outcome_quality",
                "files_involved",
                "tools_used",
                "context",
                "project_id",
            ],
            insert="""
            insert into raw.usage_events
            select c.event_id, c.pattern_id, c.session_id, c.occurred_at, c.outcome_quality,
                   c.files_involved, c.tools_used, c.context, sha256(c.context),
                   c.project_id, ?, c.source_line, ?, ?
            """,
        )

    def _publish_supersessions(self, report: ImportReport, bundle: Path) -> None:
        self._publish_keyed(
            report,
            bundle,
            SUPERSESSIONS,
            staged="supersessions",
            key="supersession_id",
            kind="supersession",
            compared=[
                "kept_pattern_id",
                "dropped_pattern_id",
                "reason",
                "recorded_at",
                "revoked_at",
            ],
            insert="""
            insert into raw.pattern_supersessions
            select c.supersession_id, c.kept_pattern_id, c.dropped_pattern_id, c.reason,
                   c.recorded_at, c.revoked_at
            """,
            provenance=False,  # raw.pattern_supersessions has no source columns
        )

    def _publish_invalid(self, report: ImportReport) -> None:
        """Rows that failed the contract: quarantined once per (file, row, content)."""
        self.con.execute(
            f"""
            insert into raw.rejected_records
            select ?, i.source_file, i.line_number, i.record_kind, i.field, i.reason,
                   i.raw_text, sha256(i.raw_text), ?
            from {self.alias}.invalid as i
            anti join raw.rejected_records as r
                on r.source_file = i.source_file and r.line_number = i.line_number
                and r.raw_hash = sha256(i.raw_text)
            """,
            [report.run_id, _now()],
        )

    def _publish_vectors(self, report: ImportReport, plan: _Plan) -> None:
        """The staged vectors not cached yet; then, when every text the warehouse refers to
        has a vector under the tag, an embed pass row (which makes the marts read it)."""
        if not plan.load_vectors or plan.store_tag is None:
            return
        staged = self._count(f"select count(*) from {self.alias}.vectors", [])
        report.vectors_loaded = self._count(
            f"""
            insert into raw.embeddings
            select v.text_hash, v.text, v.embedding, v.model, ?
            from {self.alias}.vectors as v
            anti join (select text_hash from raw.embeddings where model = ?) as e
                on e.text_hash = v.text_hash
            """,
            [_now(), plan.store_tag],
        )
        report.vectors_cached = staged - report.vectors_loaded
        report.model = plan.store_tag
        referenced = self._count(f"select count(distinct text_hash) from ({TEXTS_SQL})", [])
        missing = self._count(
            f"""
            select count(*) from (select distinct text_hash from ({TEXTS_SQL})) as t
            anti join (select text_hash from raw.embeddings where model = ?) as e
                on e.text_hash = t.text_hash
            """,
            [plan.store_tag],
        )
        if missing == 0:
            self.con.execute(
                "insert into raw.embedding_runs values (?, ?, 0, ?)",
                [plan.store_tag, referenced, _now()],
            )

    def _publish_ledger(self, report: ImportReport, bundle: Path) -> None:
        for name, table in report.tables.items():
            if table.already_imported or not table.read:  # empty files are no evidence
                continue
            entry = report.manifest["files"][name]
            self.con.execute(
                "insert into raw.ingested_files values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    report.run_id,
                    str(bundle / name),
                    entry["sha256"],
                    int(entry.get("bytes") or (bundle / name).stat().st_size),
                    table.read,
                    table.loaded,
                    table.skipped,
                    table.rejected,
                    _now(),
                ],
            )

    def close(self) -> None:
        if self.attached:
            self.attached = False
            with contextlib.suppress(duckdb.Error):
                self.con.execute(f"detach {self.alias}")
        _remove(self.path)


def _target(kind: str) -> str:
    return {
        "pattern": "raw.patterns",
        "event": "raw.usage_events",
        "supersession": "raw.pattern_supersessions",
    }[kind]


def _remove(path: Path) -> None:
    for leftover in (path, path.with_name(path.name + ".wal")):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(leftover)
