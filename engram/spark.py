"""The marts on Apache Spark: the same dbt project, run by dbt-spark (docs/scale-out.md).

Why a module and not only a dbt target: three steps surround `dbt run --target spark`.

1. Raw inputs. `engram ingest` writes DuckDB's raw schema; Spark reads Parquet. `export_raw`
   copies every raw table to one Parquet file, `register_raw` declares each as a Spark
   table `raw.<name> USING parquet`, so the dbt sources resolve unchanged.
2. Python models. dbt-spark runs Python models only by submitting them to Databricks;
   with `method: session` (local, tests) it cannot. `build_on_spark` therefore runs the SQL
   models with dbt in waves and, between waves, the dbt Python models themselves
   (models/**/*.py, imported from their files, not copied): each reads its refs from the
   Spark tables through Arrow (`ModelContext.ref` hands it a DuckDB relation over that
   data, the API the models are written against) and its result is written back as a
   Spark table of the same name. The numbers come from the same functions as the DuckDB
   build (engram/numeric).
3. One session. dbt-spark's session method calls `SparkSession.builder.getOrCreate()`;
   `spark_session` creates that session first, in this process, with the settings a small
   local build needs (warehouse and metastore under the work folder, UTC, ANSI off, few
   shuffle partitions), and dbt is invoked in-process (dbtRunner) so it reuses it.

Incremental models are plain tables on Spark (macros/dialect.sql, incremental_materialization):
parquet tables have no delete+insert; a cluster with Delta Lake would use `merge`.

Run it with `python -m engram.spark --help`; `make spark-test` builds both engines and
compares every model (tests/test_spark.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engram.project import project_dir
from ingest.warehouse import resolve_db_path

SPARK_TARGET = "spark"
RAW_SCHEMA = "raw"
# Columns that hold a unit-length FLOAT[d] embedding in DuckDB: Spark has array<float>
# (variable length), the Python models want the fixed-size list back.
EMBEDDING_COLUMNS = ("embedding", "centroid")


class SparkBuildError(Exception):
    """The Spark build could not run or a step of it failed."""


@dataclass
class StageTiming:
    """Seconds one stage took: a dbt wave, one Python model, the export, the tests."""

    stage: str
    seconds: float
    models: list[str] = field(default_factory=list)
    # dbt's own execution time of each model or test in a dbt stage (the rest of the
    # stage's seconds is dbt's and Spark's per-command overhead)
    node_seconds: dict[str, float] = field(default_factory=dict)


def require_pyspark() -> None:
    """Fail with the command that fixes it, not an ImportError deep inside dbt."""
    try:
        import pyspark  # noqa: F401
        from dbt.adapters import spark  # noqa: F401
    except ImportError as error:
        raise SparkBuildError(
            f"the Spark path needs pyspark and dbt-spark ({error.name} is missing): "
            "`make spark-test` installs them, or "
            "`.venv/bin/pip install -r requirements-spark.lock`"
        ) from None


# --- 1. raw inputs -------------------------------------------------------------------


def export_raw(db_path: Path, parquet_dir: Path) -> dict[str, Path]:
    """Every table of DuckDB's raw schema as `<parquet_dir>/<table>.parquet` (read-only
    on the warehouse). Returns table name -> file."""
    import duckdb

    parquet_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    with duckdb.connect(str(db_path), read_only=True) as con:
        tables = [
            row[0]
            for row in con.execute(
                "select table_name from information_schema.tables "
                "where table_schema = ? and table_type = 'BASE TABLE' order by table_name",
                [RAW_SCHEMA],
            ).fetchall()
        ]
        if not tables:
            raise SparkBuildError(
                f"{db_path}: no tables in schema {RAW_SCHEMA}; run `engram ingest` first"
            )
        for table in tables:
            path = parquet_dir / f"{table}.parquet"
            quoted = str(path).replace("'", "''")
            con.execute(f"copy {RAW_SCHEMA}.{table} to '{quoted}' (format parquet)")
            files[table] = path
    return files


def register_raw(spark: Any, files: dict[str, Path]) -> None:
    """Declare each Parquet file as the Spark table raw.<name> (external: the file is the
    data; dropping the table leaves it)."""
    spark.sql(f"create database if not exists {RAW_SCHEMA}")
    for table, path in sorted(files.items()):
        spark.sql(f"drop table if exists {RAW_SCHEMA}.{table}")
        location = str(path.resolve()).replace("'", "\\'")
        spark.sql(f"create table {RAW_SCHEMA}.{table} using parquet location '{location}'")


# --- 3. the session --------------------------------------------------------------------


def spark_session(
    work_dir: Path, *, cores: int = 2, driver_memory: str = "2g", catalog: str = "in-memory"
) -> Any:
    """The local SparkSession dbt-spark will reuse (it calls getOrCreate).

    The table files go under `work_dir`. The catalog is Spark's in-memory one by default:
    the tables live as long as this process (a local build, a test), and declaring them
    costs milliseconds, where the Hive catalog dbt-spark's session method asks for starts a
    Derby metastore (about two minutes on a small machine). `catalog="hive"` keeps the
    metastore under `work_dir` too (never the current folder), so the tables outlive the
    process. A cluster has its own metastore (docs/scale-out.md). ANSI mode off: dbt-spark sets
    it too (Spark 4 turns it on; the models' casts assume the lenient rules). UTC, because
    the raw timestamps are UTC wall times. Few shuffle partitions: the default 200 costs
    seconds per stage on data of this size.
    """
    require_pyspark()
    from pyspark.sql import SparkSession

    work_dir = work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    java_options = (
        f"-Dderby.system.home={work_dir} -Dderby.stream.error.file={work_dir / 'derby.log'}"
    )
    builder = (
        SparkSession.builder.master(f"local[{cores}]")
        .appName("engram")
        .enableHiveSupport()
        .config("spark.sql.warehouse.dir", str(work_dir / "spark-warehouse"))
        .config(
            "spark.hadoop.javax.jdo.option.ConnectionURL",
            f"jdbc:derby:;databaseName={work_dir / 'metastore_db'};create=true",
        )
        .config("spark.driver.extraJavaOptions", java_options)
        .config("spark.driver.memory", driver_memory)
        .config("spark.sql.ansi.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(max(cores * 2, 2)))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.catalogImplementation", catalog)
    )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


# --- 2. dbt in waves, Python models between them -------------------------------------


def _dbt(args: list[str], work_dir: Path) -> Any:
    """One in-process dbt command on the spark target; raises with dbt's failures."""
    from dbt.cli.main import dbtRunner

    project = str(project_dir())
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    full = [
        *args,
        "--target",
        SPARK_TARGET,
        "--project-dir",
        project,
        "--profiles-dir",
        project,
        "--target-path",
        str(work_dir / "target"),
        "--log-path",
        str(work_dir / "logs"),
    ]
    result = dbtRunner().invoke(full)
    if not result.success:
        detail = ""
        if result.exception is not None:
            detail = str(result.exception)
        elif result.result is not None:
            failed = [
                f"{r.node.name}: {r.message}"
                for r in result.result
                if str(getattr(r, "status", "")).lower() in {"error", "fail"}
            ]
            detail = "; ".join(failed)
        raise SparkBuildError(f"`dbt {' '.join(args)} --target spark` failed: {detail}")
    return result


def node_seconds(result: Any) -> dict[str, float]:
    """dbt's execution time of each node a dbtRunner result ran, by node name."""
    results = getattr(result.result, "results", None) or []
    return {r.node.name: float(r.execution_time) for r in results}


@dataclass(frozen=True)
class Model:
    """One dbt model as the manifest describes it."""

    unique_id: str
    name: str
    language: str
    schema: str
    alias: str
    path: Path
    parents: tuple[str, ...]
    config: dict[str, Any]

    @property
    def relation(self) -> str:
        return f"{self.schema}.{self.alias}"


def load_models(work_dir: Path) -> dict[str, Model]:
    """Parse the project for the spark target; every enabled model by unique_id."""
    _dbt(["parse"], work_dir)
    manifest = json.loads((work_dir / "target" / "manifest.json").read_text())
    models: dict[str, Model] = {}
    for uid, node in manifest["nodes"].items():
        if node["resource_type"] != "model":
            continue
        models[uid] = Model(
            unique_id=uid,
            name=node["name"],
            language=node.get("language", "sql"),
            schema=node["schema"],
            alias=node.get("alias") or node["name"],
            path=project_dir() / node["original_file_path"],
            parents=tuple(p for p in node["depends_on"]["nodes"] if p.startswith("model.")),
            config=dict(node["config"]),
        )
    return models


def waves(models: dict[str, Model]) -> list[tuple[str, list[Model]]]:
    """The build order: alternately every SQL model whose ancestors are built ("sql") and
    every Python model whose parents are ("python"), until all are. dbt orders the models
    within one SQL wave itself."""
    done: set[str] = set()
    order: list[tuple[str, list[Model]]] = []
    while len(done) < len(models):
        sql_ready = _closure_ready(models, done)
        if sql_ready:
            order.append(("sql", sql_ready))
            done.update(m.unique_id for m in sql_ready)
        python_ready = [
            m
            for m in models.values()
            if m.language == "python"
            and m.unique_id not in done
            and all(p in done for p in m.parents)
        ]
        if python_ready:
            order.append(("python", sorted(python_ready, key=lambda m: m.name)))
            done.update(m.unique_id for m in python_ready)
        if not sql_ready and not python_ready:
            missing = sorted(m.name for m in models.values() if m.unique_id not in done)
            raise SparkBuildError(f"models with unbuildable parents: {', '.join(missing)}")
    return order


def _closure_ready(models: dict[str, Model], done: set[str]) -> list[Model]:
    """SQL models not built yet that depend on no unbuilt Python model, directly or not."""
    blocked: dict[str, bool] = {}

    def is_blocked(uid: str) -> bool:
        if uid in done:
            return False
        if uid not in blocked:
            model = models[uid]
            blocked[uid] = model.language == "python" or any(
                is_blocked(p) for p in model.parents if p in models
            )
        return blocked[uid]

    return sorted(
        (
            m
            for m in models.values()
            if m.unique_id not in done and m.language == "sql" and not is_blocked(m.unique_id)
        ),
        key=lambda m: m.name,
    )


class _ModelConfig:
    """`dbt.config`: a no-op when called (materialization is ours), `.get` reads the
    model's config from the manifest (the yml's `config:` with vars rendered)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def __call__(self, **_: Any) -> None:
        return None

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)


class ModelContext:
    """The `dbt` object a dbt-duckdb Python model receives, over Spark tables: `ref(name)`
    is a DuckDB relation on the Arrow data of the Spark table (so the model's own
    .project/.filter/.order/.to_arrow_table calls run unchanged)."""

    def __init__(self, spark: Any, con: Any, model: Model, models: dict[str, Model]) -> None:
        self._spark = spark
        self._con = con
        self._by_name = {m.name: m for m in models.values()}
        self.config = _ModelConfig(model.config)
        self.this = model.relation

    def ref(self, name: str) -> Any:
        table = spark_table_as_arrow(self._spark, self._by_name[name].relation)
        return self._con.from_arrow(table)


def spark_table_as_arrow(spark: Any, relation: str) -> Any:
    """A Spark table as a pyarrow Table, embeddings back as fixed-size FLOAT[d] lists."""
    import pyarrow as pa

    table = spark.table(relation).toArrow()
    for index, arrow_field in enumerate(table.schema):
        if arrow_field.name in EMBEDDING_COLUMNS and pa.types.is_list(arrow_field.type):
            column = table.column(index).combine_chunks()
            lengths = column.value_lengths().drop_null()
            width = int(lengths[0].as_py()) if len(lengths) else 0
            if width:
                fixed = column.cast(pa.list_(arrow_field.type.value_type, width))
                table = table.set_column(index, arrow_field.name, fixed)
    return table


def write_spark_table(spark: Any, relation: str, result: Any) -> None:
    """A Python model's result (pyarrow Table or pandas DataFrame) as the Spark table
    `relation`, replacing it. Fixed-size lists become array<...> (what Spark has)."""
    import pyarrow as pa

    table = result if isinstance(result, pa.Table) else pa.Table.from_pandas(result)
    table = table.replace_schema_metadata(None)
    for index, arrow_field in enumerate(table.schema):
        if pa.types.is_fixed_size_list(arrow_field.type):
            column = table.column(index).cast(pa.list_(arrow_field.type.value_type))
            table = table.set_column(index, arrow_field.name, column)
    schema, _, _ = relation.partition(".")
    spark.sql(f"create database if not exists {schema}")
    frame = spark.createDataFrame(table)
    frame.write.mode("overwrite").format("parquet").saveAsTable(relation)


def run_python_model(spark: Any, model: Model, models: dict[str, Model]) -> None:
    """Import the model's file and run its `model(dbt, session)` against Spark data."""
    import duckdb

    spec = importlib.util.spec_from_file_location(f"engram_dbt_model_{model.name}", model.path)
    if spec is None or spec.loader is None:
        raise SparkBuildError(f"{model.path}: cannot load the Python model")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with duckdb.connect() as con:
        result = module.model(ModelContext(spark, con, model, models), con)
        if isinstance(result, duckdb.DuckDBPyRelation):
            result = result.to_arrow_table()
        write_spark_table(spark, model.relation, result)


def build_on_spark(
    spark: Any,
    work_dir: Path,
    *,
    run_tests: bool = True,
    say: Callable[[str], None] = lambda _: None,
) -> list[StageTiming]:
    """Every model on Spark (SQL waves by dbt, Python models between them), then the dbt
    data tests unless `run_tests` is false. Raw tables must be registered already."""
    timings: list[StageTiming] = []
    started = time.perf_counter()
    models = load_models(work_dir)
    timings.append(StageTiming("dbt parse", time.perf_counter() - started))
    for kind, batch in waves(models):
        if kind == "sql":
            names = [m.name for m in batch]
            say(f"dbt run on Spark: {len(names)} SQL models")
            started = time.perf_counter()
            result = _dbt(["run", "--select", *names], work_dir)
            timings.append(
                StageTiming("sql wave", time.perf_counter() - started, names, node_seconds(result))
            )
        else:
            for model in batch:
                say(f"Python model on Spark data: {model.name}")
                started = time.perf_counter()
                run_python_model(spark, model, models)
                timings.append(
                    StageTiming("python model", time.perf_counter() - started, [model.name])
                )
    if run_tests:
        say("dbt test on Spark (data tests)")
        started = time.perf_counter()
        result = _dbt(["test", "--exclude", "test_type:unit"], work_dir)
        timings.append(
            StageTiming("dbt test", time.perf_counter() - started, [], node_seconds(result))
        )
    return timings


def spark_build(
    db_path: Path,
    work_dir: Path,
    *,
    run_tests: bool = True,
    catalog: str = "in-memory",
    say: Callable[[str], None] = lambda _: None,
) -> tuple[Any, list[StageTiming]]:
    """The whole Spark path from a DuckDB warehouse: export raw, register it, build.
    Returns the session (still open, for reading the tables) and the stage timings."""
    require_pyspark()
    timings: list[StageTiming] = []
    started = time.perf_counter()
    spark = spark_session(work_dir, catalog=catalog)
    timings.append(StageTiming("spark session start", time.perf_counter() - started))
    say(f"exporting raw tables of {db_path} to Parquet")
    started = time.perf_counter()
    files = export_raw(db_path, work_dir / "raw")
    timings.append(StageTiming("export raw to parquet", time.perf_counter() - started))
    started = time.perf_counter()
    register_raw(spark, files)
    timings.append(StageTiming("register raw tables", time.perf_counter() - started))
    timings += build_on_spark(spark, work_dir, run_tests=run_tests, say=say)
    return spark, timings


def format_timings(timings: Iterable[StageTiming]) -> str:
    lines = []
    for timing in timings:
        what = f" ({', '.join(timing.models)})" if len(timing.models) <= 3 else ""
        count = f" [{len(timing.models)} models]" if len(timing.models) > 3 else ""
        lines.append(f"  {timing.seconds:8.2f} s  {timing.stage}{count}{what}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engram.spark",
        description=(
            "Build engram's marts on Apache Spark (a local in-process session) from a "
            "DuckDB warehouse filled by `engram ingest`: export the raw tables to Parquet, "
            "register them as Spark tables, run the dbt project with --target spark (SQL "
            "models by dbt-spark, the Python models as a step between dbt waves), then the "
            "dbt data tests. Needs `pip install -r requirements-spark.lock` and Java 17. "
            "See docs/scale-out.md."
        ),
    )
    parser.add_argument(
        "--db",
        type=Path,
        default=None,
        help="DuckDB warehouse to read raw tables from ($ENGRAM_DB or warehouse/engram.duckdb)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path("warehouse/spark"),
        help="where the Parquet files, Spark tables, metastore and dbt target go "
        "(default warehouse/spark)",
    )
    parser.add_argument("--no-tests", action="store_true", help="skip `dbt test` on Spark")
    parser.add_argument(
        "--timings-json",
        type=Path,
        default=None,
        help="also write the stage timings here as JSON (bench/spark_vs_duckdb.py reads it)",
    )
    parser.add_argument(
        "--hive",
        action="store_true",
        help="keep the Spark tables in a Hive (Derby) metastore under --work-dir, so they "
        "outlive the run (slower start: about two minutes); default: in-memory catalog",
    )
    args = parser.parse_args(argv)
    db_path = resolve_db_path(args.db)
    if not db_path.exists():
        parser.error(f"{db_path}: no warehouse there; run `engram ingest` first")
    try:
        spark, timings = spark_build(
            db_path,
            args.work_dir,
            run_tests=not args.no_tests,
            catalog="hive" if args.hive else "in-memory",
            say=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except SparkBuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("stage timings (seconds):")
    print(format_timings(timings))
    if args.timings_json:
        args.timings_json.write_text(json.dumps([asdict(t) for t in timings], indent=1))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
