"""What people decide on a job: fixes and discards of rows, a find and replace over its rows
in error, a column mapping, a reprocess."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter

from ingestion_pipeline.review_files import Decision
from ingestion_pipeline.service.deps import (
    JOB_ID,
    Caller,
    ServiceDep,
    confirm_job_mapping,
    record_job_decisions,
    replace_in_job,
    request_reprocess,
    tenant_job,
)
from ingestion_pipeline.service.schemas import (
    ERRORS,
    DecisionIn,
    DecisionsIn,
    DecisionsOut,
    MappingIn,
    Problem,
    ReplaceIn,
    ReplaceOut,
    RunRequestOut,
)
from ingestion_pipeline.service.uploads import InvalidRequestError

router = APIRouter(tags=["decisions"])


@router.post(
    "/v1/jobs/{job_id}/decisions",
    response_model=DecisionsOut,
    responses={**ERRORS, 409: {"model": Problem}},
    summary="Record fixes and discards on a job under review",
)
def post_decisions(
    service: ServiceDep, who: Caller, job_id: Annotated[str, JOB_ID], body: DecisionsIn
) -> dict[str, Any]:
    """Recorded, not applied: `POST …/reprocess` applies them. A `fix` sets the given
    fields (`null` or "" empties one); the latest decision on a row wins."""
    job = tenant_job(service, who, job_id)
    fields = job.declaration.field_names
    decisions = [_decision(d, fields) for d in body.decisions]
    return {"job_id": job_id, "recorded": record_job_decisions(service, job, decisions, "api")}


@router.post(
    "/v1/jobs/{job_id}/mapping",
    status_code=202,
    response_model=RunRequestOut,
    responses={**ERRORS, 409: {"model": Problem}},
    summary="Confirm the column mapping of a job waiting in NEEDS_MAPPING",
)
def post_mapping(
    service: ServiceDep, who: Caller, job_id: Annotated[str, JOB_ID], body: MappingIn
) -> dict[str, Any]:
    """`{"fields": {"email": "E-mail 1 - Value", "company": null}}`: a column, several
    (first non-blank wins) or null (left empty on purpose). Remembered for the tenant's
    next file of the same header; the import continues."""
    job = tenant_job(service, who, job_id)
    return confirm_job_mapping(service, job, body.fields, "api:mapping")


@router.post(
    "/v1/jobs/{job_id}/reprocess",
    status_code=202,
    response_model=RunRequestOut,
    responses={**ERRORS, 409: {"model": Problem}},
    summary="Apply the recorded decisions (or retry a FAILED job)",
)
def post_reprocess(
    service: ServiceDep, who: Caller, job_id: Annotated[str, JOB_ID]
) -> dict[str, Any]:
    """Small jobs run at once in the warm lane; others by a run request the sensors launch
    within seconds. Follow the job's status."""
    return request_reprocess(service, tenant_job(service, who, job_id), "api")


def _decision(item: DecisionIn, fields: tuple[str, ...]) -> Decision:
    if item.action == "discard":
        if item.values:
            raise InvalidRequestError(f"row {item.row}: a discard takes no values")
        return Decision(item.row, "discard")
    unknown = sorted(set(item.values) - set(fields))
    if unknown:
        raise InvalidRequestError(
            f"row {item.row}: unknown field(s) {', '.join(unknown)}; fields: {', '.join(fields)}"
        )
    if not item.values:
        raise InvalidRequestError(f"row {item.row}: a fix needs at least one field")
    return Decision(item.row, "fix", {k: (v or "").strip() or None for k, v in item.values.items()})


@router.post(
    "/v1/jobs/{job_id}/replace",
    response_model=ReplaceOut,
    responses={**ERRORS, 409: {"model": Problem}},
    summary="Find and replace within one field of a job's rows in error",
)
def post_replace(
    service: ServiceDep, who: Caller, job_id: Annotated[str, JOB_ID], body: ReplaceIn
) -> dict[str, Any]:
    """Over every row with open issues: `apply: false` counts the rows that would change and
    shows a few; `apply: true` records a `fix` of the field on each (a pending fix keeps its
    other fields, a row pending discard is left alone). `POST …/reprocess` applies them."""
    job = tenant_job(service, who, job_id)
    return replace_in_job(
        service,
        job,
        body.field,
        body.find,
        body.replace,
        whole=body.whole_value,
        apply=body.apply,
        source="api:replace",
    )
