"""Run dbt against the warehouse: the same project, profile and file as a plain
`dbt build --profiles-dir .` from the repo root, with ENGRAM_DB pointing at the file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb

from engram.config import DB_ENV_VAR, PROJECT_ROOT
from engram.progress import ProgressFactory


class BuildError(Exception):
    """dbt failed, or the warehouse is not ready to build."""


def dbt_executable() -> str:
    """The dbt next to this Python (the project venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "dbt"
    if beside.exists():
        return str(beside)
    found = shutil.which("dbt")
    if not found:
        raise BuildError("dbt is not installed in this environment; run `make install`")
    return found


def dbt_env(db_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env[DB_ENV_VAR] = str(db_path)
    env.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    return env


def run_dbt(
    args: list[str], db_path: Path, *, capture: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run one dbt command on the warehouse; raises BuildError with dbt's output on failure.

    $DBT_TARGET_PATH / $DBT_LOG_PATH, when set, keep concurrent builds (tests) apart.
    """
    command = [
        dbt_executable(),
        *args,
        "--project-dir",
        str(PROJECT_ROOT),
        "--profiles-dir",
        str(PROJECT_ROOT),
    ]
    result = subprocess.run(
        command,
        env=dbt_env(db_path),
        cwd=PROJECT_ROOT,
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
    from ingest.loader import connect_for_write

    con = connect_for_write(db_path)
    try:
        return embed_missing(con, Embedder(), progress=progress).texts_embedded
    finally:
        con.close()


def warehouse_has_data(db_path: Path) -> bool:
    if not db_path.exists():
        return False
    con = duckdb.connect(str(db_path), read_only=True)
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


def build(
    db_path: Path,
    *,
    select: str | None = None,
    full_refresh: bool = False,
    capture: bool = False,
    progress: ProgressFactory | None = None,
    publish: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Embed what is missing, then `dbt build` (models and their tests) on the warehouse.

    After a successful build, publish the read-only serving copy + vector index (engram.serving)
    that queries read, unless publish=False.
    """
    if not warehouse_has_data(db_path):
        raise BuildError(
            f"{db_path} has no ingested data yet: run `engram ingest PATH` first "
            "(or `make demo` for the bundled sample)"
        )
    ensure_embeddings(db_path, progress)
    args = ["build"]
    if select:
        args += ["--select", select]
    if full_refresh:
        args.append("--full-refresh")
    result = run_dbt(args, db_path, capture=capture)
    if publish:
        from engram.serving import ServingError
        from engram.serving import publish as publish_serving_copy

        try:
            publish_serving_copy(db_path)
        except ServingError as exc:
            raise BuildError(
                f"dbt build succeeded but publishing the serving copy failed: {exc}"
            ) from exc
    return result
