"""Shared fixtures: one model load per session, and warehouses built for real
(generated data with planted structure, and the bundled flask sample) through the
same ingest + dbt path users run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engram.build import UNIT_TESTS_RECORD_ENV, build
from ingest.embedder import Embedder
from ingest.loader import ingest_paths
from ingest.warehouse import CHECKOUT_ROOT

SAMPLE_DIR = CHECKOUT_ROOT / "data" / "sample" / "flask-history"
PLANTED = {"n_patterns": 300, "n_events": 6000, "seed": 7}


@pytest.fixture(scope="session", autouse=True)
def _isolated_dbt(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep dbt's target/ and logs/ per test session so parallel runs don't collide,
    and never touch the user's warehouse."""
    scratch = tmp_path_factory.mktemp("dbt")
    os.environ["DBT_TARGET_PATH"] = str(scratch / "target")
    os.environ["DBT_LOG_PATH"] = str(scratch / "logs")
    # one record of the code whose unit tests passed, for every warehouse of the session:
    # the unit tests run on its first build, on each --full-refresh and where a test
    # removes this (tests/test_build.py), not again on each new warehouse's first build
    os.environ[UNIT_TESTS_RECORD_ENV] = str(scratch / "unit_tests_passed.json")
    os.environ.pop("ENGRAM_DB", None)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture(scope="session")
def planted_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engram.generate import generate

    outdir = tmp_path_factory.mktemp("planted")
    generate(outdir, PLANTED["n_patterns"], PLANTED["n_events"], seed=PLANTED["seed"])
    return outdir


@pytest.fixture(scope="session")
def planted_warehouse(
    tmp_path_factory: pytest.TempPathFactory, planted_data: Path, embedder: Embedder
) -> Path:
    """Generated data, ingested and built with every dbt model and test."""
    db = tmp_path_factory.mktemp("wh_planted") / "engram.duckdb"
    ingest_paths([planted_data], db, embedder=embedder)
    build(db, capture=True)
    return db


@pytest.fixture(scope="session")
def sample_warehouse(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """The bundled real flask-history data, ingested and built."""
    db = tmp_path_factory.mktemp("wh_sample") / "engram.duckdb"
    ingest_paths([SAMPLE_DIR], db, embedder=embedder)
    build(db, capture=True)
    return db
