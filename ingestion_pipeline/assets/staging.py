"""Staging rows: every data record of the upload, normalized and judged by the row rules."""

from dagster import AssetExecutionContext, MaterializeResult

from ingestion_pipeline.assets.common import (
    failing_job,
    import_step,
    job_for,
    job_metadata,
    log_json,
)
from ingestion_pipeline.importer import StageProgress, mark_processing, stage_upload
from ingestion_pipeline.resources import DatabaseResource, LandingZoneResource
from ingestion_pipeline.settings import load_settings


@import_step(
    "staging_rows",
    kinds={"postgres"},
)
def staging_rows(
    context: AssetExecutionContext,
    database: DatabaseResource,
    landing_zone: LandingZoneResource,
) -> MaterializeResult:
    """Every record of the upload in staging_rows, streamed in chunks with bulk COPY."""
    engine = database.get_engine()
    job, route = job_for(context, engine)
    metadata = job_metadata(job, route)
    if not route.reads_upload:
        log_json(context, job, "staging_rows", event="skipped", route=route.value)
        return MaterializeResult(metadata={**metadata, "total_rows": job.total_rows or 0})

    def progress(p: StageProgress) -> None:
        log_json(
            context,
            job,
            "staging_rows",
            event="progress",
            rows_read=p.rows_read,
            rows_staged=p.rows_written,
            percent=round(p.percent, 1),
            seconds=round(p.seconds, 2),
        )

    with failing_job(engine, job.job_id, unstage=True):
        mark_processing(engine, job.job_id)
        result = stage_upload(
            engine, landing_zone.get_zone(), job, load_settings().chunk_size, progress
        )
    rate = result.rows_read / result.seconds if result.seconds else 0.0
    return MaterializeResult(
        metadata={
            **metadata,
            "total_rows": result.rows_read,
            "rows_staged": result.rows_written,
            "rows_skipped_on_resume": result.rows_skipped,
            "chunks": result.chunks,
            "encoding": result.file_format.encoding,
            "delimiter": result.file_format.delimiter_name,
            "seconds": round(result.seconds, 3),
            "rows_per_second": round(rate, 1),
            **{f"seconds_{stage}": round(s, 3) for stage, s in result.timings.items()},
        }
    )
