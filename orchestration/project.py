"""The dbt project as Dagster sees it: the repo root, with a manifest that exists even on a
fresh clone (parsed at load time when missing, re-parsed on every load under `dagster dev`
so model edits show up on reload)."""

from __future__ import annotations

import os
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from dagster_dbt.dbt_project import using_dagster_dev

from engram.build import dbt_executable
from engram.project import project_dir


def _target_path() -> Path:
    """$DBT_TARGET_PATH when set (tests and parallel sessions keep their artifacts apart)."""
    return Path(os.environ.get("DBT_TARGET_PATH") or "target")


def dbt_resource(project: DbtProject) -> DbtCliResource:
    """The dbt beside this Python (the project venv), found even when .venv/bin is not on
    PATH (`make ui` calls .venv/bin/dagster directly)."""
    return DbtCliResource(project_dir=project, dbt_executable=dbt_executable())


_SOURCES = ("models", "macros", "tests/dbt", "seeds", "dbt_project.yml", "profiles.yml")


def manifest_is_stale(project: DbtProject) -> bool:
    """Missing, or older than any file dbt parses: a stale manifest names nodes a `dbt build`
    no longer has (or lacks new ones), and dagster-dbt fails on events it cannot map."""
    if not project.manifest_path.exists():
        return True
    built = project.manifest_path.stat().st_mtime
    for name in _SOURCES:
        path = project.project_dir / name
        files = [path] if path.is_file() else path.rglob("*") if path.is_dir() else []
        if any(f.is_file() and f.stat().st_mtime > built for f in files):
            return True
    return False


def load_dbt_project() -> DbtProject:
    project = DbtProject(project_dir=project_dir(), target_path=_target_path())
    # DbtProject.prepare_if_dev() re-parses under `dagster dev` only, with the `dbt` on PATH.
    if using_dagster_dev() or manifest_is_stale(project):
        dbt_resource(project).cli(["parse", "--quiet"], target_path=project.target_path).wait()
    return project


DBT_PROJECT = load_dbt_project()
