"""What every router shares: the service, the caller (a tenant by API key, a signed session or
an import link), the caller's jobs and their public view, and the actions the API and the
pages both take (decisions, mapping, reprocess), so both give the same answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from sqlalchemy.engine import Engine

from ingestion_pipeline.constants import TAKES_DECISIONS, JobStatus
from ingestion_pipeline.db.decisions import (
    ReviewError,
    record_decisions,
    replace_in_field,
    replace_preview,
    review_csv_chunks,
)
from ingestion_pipeline.db.import_jobs import ImportJob, issue_counts_of_jobs, job_summary
from ingestion_pipeline.db.service import authenticate, job_of_tenant, key_is_active
from ingestion_pipeline.landing import LandingZone
from ingestion_pipeline.lanes import request_job_run
from ingestion_pipeline.reading.mapping import MappingError, mappable_fields
from ingestion_pipeline.review_files import Decision
from ingestion_pipeline.service.signing import InvalidSignatureError, read_token
from ingestion_pipeline.service.uploads import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    ServiceError,
)
from ingestion_pipeline.settings import Settings, load_settings

SESSION_COOKIE = "ip_session"
JOB_ID = PathParam(pattern=r"^[a-z0-9][a-z0-9_-]{0,200}$", max_length=200)


@dataclass(frozen=True)
class Principal:
    """Who is asking: a tenant, by API key or by a signed session. A review link's session
    reaches one job; an import link's reaches the jobs uploaded through it, and may fix the
    dataset and carry a user label."""

    tenant_id: str
    key_id: str | None = None
    job_id: str | None = None
    link_id: str | None = None
    dataset: str | None = None
    user: str | None = None
    # The import link's token, which pages carry in their URLs and forms: a third-party frame
    # gets no cookie of ours.
    token: str | None = None

    def may_see(self, job: ImportJob) -> bool:
        if self.job_id is not None:
            return job.job_id == self.job_id
        if self.link_id is not None:
            return job.link_id == self.link_id
        return True


@dataclass
class Service:
    settings: Settings
    engine: Engine
    zone: LandingZone
    secret: bytes


class Unauthorized(ServiceError):
    status = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, {"WWW-Authenticate": "Bearer"})


def get_service(request: Request) -> Service:
    return request.app.state.service


def principal(request: Request) -> Principal:
    """The tenant behind the request: `Authorization: Bearer <key>` (or `X-API-Key`), an
    import link's token as the bearer, else the pages' signed session cookie; 401 otherwise."""
    service = get_service(request)
    header = request.headers.get("authorization", "")
    presented = header[7:].strip() if header[:7].lower() == "bearer " else ""
    presented = presented or request.headers.get("x-api-key", "")
    if presented:
        with service.engine.connect() as conn:
            found = authenticate(conn, presented)
        if found is not None:
            return Principal(tenant_id=found[0], key_id=found[1])
        link = token_principal(service, presented)
        if link is None or link.link_id is None:
            raise Unauthorized("the API key is not valid (unknown, revoked or malformed)")
        return link
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        session = token_principal(service, cookie)
        if session is not None:
            return session
    raise Unauthorized("an API key is required: Authorization: Bearer <key>")


def token_principal(service: Service, token: str) -> Principal | None:
    """The principal of one of our signed tokens (a session cookie, a review or an import
    link); None if forged, expired, or its key was revoked."""
    try:
        claims = read_token(service.secret, token)
    except InvalidSignatureError:
        return None
    tenant, key_id = claims.get("tenant"), claims.get("key")
    if not isinstance(tenant, str):
        return None
    if key_id is not None:
        with service.engine.connect() as conn:
            if not key_is_active(conn, key_id, tenant):
                return None
    link_id = claims.get("link")
    return Principal(
        tenant_id=tenant,
        key_id=key_id,
        job_id=claims.get("job"),
        link_id=link_id,
        dataset=claims.get("dataset"),
        user=claims.get("user"),
        token=token if link_id is not None else None,
    )


Caller = Annotated[Principal, Depends(principal)]
ServiceDep = Annotated[Service, Depends(get_service)]


def tenant_wide(who: Caller) -> Principal:
    """A principal that may upload: a review link reaches its job only, so it cannot upload or
    change the tenant's settings (its requests get the answer of a stranger)."""
    if who.job_id is not None:
        raise NotFoundError("no such resource for a review link")
    return who


def tenant_admin(who: Caller) -> Principal:
    """A principal with the tenant's key (or its signed-in session): webhooks, import links."""
    if who.job_id is not None or who.link_id is not None:
        raise NotFoundError("no such resource for a link")
    return who


TenantCaller = Annotated[Principal, Depends(tenant_wide)]
AdminCaller = Annotated[Principal, Depends(tenant_admin)]


def iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def job_views(service: Service, jobs: list[ImportJob]) -> list[dict[str, Any]]:
    """The public view of each job, their issue counts read in one statement."""
    with service.engine.connect() as conn:
        counts = issue_counts_of_jobs(conn, [job.job_id for job in jobs])
    return [_job_view(job, counts[job.job_id]) for job in jobs]


def job_view(service: Service, job: ImportJob) -> dict[str, Any]:
    return job_views(service, [job])[0]


def _job_view(job: ImportJob, counts: dict[str, int]) -> dict[str, Any]:
    summary = job_summary(job)
    return {
        **{k: summary[k] for k in ("job_id", "tenant", "dataset", "status", "file", "total_rows")},
        "processed_rows": summary["processed_rows"],
        "issue_count": summary["issue_count"],
        "issues_by_kind": counts,
        "contacts_created": summary["contacts_created"],
        "rows_inserted": summary["rows_inserted"],
        "rows_updated": summary["rows_updated"],
        "rows_unchanged": summary["rows_unchanged"],
        "error": summary["error"],
        "mapping": summary["mapping"],
        "waiting_for": summary["waiting_for"],
        "uploaded_by": job.uploaded_by,
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "url": f"/v1/jobs/{job.job_id}",
        "review_url": f"/review/{job.job_id}",
    }


def tenant_job(service: Service, who: Principal, job_id: str) -> ImportJob:
    """The caller's job; 404 for any other (another tenant's job is not confirmed to exist)."""
    with service.engine.connect() as conn:
        job = job_of_tenant(conn, who.tenant_id, job_id)
    if job is None or not who.may_see(job):
        raise NotFoundError(f"no import job {job_id!r}")
    return job


def run_job(service: Service, job: ImportJob, job_name: str, source: str) -> dict[str, Any]:
    """Ask for a run of the job: the warm lane takes a small one at once, else a run request."""
    with service.engine.begin() as conn:
        lane = request_job_run(conn, load_settings(), job, job_name, source)
    return {"job_id": job.job_id, **lane, "job_name": job_name}


def record_job_decisions(
    service: Service, job: ImportJob, decisions: list[Decision], source: str
) -> int:
    """Store decisions on a job under review; 409 in any other state, 422 for unknown rows."""
    if job.status not in TAKES_DECISIONS:
        raise ConflictError(
            f"job {job.job_id} is {job.status.value}; only jobs under review take decisions"
        )
    try:
        with service.engine.begin() as conn:
            return record_decisions(conn, job, decisions, source)
    except ReviewError as exc:
        raise InvalidRequestError(str(exc)) from None


def request_reprocess(service: Service, job: ImportJob, source: str) -> dict[str, Any]:
    """Ask for a reprocess run (a retry for a FAILED job); 409 when there is nothing to run."""
    if job.status is JobStatus.NEEDS_REVIEW:
        return run_job(service, job, "reprocess_job", source)
    if job.status is JobStatus.FAILED:
        return run_job(service, job, "import_job", source)
    raise ConflictError(
        f"job {job.job_id} is {job.status.value}; only NEEDS_REVIEW or FAILED jobs rerun"
    )


def confirm_job_mapping(
    service: Service, job: ImportJob, fields: dict[str, Any], source: str
) -> dict[str, Any]:
    """A person's mapping of a job waiting for one (the API and the page): checked against the
    dataset and the file's header, remembered for the tenant, and the import continues."""
    from ingestion_pipeline.importer import confirm_mapping

    if job.status not in (JobStatus.NEEDS_MAPPING, JobStatus.PENDING):
        raise ConflictError(
            f"job {job.job_id} is {job.status.value}; it does not wait for a mapping"
        )
    known = mappable_fields(job.declaration)
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise InvalidRequestError(
            f"unknown field(s) {', '.join(unknown)}; fields: {', '.join(known)}"
        )
    try:
        confirm_mapping(service.engine, service.zone, job, fields)
    except MappingError as exc:
        raise InvalidRequestError(f"{job.job_id}: {exc}") from None
    return run_job(service, job, "import_job", source)


def replace_in_job(
    service: Service,
    job: ImportJob,
    field: str,
    find: str,
    replacement: str,
    *,
    whole: bool,
    apply: bool,
    source: str,
) -> dict[str, Any]:
    """A find and replace over the job's rows in error (the API and the page): previewed, or
    applied as recorded fixes on a job under review; 409 in any other state, 422 for an
    unknown field or nothing to find."""
    if apply and job.status is not JobStatus.NEEDS_REVIEW:
        raise ConflictError(
            f"job {job.job_id} is {job.status.value}; only jobs under review take decisions"
        )
    dataset = job.declaration
    try:
        with service.engine.begin() as conn:
            preview = replace_preview(
                conn, job.job_id, dataset, field, find, replacement, whole=whole
            )
            rows = preview.rows
            if apply and rows:
                rows = replace_in_field(
                    conn, job.job_id, dataset, field, find, replacement, whole=whole, source=source
                )
    except ReviewError as exc:
        raise InvalidRequestError(str(exc)) from None
    return {
        "job_id": job.job_id,
        "field": field,
        "rows": rows,
        "applied": apply,
        "examples": [
            {"row": e.row_number, "before": e.before, "after": e.after} for e in preview.examples
        ],
    }


def review_csv_response(service: Service, job: ImportJob) -> StreamingResponse:
    """The review file of `job`, streamed as a download (the API and the review page)."""
    return StreamingResponse(
        review_csv_chunks(service.engine, job.job_id, job.declaration),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{job.job_id}-rows-in-error.csv"'},
    )
