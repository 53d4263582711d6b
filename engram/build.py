"""Build the warehouse: embed what is missing, run dbt on it, publish the serving copy.

dbt runs with the same project, profile and file as a plain `dbt build --profiles-dir .`
from the repo root with ENGRAM_DB pointing at the file (engram.project finds the project
in a checkout, in $ENGRAM_PROJECT_DIR, or packaged with an installed engram)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb

from engram.project import dbt_state_dir, is_packaged, project_dir
from ingest.progress import ProgressFactory
from ingest.warehouse import DB_ENV_VAR, connect_for_read, connect_for_write


class BuildError(Exception):
    """dbt failed, or the warehouse is not ready to build."""


# After a build, the warehouse is compacted (engram.compact) once its free blocks pass this
# share of the file: the file then stays under about twice its live data, and the copy
# (about 10 s per GiB here) is paid only every few builds. $ENGRAM_COMPACT_FREE_SHARE
# changes it; 1 turns automatic compaction off.
COMPACT_FREE_SHARE = float(os.environ.get("ENGRAM_COMPACT_FREE_SHARE", "0.5"))


DBT_MAIN = "import sys; from dbt.cli.main import cli; sys.exit(cli())"


def dbt_executable() -> str:
    """The dbt next to this Python (the project venv), else the one on PATH (for Dagster's
    DbtCliResource, which wants one executable)."""
    beside = Path(sys.executable).parent / "dbt"
    if beside.exists():
        return str(beside)
    found = shutil.which("dbt")
    if not found:
        raise BuildError("dbt is not installed in this environment; run `make install`")
    return found


def dbt_command() -> list[str]:
    """dbt run by this very interpreter, so the dbt Python models import this engram: the
    `dbt` script beside it, else `python -c` on dbt's entry point (an environment whose
    scripts are elsewhere). Never a `dbt` from PATH, which may belong to another Python."""
    beside = Path(sys.executable).parent / "dbt"
    if beside.exists():
        return [str(beside)]
    try:
        import dbt.cli.main  # noqa: F401
    except ImportError:
        raise BuildError("dbt is not installed in this environment; run `make install`") from None
    return [sys.executable, "-c", DBT_MAIN]


LOG_LEVEL_FILE_ENV = "DBT_LOG_LEVEL_FILE"  # dbt's own; engram keeps it at info (dbt_env)


def log_level_file() -> str:
    """dbt's log-file level for engram's dbt runs (`engram build`, Dagster): $DBT_LOG_LEVEL_FILE
    when set, else info (dbt_env says why)."""
    return os.environ.get(LOG_LEVEL_FILE_ENV) or "info"


def dbt_cwd(db_path: Path) -> Path:
    """The folder dbt runs in: the warehouse's own (dbt_env names the file relative to it).
    Symbolic links are not resolved: dbt opens the file by the name and in the folder it
    was given (the target's folder with a link's name would be a new, empty file), and the
    file stem, which dbt-duckdb takes as the database name, stays the one given."""
    return db_path.absolute().parent


def dbt_env(db_path: Path) -> dict[str, str]:
    """The environment dbt runs in, from dbt_cwd(db_path): ENGRAM_DB names the warehouse
    (profiles.yml reads it) by its file name alone; for the packaged project, target/ and
    logs/ go beside the warehouse.

    Why the bare name: dbt keeps its parse of the project (partial parsing) only while the
    profile's connection settings are the same, the database path included, and parsing
    this project whole took 6.5 s against 1.8 s for a saved parse (medians over a test
    run's dbt log). With an absolute path,
    every build of another warehouse that shares a target folder (the test suite's one
    per session, the benchmarks) parsed the whole project again; with the name, any two
    warehouses of the same file name share the parse. A relative $DBT_LOG_PATH is made
    absolute from the project, where dbt found it when it ran there.

    dbt's log file is kept at info level unless $DBT_LOG_LEVEL_FILE says otherwise: at its
    default, debug, dbt writes every statement of every node to it, and a small refresh
    build took 21.3 s against 18.2 s at info (means of three each, alternating); errors, each
    node's status and timing are at info. `DBT_LOG_LEVEL_FILE=debug` brings the SQL back."""
    env = dict(os.environ)
    env[DB_ENV_VAR] = db_path.name
    env.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    env[LOG_LEVEL_FILE_ENV] = log_level_file()
    project = project_dir()
    if is_packaged(project):
        state = dbt_state_dir(db_path.absolute())
        env.setdefault("DBT_TARGET_PATH", str(state / "target"))
        env.setdefault("DBT_LOG_PATH", str(state / "logs"))
    logs = env.get("DBT_LOG_PATH")
    if logs and not Path(logs).is_absolute():
        env["DBT_LOG_PATH"] = str(project / logs)
    return env


def run_dbt(
    args: list[str],
    db_path: Path,
    *,
    capture: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one dbt command on the warehouse; raises BuildError with dbt's output on failure.
    `env` is added to dbt_env's environment.

    $DBT_TARGET_PATH / $DBT_LOG_PATH, when set, keep concurrent builds (tests) apart.
    """
    project = project_dir()
    command = [*dbt_command(), *args, "--project-dir", str(project)]
    command += ["--profiles-dir", str(project)]
    result = subprocess.run(
        command,
        env={**dbt_env(db_path), **(env or {})},
        cwd=dbt_cwd(db_path),
        text=True,
        capture_output=capture,
        check=False,
    )
    if result.returncode != 0:
        detail = (result.stdout or "")[-4000:] if capture else "see dbt's output above"
        raise BuildError(f"`dbt {' '.join(args)}` failed (exit {result.returncode}): {detail}")
    return result


def ensure_embeddings(db_path: Path, progress: ProgressFactory | None = None) -> int:
    """Embed any text the ingest left unembedded (e.g. `ingest --no-embed`); returns count."""
    from ingest.embedder import Embedder
    from ingest.embeddings import embed_missing

    con = connect_for_write(db_path)
    try:
        return embed_missing(con, Embedder(), progress=progress).texts_embedded
    finally:
        con.close()


# What dbt reads to define the models and their unit tests. Unit tests feed fixed rows to a
# model's SQL, so their result depends on this code (and the dbt / DuckDB versions), never
# on the warehouse's data: a refresh of the same code needs not run them again.
CODE_PATHS = ("dbt_project.yml", "models", "macros", "seeds", "tests/dbt")
UNIT_TESTS_RECORD = "unit_tests_passed.json"
# One record for every warehouse instead of one beside each (unit_tests_record): then a
# warehouse's first build, too, skips the unit tests that another warehouse's build passed
# with the same code. The test suite sets it (tests/conftest.py): each of its warehouses
# ran the 34 unit tests on its first build (11.9 s of node time, on two dbt threads, in a
# 28.7 s first build of 300 generated patterns / 6,000 events).
UNIT_TESTS_RECORD_ENV = "ENGRAM_UNIT_TESTS_RECORD"


def code_digest(project: Path) -> str:
    """sha256 over the project's model code (CODE_PATHS: every file's path and bytes) and
    the dbt and DuckDB versions that run it."""
    from importlib.metadata import version

    digest = hashlib.sha256()
    for package in ("dbt-core", "dbt-duckdb", "duckdb"):
        digest.update(f"{package}=={version(package)}\n".encode())
    for name in CODE_PATHS:
        root = project / name
        files = (
            [root]
            if root.is_file()
            else sorted(
                path
                for path in root.rglob("*")
                if path.is_file() and "__pycache__" not in path.parts
            )
        )
        for path in files:
            digest.update(path.relative_to(project).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def shared_unit_tests_record() -> Path | None:
    """$ENGRAM_UNIT_TESTS_RECORD, the record every warehouse shares, when set."""
    shared = os.environ.get(UNIT_TESTS_RECORD_ENV)
    return Path(shared) if shared else None


def unit_tests_record(db_path: Path) -> Path:
    """The file naming the code whose unit tests all passed: beside the warehouse, or the
    shared one (shared_unit_tests_record)."""
    return shared_unit_tests_record() or dbt_state_dir(db_path) / UNIT_TESTS_RECORD


def unit_tests_passed_for(db_path: Path, digest: str) -> bool:
    """Whether a build of this warehouse ran every unit test, and they passed, with the code
    whose code_digest is `digest`."""
    try:
        return json.loads(unit_tests_record(db_path).read_text()).get("code_digest") == digest
    except (OSError, ValueError, AttributeError):
        return False


def record_unit_tests_passed(db_path: Path, digest: str) -> None:
    record = unit_tests_record(db_path)
    record.parent.mkdir(parents=True, exist_ok=True)
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps({"code_digest": digest}) + "\n")
    os.replace(tmp, record)


def take_in_journal(db_path: Path) -> int:
    """Load what agents recorded in the journal (ingest/journal.py) since the last intake,
    so a build includes every write made before it started; returns lines taken in."""
    from ingest.journal import segments
    from ingest.loader import ingest_paths

    if not segments(db_path):
        return 0
    return ingest_paths([], db_path, embed=False).total("read")


def warehouse_has_data(db_path: Path) -> bool:
    if not db_path.exists():
        return False
    con = connect_for_read(db_path)
    try:
        tables = {
            row[0]
            for row in con.execute(
                "select table_name from information_schema.tables where table_schema = 'raw'"
            ).fetchall()
        }
        return {"patterns", "usage_events", "embeddings"} <= tables
    finally:
        con.close()


def changed_since(db_path: Path) -> str | None:
    """The loaded_at watermark of the previous build: the newest event it aggregated
    (int_pattern_weeks__aggregated.max_loaded_at). Rows loaded later are new to this build,
    so the expensive data tests check only those (macros/changed_rows.sql); None before
    the first build, when every test checks every row."""
    con = connect_for_read(db_path)
    try:
        row = con.execute(
            "select max(max_loaded_at) from intermediate.int_pattern_weeks__aggregated"
        ).fetchone()
    except duckdb.Error:  # not built yet
        return None
    finally:
        con.close()
    return None if row is None or row[0] is None else row[0].isoformat(sep=" ")


CHANGED_SINCE_ENV = "ENGRAM_CHANGED_SINCE"  # the watermark, read by macros/changed_rows.sql


@dataclass(frozen=True)
class BuildPlan:
    """The `dbt build` that `engram build` runs (build_plan): its arguments, what it adds
    to dbt's environment, and the code digest to record once it succeeds as the code whose
    unit tests all passed (None when it skips them or runs a selection)."""

    args: list[str]
    env: dict[str, str]
    passed_digest: str | None

    def succeeded(self, db_path: Path) -> None:
        """Call once the build succeeded: records the unit tests' pass when it ran them all."""
        if self.passed_digest is not None:
            record_unit_tests_passed(db_path, self.passed_digest)


def build_plan(
    db_path: Path,
    *,
    select: str | None = None,
    full_refresh: bool = False,
    skip_unit_tests: bool = False,
) -> BuildPlan:
    """See build. The watermark goes in $ENGRAM_CHANGED_SINCE, not --vars: dbt parses the
    whole project again whenever --vars change (8.5 s against 3.8 s here), and the
    watermark changes with every build; macros/changed_rows.sql reads either.
    skip_unit_tests leaves the unit tests out whatever the code (bench.refresh's replay of
    a refresh that ran none); a build without them records no pass."""
    args = ["build"]
    if select:
        args += ["--select", select]
    digest = code_digest(project_dir())
    run_unit_tests = True
    since = None
    if full_refresh:
        args.append("--full-refresh")
    else:
        since = changed_since(db_path)
        if since is not None or shared_unit_tests_record() is not None:
            run_unit_tests = not unit_tests_passed_for(db_path, digest)
    run_unit_tests = run_unit_tests and not skip_unit_tests
    if not run_unit_tests:
        args += ["--exclude-resource-type", "unit_test"]
    return BuildPlan(
        args=args,
        env={CHANGED_SINCE_ENV: since or ""},  # "" also clears one set in the shell
        passed_digest=digest if run_unit_tests and not select else None,
    )


def build(
    db_path: Path,
    *,
    select: str | None = None,
    full_refresh: bool = False,
    capture: bool = False,
    progress: ProgressFactory | None = None,
    publish: bool = True,
    compact_above: float = COMPACT_FREE_SHARE,
) -> subprocess.CompletedProcess[str]:
    """Embed what is missing, then `dbt build` (models and their tests) on the warehouse.

    A refresh (a build after an earlier one, without full_refresh) passes the previous
    build's watermark (changed_since, in $ENGRAM_CHANGED_SINCE), so the expensive data
    tests check only the rows it changed, and skips dbt's unit tests when a build of this
    warehouse already ran them all, passing, with the same model code (code_digest): they
    check the SQL on fixed rows, so the same code gives the same result whatever the data.
    A first build, a full refresh and any build after the code changed run them.

    After a successful build, publish the read-only serving copy + vector index
    (engram.query.serving) that queries read, unless publish=False: only what changed since
    the previous copy is written, except with full_refresh, which writes it from scratch
    (and refits the vector index). Then, when free blocks exceed `compact_above` of the
    file, the warehouse is compacted (engram.compact).
    """
    take_in_journal(db_path)
    if not warehouse_has_data(db_path):
        raise BuildError(
            f"{db_path} has no ingested data yet: run `engram ingest PATH` first "
            "(or `make demo` for the bundled sample)"
        )
    ensure_embeddings(db_path, progress)
    plan = build_plan(db_path, select=select, full_refresh=full_refresh)
    prepared = None
    if publish and not full_refresh:
        from engram.query.serving import prepare_publish

        # the incremental publish's file copy of the previous serving copy, made while
        # dbt runs instead of after it (engram.query.serving.PreparedCopy)
        prepared = prepare_publish(db_path)
    try:
        result = run_dbt(plan.args, db_path, capture=capture, env=plan.env)
    except BaseException:
        if prepared is not None:
            prepared.discard()
        raise
    plan.succeeded(db_path)
    if publish:
        from engram.query.serving import ServingError
        from engram.query.serving import publish as publish_serving_copy

        try:
            publish_serving_copy(db_path, incremental=not full_refresh, prepared=prepared)
        except ServingError as exc:
            raise BuildError(
                f"dbt build succeeded but publishing the serving copy failed: {exc}"
            ) from exc
    from engram.compact import maybe_compact

    maybe_compact(db_path, compact_above)
    return result
