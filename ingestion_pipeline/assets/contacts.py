"""Contacts: the finalized records, loaded once a job has no open issues."""

import time
from collections.abc import Iterator

from dagster import AssetExecutionContext, MaterializeResult

from ingestion_pipeline.assets.common import (
    failing_job,
    import_asset,
    job_for,
    job_metadata,
    log_json,
)
from ingestion_pipeline.assets.issues import import_issues
from ingestion_pipeline.constants import JobStatus
from ingestion_pipeline.importer import Route, consolidate
from ingestion_pipeline.resources import DatabaseResource


@import_asset(
    name="contacts",
    deps=[import_issues],
    output_required=False,
    kinds={"postgres"},
)
def contacts(
    context: AssetExecutionContext, database: DatabaseResource
) -> Iterator[MaterializeResult]:
    """The job's contacts, inserted in one transaction; left unmaterialized while under review."""
    engine = database.get_engine()
    job, route = job_for(context, engine)
    if route is Route.AWAIT_MAPPING:
        log_json(context, job, "contacts", event="needs_mapping", status=job["status"])
        return
    started = time.perf_counter()
    with failing_job(engine, job["job_id"]):
        result = consolidate(engine, job)
    if result.status is not JobStatus.COMPLETED:
        log_json(context, job, "contacts", event="needs_review", status=result.status.value)
        return
    seconds = time.perf_counter() - started
    log_json(
        context,
        job,
        "contacts",
        event="already_completed" if result.already_completed else "loaded",
        contacts_created=0 if result.already_completed else result.contacts_created,
        seconds=round(seconds, 3),
    )
    yield MaterializeResult(
        metadata={
            **job_metadata(job, route),
            "status": result.status.value,
            "contacts_created": 0 if result.already_completed else result.contacts_created,
            "seconds": round(seconds, 3),
            "rows_per_second": round(result.contacts_created / seconds, 1) if seconds else 0.0,
        }
    )
