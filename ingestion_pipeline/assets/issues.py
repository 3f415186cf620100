"""Import issues: every problem found in a job's staging rows, linked to the rows it concerns."""

import time

from dagster import AssetExecutionContext, MaterializeResult

from ingestion_pipeline.assets.common import (
    PREVIEW_ISSUES,
    failing_job,
    import_step,
    issues_preview,
    job_for,
    job_metadata,
    log_json,
)
from ingestion_pipeline.constants import IssueKind, JobStatus
from ingestion_pipeline.importer import issue_summary, validate, write_review_file
from ingestion_pipeline.resources import DatabaseResource, LandingZoneResource


@import_step(
    "import_issues",
    kinds={"postgres", "pandera"},
)
def import_issues(
    context: AssetExecutionContext,
    database: DatabaseResource,
    landing_zone: LandingZoneResource,
) -> MaterializeResult:
    """Open and resolved issues of one job: row rules and types, in-file duplicates, keys
    already loaded, missing references."""
    engine = database.get_engine()
    job, route = job_for(context, engine)
    metadata = job_metadata(job, route)
    started = time.perf_counter()
    if not route.idle:
        with failing_job(engine, job.job_id):
            result = validate(engine, job)
        log_json(
            context,
            job,
            "issues",
            event="validated",
            open_issues=result.open_issues,
            problem_rows=result.problem_rows,
            seconds=round(time.perf_counter() - started, 3),
        )
    summary = issue_summary(engine, job, PREVIEW_ISSUES + 1)
    job = summary.job
    seconds = time.perf_counter() - started
    review_file = ""
    if job.status is JobStatus.NEEDS_REVIEW:
        with failing_job(engine, job.job_id):
            review_file = write_review_file(engine, landing_zone.get_zone(), job)
        log_json(context, job, "issues", event="review_file_written", location=review_file)
    return MaterializeResult(
        metadata={
            **metadata,
            "status": job.status.value,
            "review_file": review_file,
            "issue_count": job.issue_count,
            **{f"issues_{kind.value}": summary.counts.get(kind.value, 0) for kind in IssueKind},
            "seconds": round(seconds, 3),
            "rows_per_second": round((job.total_rows or 0) / seconds, 1) if seconds else 0.0,
            "preview": issues_preview(summary.first_issues, job.issue_count),
        }
    )
