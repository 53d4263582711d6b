"""Resources: where the warehouse and the inbox are, and the thresholds the checks hold
the data to. Values default from the environment at load time and can be overridden per
run in the launchpad (`resources: {inbox: {config: {path: ...}}}`)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from dagster import ConfigurableResource

from ingest.reader import SUPPORTED_SUFFIXES
from ingest.warehouse import (
    CHECKOUT_ROOT,
    DB_ENV_VAR,
    connect_for_read,
    in_checkout,
    resolve_db_path,
)

INBOX_ENV_VAR = "ENGRAM_INBOX"


def _default_inbox_root() -> Path:
    """inbox/ in a source checkout, else an inbox folder beside the default warehouse."""
    return CHECKOUT_ROOT / "inbox" if in_checkout() else resolve_db_path().parent / "inbox"


PROCESSED_DIRNAME = "processed"


def default_inbox() -> Path:
    """$ENGRAM_INBOX, else inbox/ at the project root."""
    from_env = os.environ.get(INBOX_ENV_VAR)
    return Path(from_env).expanduser().resolve() if from_env else _default_inbox_root()


class Warehouse(ConfigurableResource):
    """The DuckDB warehouse file. DuckDB allows one writing process per file, so every asset
    that writes it sits in the same concurrency pool (see dagster.yaml)."""

    db_path: str

    @property
    def path(self) -> Path:
        return Path(self.db_path).expanduser().resolve()

    def connect_read(self) -> duckdb.DuckDBPyConnection:
        return connect_for_read(self.path)

    @contextmanager
    def dbt_env(self) -> Iterator[None]:
        """dbt runs as a subprocess that inherits os.environ (DbtCliResource has no env
        argument), and profiles.yml reads $ENGRAM_DB: point it at this warehouse meanwhile.
        $ENGRAM_CHANGED_SINCE (the watermark `engram build` passes) is emptied meanwhile:
        a Dagster run checks every row, whatever the daemon's environment holds. dbt's log
        file is kept at info, as `engram build` keeps it (engram.build.dbt_env: at debug it
        takes every statement), unless $DBT_LOG_LEVEL_FILE says otherwise."""
        from engram.build import CHANGED_SINCE_ENV, LOG_LEVEL_FILE_ENV, log_level_file

        settings = {
            DB_ENV_VAR: str(self.path),
            CHANGED_SINCE_ENV: "",
            LOG_LEVEL_FILE_ENV: log_level_file(),
        }
        previous = {name: os.environ.get(name) for name in settings}
        os.environ.update(settings)
        try:
            yield
        finally:
            for name, value in previous.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


class Inbox(ConfigurableResource):
    """A folder new export files are dropped into. A file is ingested once: after its
    transaction commits it is moved under processed/ (the ingest ledger also skips a file
    whose content was loaded before, so a crash between commit and move is harmless)."""

    path: str
    processed_path: str = ""  # empty: <path>/processed
    settle_seconds: float = 1.0  # files modified more recently may still be being written

    @property
    def root(self) -> Path:
        return Path(self.path).expanduser().resolve()

    @property
    def processed(self) -> Path:
        if self.processed_path:
            return Path(self.processed_path).expanduser().resolve()
        return self.root / PROCESSED_DIRNAME

    def pending(self, *, now: float | None = None) -> list[Path]:
        """Ready files: .jsonl/.json anywhere under the inbox except processed/, not hidden,
        and not modified in the last settle_seconds."""
        if not self.root.is_dir():
            return []
        now = datetime.now(UTC).timestamp() if now is None else now
        processed = self.processed
        ready = []
        for candidate in sorted(self.root.rglob("*")):
            if not candidate.is_file() or candidate.suffix not in SUPPORTED_SUFFIXES:
                continue
            relative = candidate.relative_to(self.root)
            if any(part.startswith(".") for part in relative.parts):
                continue
            if candidate.is_relative_to(processed):
                continue
            if now - candidate.stat().st_mtime < self.settle_seconds:
                continue
            ready.append(candidate)
        return ready

    def fingerprint(self, path: Path) -> str:
        """Identity of one drop of a file (a re-exported file with the same name is new)."""
        stat = path.stat()
        return f"{path.relative_to(self.root)}|{stat.st_size}|{stat.st_mtime_ns}"

    def archive(self, path: Path, batch: str) -> Path:
        """Move an ingested file to processed/<batch>/, keeping its path under the inbox."""
        try:
            relative = path.resolve().relative_to(self.root)
        except ValueError:
            relative = Path(path.name)
        target = self.processed / batch / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), target)
        return target


class QualityThresholds(ConfigurableResource):
    """Limits the Python asset checks enforce."""

    max_rejected_rate: float = 0.05  # rejected / read records of the latest ingest run
    max_unknown_pattern_rate: float = 0.01  # events whose pattern_id has no pattern row
    marts_max_age_hours: float = 36.0  # the daily schedule plus slack


def default_warehouse() -> Warehouse:
    return Warehouse(db_path=str(resolve_db_path()))


def default_inbox_resource() -> Inbox:
    return Inbox(path=str(default_inbox()))
