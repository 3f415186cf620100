"""The lake: a COMPLETED job's contacts in the Iceberg table ingestion.contacts."""

import time
from collections.abc import Iterator

from dagster import AssetExecutionContext, MaterializeResult

from ingestion_pipeline.assets import contacts
from ingestion_pipeline.assets.common import import_asset, job_for, job_metadata, log_json
from ingestion_pipeline.constants import JobStatus
from ingestion_pipeline.resources import DatabaseResource
from ingestion_pipeline.settings import load_settings


@import_asset(
    "contacts",
    name="contacts_lake",
    deps=[contacts],
    output_required=False,
    kinds={"iceberg"},
)
def contacts_lake(
    context: AssetExecutionContext, database: DatabaseResource
) -> Iterator[MaterializeResult]:
    """The job's contacts appended once to the Iceberg table ingestion.contacts, partitioned by
    tenant; its failure leaves the job and its contacts as they are."""
    from ingestion_pipeline.lake import CONTACTS_TABLE, append_job, catalog, contacts_table

    engine = database.get_engine()
    job, route = job_for(context, engine)
    if job.status is not JobStatus.COMPLETED:
        log_json(context, job, "contacts_lake", event="skipped", status=job.status.value)
        return
    settings = load_settings()
    started = time.perf_counter()
    url = engine.url.render_as_string(hide_password=False)
    assert settings.lake_warehouse  # the asset is defined only with a lake
    lake = catalog(
        settings.lake_catalog_uri,
        url,
        settings.lake_warehouse,
        s3_endpoint=settings.aws_endpoint_url,
        s3_region=settings.aws_region,
    )
    table = contacts_table(lake)
    result = append_job(engine, table, job.job_id, settings.chunk_size)
    seconds = time.perf_counter() - started
    log_json(
        context,
        job,
        "contacts_lake",
        event="already_in_lake" if result.already else "appended",
        rows=result.rows,
        seconds=round(seconds, 3),
    )
    yield MaterializeResult(
        metadata={
            **job_metadata(job, route),
            "table": CONTACTS_TABLE,
            "rows_appended": result.rows,
            "already_in_lake": result.already,
            "snapshots": result.snapshots,
            "seconds": round(seconds, 3),
            "warehouse": settings.lake_warehouse,
        }
    )
