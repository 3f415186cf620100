"""The lake: a COMPLETED job's rows in its dataset's Iceberg table, ingestion.<table>, one asset
per dataset (`contacts_lake`, `orders_lake`, ...) after the dataset's table, built by the same
factory as the rest of its chain."""

import time
from collections.abc import Iterator
from typing import Any

from dagster import AssetExecutionContext, MaterializeResult

from ingestion_pipeline.assets.common import import_asset, job_for, job_metadata, log_json
from ingestion_pipeline.constants import JobStatus
from ingestion_pipeline.datasets import Dataset, MergePolicy
from ingestion_pipeline.resources import DatabaseResource
from ingestion_pipeline.settings import load_settings


def lake_asset_name(dataset: Dataset) -> str:
    """`<table>_lake`: contacts_lake, customers_lake, orders_lake, ..."""
    return f"{dataset.table}_lake"


def lake_asset(dataset: Dataset, table: Any) -> Any:
    """The asset that writes `dataset`'s COMPLETED jobs to its lake table, after `table`."""
    how = (
        "appended"
        if dataset.merge is MergePolicy.INSERT
        else "merged by its natural key (each key once, with its current values)"
    )

    @import_asset(
        dataset.name,
        name=lake_asset_name(dataset),
        deps=[table],
        output_required=False,
        kinds={"iceberg"},
        description=(
            f"The job's {dataset.table} rows {how} in the Iceberg table "
            f"ingestion.{dataset.table}, partitioned by tenant, as one snapshot marked with the "
            "job id; its failure leaves the job and its rows as they are."
        ),
    )
    def lake(
        context: AssetExecutionContext, database: DatabaseResource
    ) -> Iterator[MaterializeResult]:
        from ingestion_pipeline.lake import LAKE_TABLES, catalog, ensure_table, write_job

        engine = database.get_engine()
        job, route = job_for(context, engine)
        stage = lake_asset_name(dataset)
        if job.status is not JobStatus.COMPLETED:
            log_json(context, job, stage, event="skipped", status=job.status.value)
            return
        settings = load_settings()
        started = time.perf_counter()
        url = engine.url.render_as_string(hide_password=False)
        assert settings.lake_warehouse  # the asset is in the graph only with a lake
        lake_catalog = catalog(
            settings.lake_catalog_uri,
            url,
            settings.lake_warehouse,
            s3_endpoint=settings.aws_endpoint_url,
            s3_region=settings.aws_region,
        )
        target = LAKE_TABLES[dataset.name]
        table = ensure_table(lake_catalog, target)
        result = write_job(engine, target, table, job.tenant_id, job.job_id, settings.chunk_size)
        seconds = time.perf_counter() - started
        log_json(
            context,
            job,
            stage,
            event="already_in_lake" if result.already else "written",
            rows=result.rows,
            replaced=result.replaced,
            seconds=round(seconds, 3),
        )
        yield MaterializeResult(
            metadata={
                **job_metadata(job, route),
                "table": target.name,
                "merge": dataset.merge.value,
                "rows_written": result.rows,
                "rows_replaced": result.replaced,
                "files_rewritten": result.files_rewritten,
                "already_in_lake": result.already,
                "snapshots": result.snapshots,
                "seconds": round(seconds, 3),
                "warehouse": settings.lake_warehouse,
            }
        )

    return lake
