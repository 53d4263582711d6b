"""Where the dbt project is, and its settings (the `vars` of dbt_project.yml).

A source checkout builds the project at its root. An installed engram (a wheel, not
editable) carries a copy of the project as package data in `engram/dbt_project/`, put
there by setup.py when the wheel is built. `$ENGRAM_PROJECT_DIR` overrides both, for a
project kept elsewhere. dbt writes target/ and logs/ into the project folder unless told
otherwise; for the packaged copy (site-packages may be read-only, and is shared by
everyone) they go to a folder beside the warehouse instead (`dbt_state_dir`).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from ingest.warehouse import CHECKOUT_ROOT, in_checkout

PROJECT_ENV_VAR = "ENGRAM_PROJECT_DIR"
PACKAGED_PROJECT = Path(__file__).resolve().parent / "dbt_project"
PROJECT_FILE = "dbt_project.yml"


class ProjectNotFound(Exception):
    """No dbt project where one was expected."""


def project_dir() -> Path:
    """$ENGRAM_PROJECT_DIR, else the checkout's root, else the copy packaged with engram."""
    from_env = os.environ.get(PROJECT_ENV_VAR)
    if from_env:
        path = Path(from_env).expanduser().resolve()
        if not (path / PROJECT_FILE).is_file():
            raise ProjectNotFound(f"${PROJECT_ENV_VAR}={from_env}: no {PROJECT_FILE} there")
        return path
    if in_checkout():
        return CHECKOUT_ROOT
    if (PACKAGED_PROJECT / PROJECT_FILE).is_file():
        return PACKAGED_PROJECT
    raise ProjectNotFound(
        f"the dbt project was not found: not in a source checkout and no packaged copy at "
        f"{PACKAGED_PROJECT}; reinstall engram from its wheel or set ${PROJECT_ENV_VAR}"
    )


def is_packaged(path: Path) -> bool:
    return path == PACKAGED_PROJECT


def dbt_state_dir(db_path: Path) -> Path:
    """Where dbt's target/ and logs/ go for the packaged project: beside the warehouse."""
    return Path(db_path).parent / f".{Path(db_path).stem}.dbt"


@lru_cache(maxsize=1)
def dbt_vars() -> dict[str, Any]:
    """The `vars` of dbt_project.yml: the one home of the models' settings, which the
    query side reads too (prior strength, interval mass) so both use the same numbers."""
    import yaml

    with (project_dir() / PROJECT_FILE).open() as handle:
        return dict(yaml.safe_load(handle).get("vars") or {})
