"""Where things live: one place resolves the warehouse path and the project root.

The dbt profile (profiles.yml) reads the same ENGRAM_DB variable, so `engram build`
and a plain `dbt build --profiles-dir .` write the same file.
"""

from __future__ import annotations

import os
from pathlib import Path

DB_ENV_VAR = "ENGRAM_DB"
DEFAULT_DB_RELATIVE = Path("warehouse") / "engram.duckdb"
EMBEDDING_DIM = 384
MODEL_NAME = "all-MiniLM-L6-v2"

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def resolve_db_path(db: str | os.PathLike[str] | None = None) -> Path:
    """The warehouse file: --db, else $ENGRAM_DB, else warehouse/engram.duckdb in the project.

    Relative paths are taken from the current directory, as a user typing them expects;
    the default is anchored at the project root so it does not depend on where you stand.
    """
    if db:
        return Path(db).expanduser().resolve()
    from_env = os.environ.get(DB_ENV_VAR)
    if from_env:
        return Path(from_env).expanduser().resolve()
    return PROJECT_ROOT / DEFAULT_DB_RELATIVE
