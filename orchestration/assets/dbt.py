"""Every dbt model as an asset and every dbt test as an asset check, from the manifest.

The dbt sources `raw.*` get the default keys ["raw", <table>], which are exactly the keys of
the Python ingest and embeddings assets, so the lineage runs inbox → raw → staging → marts.

Events are held until dbt exits: the row counts and the insight tables are read from the
warehouse, which the dbt subprocess holds for writing while it runs (DuckDB: one writer
process per file). dagster-dbt's fetch_row_counts() would query it mid-run from this
process and hit that lock.
"""

from collections.abc import Iterator, Mapping
from typing import Any

from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    MetadataValue,
    Output,
)
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)

from engram.query.answers import relations
from orchestration.assets import handover
from orchestration.assets.ingest import WAREHOUSE_POOL
from orchestration.metadata import mart_insights
from orchestration.project import DBT_PROJECT
from orchestration.resources import Warehouse


class EngramTranslator(DagsterDbtTranslator):
    """Default keys ([schema, model] for models, [source, table] for sources); groups by the
    schema a model builds into (staging, intermediate, marts)."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        schema = dbt_resource_props.get("config", {}).get("schema")
        return schema or super().get_group_name(dbt_resource_props)

    def get_asset_check_spec(
        self,
        asset_spec: AssetSpec,
        manifest: Mapping[str, Any],
        unique_id: str,
        project: DbtProject | None,
    ) -> AssetCheckSpec | None:
        """Source tests (on raw.*) are not blocking: a blocking check on raw.patterns would
        make the embeddings wait for it, splitting `dbt build` into two invocations around
        the embeddings step. An error-severity failure still fails dbt and so the step."""
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None or not spec.blocking or asset_spec.key.path[0] != "raw":
            return spec
        return AssetCheckSpec(
            name=spec.name,
            asset=spec.asset_key,
            description=spec.description,
            additional_deps=spec.additional_deps,
            metadata=spec.metadata,
            blocking=False,
        )


TRANSLATOR = EngramTranslator(
    settings=DagsterDbtTranslatorSettings(
        enable_asset_checks=True,
        enable_source_tests_as_checks=True,  # raw.* tests become checks on the ingest assets
    )
)


def _relation(key: AssetKey) -> str | None:
    return ".".join(key.path) if len(key.path) == 2 else None


@dbt_assets(
    manifest=DBT_PROJECT.manifest_path,
    project=DBT_PROJECT,
    dagster_dbt_translator=TRANSLATOR,
    pool=WAREHOUSE_POOL,
    name="engram_dbt",
)
def engram_dbt(
    context: AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse
) -> Iterator[Any]:
    """`dbt build` (models and their tests) on the warehouse. When the run publishes too,
    the publish's file copy of the previous serving copy starts first and runs beside dbt
    (orchestration.assets.handover)."""
    events: list[Any] = []
    failure: BaseException | None = None
    run_id = context.run.run_id
    if handover.serving_selected(context.job_def.asset_layer.selected_asset_keys):
        handover.prepare(run_id, warehouse.path)
    try:
        with warehouse.dbt_env():
            invocation = dbt.cli(["build"], context=context)
            try:
                for event in invocation.stream():
                    events.append(event)
            except Exception as exc:  # yield what did build, then fail the step
                context.log.error(f"dbt build failed: {exc!r}")
                failure = exc
            finally:
                if invocation.process.poll() is None:  # never read the file while dbt holds it
                    invocation.process.terminate()
                invocation.process.wait()
    except BaseException:  # dbt did not start: nothing publishes
        handover.discard(run_id, warehouse.path)
        raise
    extra = _post_build_metadata(context, warehouse, events)
    for event in events:
        if isinstance(event, Output) and event.output_name in extra:
            yield event.with_metadata({**event.metadata, **extra[event.output_name]})
        else:
            yield event
    if failure is not None:
        handover.discard(run_id, warehouse.path)
        raise failure


def _post_build_metadata(
    context: AssetExecutionContext, warehouse: Warehouse, events: list[Any]
) -> dict[str, dict[str, Any]]:
    """Row counts for every built model, insight tables and the plot for the marts."""
    outputs = {
        event.output_name: context.asset_key_for_output(event.output_name)
        for event in events
        if isinstance(event, Output)
    }
    if not outputs or not warehouse.path.exists():
        return {}
    extra: dict[str, dict[str, Any]] = {}
    con = warehouse.connect_read()
    try:
        have = relations(con)
        insights = mart_insights(con)
        for output_name, key in outputs.items():
            relation = _relation(key)
            metadata: dict[str, Any] = {}
            if relation in have:
                count = con.execute(f"select count(*) from {relation}").fetchone()[0]  # type: ignore[index]
                metadata["dagster/row_count"] = MetadataValue.int(int(count))
            if key.path[0] == "marts":
                metadata.update(insights.get(key.path[-1], {}))
            extra[output_name] = metadata
    finally:
        con.close()
    return extra
