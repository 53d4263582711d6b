"""The marts on Apache Spark equal the DuckDB build (issue: scale-out on Spark).

One flask-history warehouse is built the usual way (ingest + dbt on DuckDB); its raw tables
are exported to Parquet and the whole project is built again on a local Spark session
(engram/spark.py: dbt-spark for the SQL models, the dbt Python models as a step between
dbt waves). Then every model, both engines: the same columns, the same rows (sorted by
their non-float columns), numbers within 1e-9 relative, strings, dates, timestamps and
embedding arrays equal. DuckDB is the reference the rest of the suite already checks.

Runs under `make spark-test` (which installs requirements-spark.lock); skipped, saying
why, where pyspark or dbt-spark is missing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

pytestmark = [pytest.mark.spark, pytest.mark.slow]

pytest.importorskip(
    "pyspark", reason="pyspark is not installed: `make spark-test` installs requirements-spark.lock"
)
pytest.importorskip(
    "dbt.adapters.spark",
    reason="dbt-spark is not installed: `make spark-test` installs requirements-spark.lock",
)

from engram.numeric.incremental import BOOKKEEPING  # noqa: E402
from engram.spark import (  # noqa: E402
    Model,
    format_timings,
    load_models,
    spark_build,
    spark_table_as_arrow,
)

REL_TOL = 1e-9
# Values that should be 0 come out as +-1e-17 from sums taken in another order.
ABS_TOL = 1e-12
# A trend t-statistic of a pair whose slope is exactly zero is a ratio of rounding residues
# (slope ~1e-17 over an se ~1e-9): DuckDB alone gives 0, 2e-8 or null (the exact-fit rule)
# for the same file pair on two builds of one warehouse, so below this size a t-statistic
# is zero, whatever the engine. It is never near trend_min_abs_t (2), so no direction flips.
RESIDUE_COLUMNS = {"slope_t_stat": 1e-6}


@pytest.fixture(scope="module")
def spark_build_of_sample(
    sample_warehouse: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, dict[str, Model], Path]]:
    work = tmp_path_factory.mktemp("spark")
    spark, timings = spark_build(sample_warehouse, work, run_tests=True)
    print("Spark stage timings:\n" + format_timings(timings))
    models = load_models(work)
    yield spark, models, work
    spark.stop()


def _duckdb_table(db: Path, relation: str) -> Any:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.sql(f"select * from {relation}").to_arrow_table()


def _cell(value: Any) -> Any:
    """A comparable Python value: arrays as tuples, NaN-free floats, dates as they are;
    decimals as floats (macros/exact_decimal.sql: DuckDB sums qualities as DECIMAL(38, 18),
    Spark keeps the double, so the two agree to the float tolerance, not digit for digit)."""
    if isinstance(value, np.ndarray | list | tuple):
        return tuple(_cell(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Decimal):
        return float(value)
    return value


def _sort_key(row: dict[str, Any], exact: list[str], floats: list[str]) -> tuple[Any, ...]:
    """Rows ordered by their exact columns, then by their floats rounded to 9 digits
    (an ordering robust to the last-bit differences the comparison allows)."""
    key: list[Any] = []
    for name in exact:
        value = row[name]
        key.append((value is None, "" if value is None else str(value)))
    for name in floats:
        value = row[name]
        key.append((value is None, 0.0 if value is None else float(f"{value:.9g}")))
    return tuple(key)


def _same(a: Any, b: Any, column: str = "") -> bool:
    residue = RESIDUE_COLUMNS.get(column)
    if residue is not None:
        a = 0.0 if a is None or abs(a) < residue else a
        b = 0.0 if b is None or abs(b) < residue else b
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        if isinstance(a, float) or isinstance(b, float):
            if math.isnan(a) or math.isnan(b):
                return math.isnan(a) and math.isnan(b)
            return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
        return a == b
    return a == b


def table_differences(duck: Any, spark: Any, limit: int = 5) -> list[str]:
    """What differs between two Arrow tables of one model (empty: equal), BOOKKEEPING
    columns aside once both have them."""
    import pyarrow as pa

    if duck.column_names != spark.column_names:
        return [f"columns differ: duckdb {duck.column_names} vs spark {spark.column_names}"]
    bookkeeping = [c for c in BOOKKEEPING if c in duck.column_names]
    duck, spark = duck.drop_columns(bookkeeping), spark.drop_columns(bookkeeping)
    if duck.num_rows != spark.num_rows:
        return [f"row count differs: duckdb {duck.num_rows} vs spark {spark.num_rows}"]
    floats = [
        f.name for f in duck.schema if pa.types.is_floating(f.type) or pa.types.is_decimal(f.type)
    ]
    exact = [
        f.name
        for f in duck.schema
        if f.name not in floats
        and not (pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type))
    ]
    rows = {}
    for side, table in (("duckdb", duck), ("spark", spark)):
        listed = [{k: _cell(v) for k, v in row.items()} for row in table.to_pylist()]
        rows[side] = sorted(listed, key=lambda r: _sort_key(r, exact, floats))
    problems: list[str] = []
    for index, (left, right) in enumerate(zip(rows["duckdb"], rows["spark"], strict=True)):
        for name in duck.column_names:
            if not _same(left[name], right[name], name):
                shown_left, shown_right = str(left[name])[:80], str(right[name])[:80]
                problems.append(f"row {index} {name}: duckdb {shown_left} vs spark {shown_right}")
                if len(problems) >= limit:
                    return problems
    return problems


def test_the_spark_install_left_the_main_pins_alone() -> None:
    """After requirements-spark.lock went into .venv (make spark-test), every package of
    requirements.lock is still at its pinned version: pip resolved the Spark extras
    without up- or downgrading what `make test` ran against."""
    from importlib.metadata import PackageNotFoundError, version

    lock = (Path(__file__).resolve().parents[1] / "requirements.lock").read_text()
    pinned_versions = dict(
        line.split("==", 1) for line in lock.splitlines() if "==" in line and line[0] != "#"
    )
    assert len(pinned_versions) > 100, "requirements.lock lost its pins"
    moved = {}
    for name, pinned in pinned_versions.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != pinned:
            moved[name] = (pinned, installed)
    assert not moved, moved


def test_comparison_sees_a_difference() -> None:
    """Guard the guard: a changed number, a changed string, a missing row all show."""
    import pyarrow as pa

    base = pa.table({"k": ["a", "b"], "x": [1.0, 2.0], "v": [[1.0, 2.0], [3.0, 4.0]]})
    assert table_differences(base, base) == []
    nudged = base.set_column(1, "x", pa.array([1.0, 2.0 * (1 + 1e-12)]))
    assert table_differences(base, nudged) == []  # inside 1e-9 relative
    moved = base.set_column(1, "x", pa.array([1.0, 2.0 * (1 + 1e-6)]))
    assert table_differences(base, moved)
    renamed = base.set_column(0, "k", pa.array(["a", "c"]))
    assert table_differences(base, renamed)
    assert table_differences(base, base.slice(0, 1))
    changed_array = base.set_column(2, "v", pa.array([[1.0, 2.0], [3.0, 5.0]]))
    assert table_differences(base, changed_array)
    t_stats = pa.table({"k": ["a", "b"], "slope_t_stat": [None, 2.5]})
    residue = t_stats.set_column(1, "slope_t_stat", pa.array([2e-8, 2.5]))
    assert table_differences(t_stats, residue) == []  # rounding residue of a zero slope
    real = t_stats.set_column(1, "slope_t_stat", pa.array([0.5, 2.5]))
    assert table_differences(t_stats, real)
    stamped = base.append_column("written_at", pa.array([1, 2]))
    assert table_differences(stamped, stamped.set_column(3, "written_at", pa.array([3, 4]))) == []
    assert table_differences(stamped, base)  # a bookkeeping column missing still shows


def test_every_model_equals_the_duckdb_build(
    sample_warehouse: Path, spark_build_of_sample: tuple[Any, dict[str, Model], Path]
) -> None:
    spark, models, _ = spark_build_of_sample
    assert len(models) >= 30, "the manifest lost models"
    # every mart file (trends, files, semantic, predictions, loop, upkeep, ...) is a model
    # compared below: a new mart cannot be left out of the Spark build unnoticed
    marts_dir = Path(__file__).resolve().parents[1] / "models" / "marts"
    mart_files = {p.stem for p in marts_dir.rglob("*") if p.suffix in {".sql", ".py"}}
    assert len(mart_files) >= 15, "models/marts lost its files"
    assert mart_files <= {m.name for m in models.values()}, mart_files - {
        m.name for m in models.values()
    }
    python_models = {m.name for m in models.values() if m.language == "python"}
    assert {"int_patterns__clustered", "int_pattern_texts__neighbors", "pattern_predictions"} <= (
        python_models
    )
    failures: dict[str, list[str]] = {}
    non_empty = 0
    for model in sorted(models.values(), key=lambda m: m.name):
        duck = _duckdb_table(sample_warehouse, model.relation)
        on_spark = spark_table_as_arrow(spark, model.relation)
        non_empty += duck.num_rows > 0
        problems = table_differences(duck, on_spark)
        if problems:
            failures[model.name] = problems
    assert not failures, "\n".join(
        f"{name}:\n  " + "\n  ".join(problems) for name, problems in failures.items()
    )
    # the comparison compared something: most models have rows on the sample
    assert non_empty >= len(models) - 5
