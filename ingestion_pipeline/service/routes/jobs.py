"""Jobs and their issues: status, progress, counts, a page of open issues at a time, the rows
in error as the review file."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from ingestion_pipeline.constants import JobStatus
from ingestion_pipeline.db.decisions import issues_page
from ingestion_pipeline.db.import_jobs import list_jobs
from ingestion_pipeline.service.deps import (
    JOB_ID,
    Caller,
    ServiceDep,
    job_view,
    job_views,
    review_csv_response,
    tenant_job,
)
from ingestion_pipeline.service.schemas import ERRORS, IssuePage, JobList, JobOut

router = APIRouter(tags=["jobs"])
CSV_FILE = {"type": "string", "format": "binary"}


@router.get("/v1/jobs", response_model=JobList, responses=ERRORS, summary="The tenant's jobs")
def get_jobs(
    service: ServiceDep,
    who: Caller,
    status: Annotated[JobStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict[str, Any]:
    """Newest first (through an import link: the jobs uploaded by it)."""
    with service.engine.connect() as conn:
        jobs = list_jobs(
            conn,
            tenant_id=who.tenant_id,
            status=status.value if status else None,
            link_id=who.link_id,
            limit=limit + 1,
            offset=offset,
        )
    jobs = [j for j in jobs if who.may_see(j)]
    more = len(jobs) > limit
    return {
        "jobs": job_views(service, jobs[:limit]),
        "next_offset": offset + limit if more else None,
    }


@router.get(
    "/v1/jobs/{job_id}", response_model=JobOut, responses=ERRORS, summary="One job's status"
)
def get_job(service: ServiceDep, who: Caller, job_id: Annotated[str, JOB_ID]) -> dict[str, Any]:
    """Status, progress (`processed_rows` of `total_rows`), issue counts by kind, mapping."""
    return job_view(service, tenant_job(service, who, job_id))


@router.get(
    "/v1/jobs/{job_id}/issues",
    response_model=IssuePage,
    responses=ERRORS,
    summary="A job's open issues, a page at a time",
)
def get_issues(
    service: ServiceDep,
    who: Caller,
    job_id: Annotated[str, JOB_ID],
    kind: Annotated[str | None, Query(max_length=64)] = None,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Pass `next_after` back as `after` for the next page."""
    tenant_job(service, who, job_id)
    with service.engine.connect() as conn:
        page = issues_page(conn, job_id, after=after, limit=limit + 1, kind=kind)
    more = len(page) > limit
    page = page[:limit]
    return {
        "issues": [{**i, "rows": list(i["rows"])} for i in page],
        "next_after": page[-1]["issue_id"] if more else None,
    }


@router.get(
    "/v1/jobs/{job_id}/review.csv",
    response_class=StreamingResponse,
    responses={
        **ERRORS,
        200: {"description": "the review file", "content": {"text/csv": {"schema": CSV_FILE}}},
    },
    summary="A job's rows in error as the review file (CSV)",
)
def get_review_csv(
    service: ServiceDep, who: Caller, job_id: Annotated[str, JOB_ID]
) -> StreamingResponse:
    """One line per row with open issues: `row`, the dataset's fields, `problems` and an empty
    `action` (fill in `fix` or `discard` and hand it back as the decisions file)."""
    return review_csv_response(service, tenant_job(service, who, job_id))
