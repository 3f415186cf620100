"""The raw upload: one object version in the landing zone."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue

from ingestion_pipeline.assets.common import (
    failing_job,
    import_asset,
    job_for,
    job_metadata,
    log_json,
)
from ingestion_pipeline.importer import Route, inspect_upload, mark_processing
from ingestion_pipeline.resources import DatabaseResource, LandingZoneResource


@import_asset(
    name="raw_upload",
    kinds={"s3", "csv"},
)
def raw_upload(
    context: AssetExecutionContext,
    database: DatabaseResource,
    landing_zone: LandingZoneResource,
) -> MaterializeResult:
    """The uploaded contacts file of one import job, with its detected encoding and columns."""
    engine = database.get_engine()
    job, route = job_for(context, engine)
    metadata = job_metadata(job, route)
    metadata["etag"] = job["source_etag"]
    if route in (Route.DONE, Route.REPROCESS):
        log_json(context, job, "raw_upload", event="skipped", route=route.value)
        return MaterializeResult(metadata={**metadata, "status": job["status"]})

    zone = landing_zone.get_zone()
    with failing_job(engine, job["job_id"], unstage=True):
        mark_processing(engine, job["job_id"])
        info = zone.stat(job["source_key"])
        fmt = inspect_upload(zone, job)
    log_json(
        context,
        job,
        "raw_upload",
        event="inspected",
        encoding=fmt.encoding,
        delimiter=fmt.delimiter_name,
        columns=len(fmt.header),
        size_bytes=info.size if info else 0,
    )
    return MaterializeResult(
        metadata={
            **metadata,
            "location": zone.describe(job["source_key"]),
            "size_bytes": info.size if info else 0,
            "encoding": fmt.encoding,
            "delimiter": fmt.delimiter_name,
            "column_count": len(fmt.header),
            "columns": MetadataValue.json(
                {"header": list(fmt.header), "fields": fmt.fields, "extras": dict(fmt.extras)}
            ),
            "status": "PROCESSING",
        }
    )
