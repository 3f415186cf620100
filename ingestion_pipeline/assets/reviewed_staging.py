"""Reviewed staging: the staging rows after reviewers' fixes and discards."""

from dagster import AssetExecutionContext, Failure, MaterializeResult

from ingestion_pipeline.assets.common import (
    failing_job,
    import_step,
    job_for,
    job_metadata,
    log_json,
)
from ingestion_pipeline.constants import JobStatus
from ingestion_pipeline.importer import apply_review, mark_processing, refuse_persons_file
from ingestion_pipeline.resources import DatabaseResource, LandingZoneResource
from ingestion_pipeline.review_files import DecisionFileError, decisions_key


@import_step(
    "reviewed_staging",
    kinds={"postgres"},
)
def reviewed_staging(
    context: AssetExecutionContext,
    database: DatabaseResource,
    landing_zone: LandingZoneResource,
) -> MaterializeResult:
    """Staging rows with review decisions applied; materialize it to reprocess a job."""
    engine = database.get_engine()
    job, route = job_for(context, engine)
    metadata = job_metadata(job, route)
    if route.idle:
        return MaterializeResult(metadata={**metadata, "fixed": 0, "discarded": 0})
    if job.status is JobStatus.NEEDS_REVIEW:
        mark_processing(engine, job.job_id)
    with failing_job(engine, job.job_id):
        try:
            outcome = apply_review(engine, landing_zone.get_zone(), job)
        except DecisionFileError as exc:
            # The job is fine; the reviewer's file is not, so the job stays under review.
            refuse_persons_file(engine, job.job_id, str(exc), status=JobStatus.NEEDS_REVIEW)
            raise Failure(
                description=str(exc),
                metadata={"job_id": job.job_id, "decisions_file": decisions_key(job.job_id)},
                allow_retries=False,
            ) from exc
    if outcome.decisions_file:
        log_json(
            context,
            job,
            "reviewed_staging",
            event="decisions_file_read",
            location=outcome.decisions_file,
            decisions=outcome.decisions_loaded,
        )
    log_json(
        context,
        job,
        "reviewed_staging",
        event="decisions_applied",
        fixed=outcome.fixed,
        discarded=outcome.discarded,
    )
    return MaterializeResult(
        metadata={
            **metadata,
            "fixed": outcome.fixed,
            "discarded": outcome.discarded,
            "decisions_file": outcome.decisions_file or "",
            "decisions_loaded": outcome.decisions_loaded,
        }
    )
