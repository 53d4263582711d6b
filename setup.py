"""Packaging hook: a wheel carries the dbt project, so an installed engram can build.

`pip install .` (not editable) copies dbt_project.yml, profiles.yml, models/, macros/,
seeds/ and tests/dbt/ into the wheel as `engram/dbt_project/`; engram.project finds it
there when engram runs outside a source checkout. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PROJECT_FILES = ("dbt_project.yml", "profiles.yml")
PROJECT_DIRS = ("models", "macros", "seeds", "tests/dbt")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "target", "logs")


class BuildPyWithDbtProject(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install runs from the checkout, which has the project
        target = Path(self.build_lib) / "engram" / "dbt_project"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for name in PROJECT_FILES:
            shutil.copy2(ROOT / name, target / name)
        for name in PROJECT_DIRS:
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, target / name, ignore=IGNORE)


setup(cmdclass={"build_py": BuildPyWithDbtProject})
