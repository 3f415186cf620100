"""The HTTP API (`/v1`) and the review page, one ASGI app: `ingestion-pipeline serve`."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine

from ingestion_pipeline.constants import SUPPORTED_EXTENSIONS, TAKES_DECISIONS, JobStatus
from ingestion_pipeline.datasets import DEFAULT_DATASET, LOAD_ORDER
from ingestion_pipeline.db.decisions import ReviewError, issues_page, record_decisions
from ingestion_pipeline.db.import_jobs import (
    ImportJob,
    issue_counts_of_jobs,
    job_summary,
    list_jobs,
)
from ingestion_pipeline.db.service import (
    authenticate,
    job_of_tenant,
    key_is_active,
    list_deliveries,
    service_secret,
    set_webhook,
)
from ingestion_pipeline.first_answer import first_answer
from ingestion_pipeline.landing import LandingZone, S3LandingZone
from ingestion_pipeline.lanes import request_job_run
from ingestion_pipeline.reading.mapping import MappingError, mappable_fields
from ingestion_pipeline.review_files import Decision
from ingestion_pipeline.service.routes import operations
from ingestion_pipeline.service.signing import InvalidSignatureError, read_token
from ingestion_pipeline.service.uploads import (
    S3_MIN_PART_SIZE,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    ServiceError,
    Spooled,
    TooLargeError,
    accept_upload,
    check_file_name,
    complete_session,
    open_session,
    put_session_part,
    start_session,
    sweep_expired_sessions,
)
from ingestion_pipeline.service.webhooks import deliver_due, retry_policy
from ingestion_pipeline.settings import Settings, load_settings

log = logging.getLogger(__name__)

SESSION_COOKIE = "ip_session"
JOB_ID = PathParam(pattern=r"^[a-z0-9][a-z0-9_-]{0,200}$", max_length=200)
MAX_DECISIONS = 10_000
# What the upload layout takes: a plain name with a supported extension, optionally gzipped.
FILE_NAME = (
    r"^[^/\\.\x00][^/\\\x00]{0,200}("
    + "|".join(r"\." + "".join(f"[{c}{c.upper()}]" for c in e[1:]) for e in SUPPORTED_EXTENSIONS)
    + r")(\.gz)?$"
)


@dataclass(frozen=True)
class Principal:
    """Who is asking: a tenant, by API key or by a signed session; a review link's session is
    limited to one job."""

    tenant_id: str
    key_id: str | None = None
    job_id: str | None = None

    def may_see(self, job_id: str) -> bool:
        return self.job_id is None or self.job_id == job_id


@dataclass
class Service:
    settings: Settings
    engine: Engine
    zone: LandingZone
    secret: bytes


# --- Response and request shapes (the OpenAPI description) ---------------------------------


class Problem(BaseModel):
    detail: str


class JobOut(BaseModel):
    job_id: str
    tenant: str
    dataset: str
    status: str
    file: str
    total_rows: int
    processed_rows: int
    issue_count: int
    issues_by_kind: dict[str, int]
    contacts_created: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    error: str | None
    mapping: dict[str, Any] | None
    created_at: str
    updated_at: str
    url: str
    review_url: str


class MappedField(BaseModel):
    columns: list[str]
    method: str = Field(
        description="how the column(s) were decided: remembered, person, profile: <tool>, "
        "alias, name (words in the header), values, split (of full_name)"
    )


class FirstMapping(BaseModel):
    source: str = Field(description="automatic, remembered (the tenant's for this header), …")
    profile: str | None
    fields: dict[str, MappedField]
    unmapped: list[str] = Field(description="required fields with no column")
    empty: list[str] = Field(description="required fields a person left empty on purpose")


class SkippedLine(BaseModel):
    line: int
    text: str


class FirstAnswer(BaseModel):
    """What the first bytes of the stored file tell, before any run (first_answer.py)."""

    format: str = Field(description="csv, tsv, xlsx, xlsm, xls, ods, json, ndjson or vcf")
    compression: Literal["gzip"] | None
    size_bytes: int
    encoding: str | None
    delimiter: str | None = Field(description="comma, semicolon, tab or pipe (delimited text)")
    sheet: str | None = Field(description="the workbook's sheet that is read")
    header: list[str]
    skipped_before_header: list[SkippedLine]
    row_estimate: int | None = Field(
        description="an estimate of the data rows, not a count (total_rows counts them): "
        "delimited text's size over the average record of its first bytes, a sheet's stated "
        "size; null when not cheaply known"
    )
    row_estimate_basis: str = Field(description="how row_estimate was reached, or why not")
    mapping: FirstMapping = Field(description="the mapping the run will use, per field")
    needs_mapping: bool = Field(
        description="the job will wait in NEEDS_MAPPING for a person (POST …/mapping)"
    )


class FirstAnswerError(BaseModel):
    error: str = Field(description="why the file cannot be read (its run fails the same way)")


class UploadOut(JobOut):
    created: bool
    first_answer: FirstAnswer | FirstAnswerError


class JobList(BaseModel):
    jobs: list[JobOut]
    next_offset: int | None


class IssueOut(BaseModel):
    issue_id: int
    kind: str
    field: str
    message: str
    rows: list[int]


class IssuePage(BaseModel):
    issues: list[IssueOut]
    next_after: int | None


class DecisionIn(BaseModel):
    row: int = Field(ge=1, le=2**31 - 1)
    action: Literal["fix", "discard"]
    values: dict[str, str | None] = Field(default_factory=dict)


class DecisionsIn(BaseModel):
    decisions: list[DecisionIn] = Field(min_length=1, max_length=MAX_DECISIONS)


class DecisionsOut(BaseModel):
    job_id: str
    recorded: int


class RunRequestOut(BaseModel):
    job_id: str
    # "warm": a worker takes it at once; "queue": a run request for the sensors (its id).
    lane: str
    request_id: int | None
    job_name: str


class MappingIn(BaseModel):
    fields: dict[str, str | list[str] | None] = Field(min_length=1)


class WebhookIn(BaseModel):
    url: str | None = Field(pattern=r"^https?://[^\s]+$", max_length=2000)


class WebhookOut(BaseModel):
    url: str | None
    secret: str | None


class DeliveryOut(BaseModel):
    delivery_id: int
    event_id: str
    event: str
    job_id: str
    url: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: str
    delivered_at: str | None


# The declared datasets, as the API's enumeration.
DatasetName = Enum("DatasetName", {name: name for name in LOAD_ORDER}, type=str)
DEFAULT_DATASET_NAME = DatasetName(DEFAULT_DATASET)


class SessionIn(BaseModel):
    file_name: str = Field(min_length=1, max_length=255, pattern=FILE_NAME)
    size: int = Field(ge=1, le=2**53)
    dataset: DatasetName = DEFAULT_DATASET_NAME  # type: ignore[valid-type]


class SessionOut(BaseModel):
    session_id: str
    file_name: str
    size: int
    part_size: int
    parts_received: list[int]
    job_id: str | None
    expires_at: str
    url: str


# --- Plumbing ---------------------------------------------------------------------------------


def _service(request: Request) -> Service:
    return request.app.state.service


def principal(request: Request) -> Principal:
    """The tenant behind the request: `Authorization: Bearer <key>` (or `X-API-Key`), else
    the review page's signed session cookie; 401 otherwise."""
    service = _service(request)
    header = request.headers.get("authorization", "")
    presented = header[7:].strip() if header[:7].lower() == "bearer " else ""
    presented = presented or request.headers.get("x-api-key", "")
    if presented:
        with service.engine.connect() as conn:
            found = authenticate(conn, presented)
        if found is None:
            raise Unauthorized("the API key is not valid (unknown, revoked or malformed)")
        return Principal(tenant_id=found[0], key_id=found[1])
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        session = session_principal(service, cookie)
        if session is not None:
            return session
    raise Unauthorized("an API key is required: Authorization: Bearer <key>")


def session_principal(service: Service, token: str) -> Principal | None:
    """The principal of a session cookie; None if forged, expired or its key was revoked."""
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
    return Principal(tenant_id=tenant, key_id=key_id, job_id=claims.get("job"))


class Unauthorized(ServiceError):
    status = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, {"WWW-Authenticate": "Bearer"})


Caller = Annotated[Principal, Depends(principal)]


def tenant_wide(who: Caller) -> Principal:
    """A principal that acts for the whole tenant: a review link reaches its job only, so it
    cannot upload or change the tenant's settings (its requests get the answer of a stranger)."""
    if who.job_id is not None:
        raise NotFoundError("no such resource for a review link")
    return who


TenantCaller = Annotated[Principal, Depends(tenant_wide)]


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def job_views(service: Service, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
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
        "created_at": _iso(job.created_at),
        "updated_at": _iso(job.updated_at),
        "url": f"/v1/jobs/{job.job_id}",
        "review_url": f"/review/{job.job_id}",
    }


def tenant_job(service: Service, who: Principal, job_id: str) -> ImportJob:
    """The caller's job; 404 for any other (another tenant's job is not confirmed to exist)."""
    job = None
    if who.may_see(job_id):
        with service.engine.connect() as conn:
            job = job_of_tenant(conn, who.tenant_id, job_id)
    if job is None:
        raise NotFoundError(f"no import job {job_id!r}")
    return job


async def _spool_blocks(blocks: AsyncIterator[bytes], limit: int) -> Spooled:
    """Write `blocks` to a temporary file as they come, hashing them; 413 past `limit`."""
    digest = hashlib.sha256()
    size = 0
    handle, name = tempfile.mkstemp(prefix="upload-", suffix=".part")
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as out:
            async for block in blocks:
                size += len(block)
                if size > limit:
                    raise TooLargeError(f"the upload is larger than the limit of {limit} bytes")
                digest.update(block)
                out.write(block)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Spooled(path=path, size=size, sha256=digest.hexdigest())


async def spool(request: Request, limit: int) -> Spooled:
    """The request body in a temporary file, never in memory; 413 past `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLargeError(f"the upload is {declared} bytes; the limit is {limit}")
    return await _spool_blocks(request.stream(), limit)


async def spool_form(request: Request, limit: int) -> tuple[Spooled, str | None]:
    """A multipart/form-data upload: its `file` part spooled as `spool` does, and the part's
    file name; 413 past `limit`, 422 for a form that is not one."""
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def limited() -> AsyncIterator[bytes]:
        seen = 0
        async for block in request.stream():
            seen += len(block)
            if seen > limit + 64 * 1024:  # the form's own lines ride on top of the file
                raise TooLargeError(f"the upload is larger than the limit of {limit} bytes")
            yield block

    parser = MultiPartParser(request.headers, limited(), max_files=1, max_fields=10)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidRequestError(f"the multipart body could not be read: {exc.message}") from None
    try:
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise InvalidRequestError("the multipart body has no 'file' part")

        async def blocks() -> AsyncIterator[bytes]:
            while block := await part.read(1024 * 1024):
                yield block

        spooled = await _spool_blocks(blocks(), limit)
        # Browsers send a bare name; some clients a path (even C:\\fakepath\\x.csv).
        name = PurePosixPath((part.filename or "").replace("\\", "/")).name or None
        return spooled, name
    finally:
        await form.close()


def _session_view(session: dict[str, Any]) -> dict[str, Any]:
    return {
        "session_id": session["session_id"],
        "file_name": session["file_name"],
        "size": session["size"],
        "part_size": session["part_size"],
        "parts_received": sorted(int(n) for n in session["parts"]),
        "job_id": session["job_id"],
        "expires_at": _iso(session["expires_at"]),
        "url": f"/v1/upload-sessions/{session['session_id']}",
    }


def _run(service: Service, who: Principal, job: ImportJob, job_name: str, source: str):
    with service.engine.begin() as conn:
        lane = request_job_run(conn, load_settings(), job, job_name, source)
    return {"job_id": job.job_id, **lane, "job_name": job_name}


# --- The app -------------------------------------------------------------------------------

# Parts are the raw bytes of the file; an upload is those bytes, or a form with a file part.
_BINARY = {"type": "string", "format": "binary"}
BINARY_BODY: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": _BINARY}}}
}
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/octet-stream": {"schema": _BINARY},
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": _BINARY}, "required": ["file"]}
            },
        },
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem},
    401: {"model": Problem},
    404: {"model": Problem},
    422: {"model": Problem},
}


def create_app(settings: Settings | None = None, *, deliver_webhooks: bool = True) -> FastAPI:
    """The service for `settings` (default: the environment)."""
    from ingestion_pipeline.resources import database_engine, landing_zone

    settings = settings or load_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = database_engine(settings)
        with engine.begin() as conn:
            secret = service_secret(conn, "session")
        app.state.service = Service(settings, engine, landing_zone(settings), secret)
        task = None
        if deliver_webhooks:
            task = asyncio.create_task(_deliver_forever(app.state.service))
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(
        title="ingestion_pipeline",
        version="1",
        description=(
            "Hand files to the import pipeline, follow their jobs, review their rows. Every "
            "endpoint is scoped to the tenant of the API key (`Authorization: Bearer <key>`)."
        ),
        lifespan=lifespan,
    )

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        if first.get("type") == "json_invalid":
            return JSONResponse({"detail": "the body is not valid JSON"}, 422)
        if first.get("type") == "string_pattern_mismatch" and where.endswith("file_name"):
            shown = ", ".join(SUPPORTED_EXTENSIONS)
            message = f"{where}: a plain file name ending in one of {shown} (optionally .gz)"
            return JSONResponse({"detail": message}, 422)
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid request')}"}, 422)

    @app.post(
        "/v1/uploads",
        status_code=201,
        response_model=UploadOut,
        responses={
            **ERRORS,
            200: {"model": UploadOut},
            409: {"model": Problem},
            413: {"model": Problem},
            429: {"model": Problem},
        },
        summary="Upload a file (the request body); returns its import job",
        openapi_extra=UPLOAD_BODY,
    )
    async def upload(
        request: Request,
        response: Response,
        who: TenantCaller,
        file_name: Annotated[
            str | None, Query(min_length=1, max_length=255, pattern=FILE_NAME)
        ] = None,
        idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
        dataset: Annotated[DatasetName, Query()] = DEFAULT_DATASET_NAME,  # type: ignore[valid-type]
    ) -> dict[str, Any]:
        """The body is the file's bytes (`file_name` names it), or a `multipart/form-data`
        form whose `file` part is the file (its file name is used unless `file_name` is
        given). `dataset` says what the file holds (contacts unless given).
        `Idempotency-Key`: the same key and bytes return the same job; the same key with
        other bytes is a 409."""
        service = _service(request)
        limit = service.settings.api_max_upload_bytes
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            body, part_name = await spool_form(request, limit)
            file_name = file_name or part_name
        else:
            if not file_name:
                raise InvalidRequestError("query.file_name: required when the body is the file")
            check_file_name(who.tenant_id, file_name, dataset.value)
            body = await spool(request, limit)
        try:
            if not file_name:
                raise InvalidRequestError("the form's file part has no file name: pass file_name")
            check_file_name(who.tenant_id, file_name, dataset.value)
            outcome = await run_in_threadpool(
                accept_upload,
                service.engine,
                service.zone,
                who.tenant_id,
                file_name,
                body,
                idempotency_key,
                dataset.value,
            )
        finally:
            body.path.unlink(missing_ok=True)
        if not outcome.created:
            response.status_code = 200
        job = tenant_job(service, who, outcome.job_id)
        response.headers["Location"] = f"/v1/jobs/{outcome.job_id}"
        answer = await run_in_threadpool(first_answer, service.zone, job, service.engine)
        return {**job_view(service, job), "created": outcome.created, "first_answer": answer}

    @app.post(
        "/v1/upload-sessions",
        status_code=201,
        response_model=SessionOut,
        responses={**ERRORS, 413: {"model": Problem}},
        summary="Open a resumable upload: send its parts, then complete it",
    )
    def create_upload_session(
        request: Request, who: TenantCaller, body: SessionIn
    ) -> dict[str, Any]:
        """Parts are `part_size` bytes each (the last one the rest), numbered from 1."""
        service = _service(request)
        part_size = service.settings.api_part_size
        if isinstance(service.zone, S3LandingZone):
            part_size = max(part_size, S3_MIN_PART_SIZE)
        if body.size > service.settings.api_max_upload_bytes * 100:
            raise TooLargeError(f"{body.size} bytes is more than this service takes")
        session = start_session(
            service.engine,
            service.zone,
            who.tenant_id,
            body.file_name,
            body.size,
            part_size,
            body.dataset.value,
        )
        return _session_view(session)

    @app.get(
        "/v1/upload-sessions/{session_id}",
        response_model=SessionOut,
        responses=ERRORS,
        summary="A resumable upload: which parts arrived (send the others)",
    )
    def get_upload_session(
        request: Request, who: TenantCaller, session_id: Annotated[str, PathParam(max_length=64)]
    ) -> dict[str, Any]:
        return _session_view(open_session(_service(request).engine, who.tenant_id, session_id))

    @app.put(
        "/v1/upload-sessions/{session_id}/parts/{number}",
        response_model=SessionOut,
        responses={**ERRORS, 409: {"model": Problem}, 413: {"model": Problem}},
        summary="Send one part (sending it again replaces it)",
        openapi_extra=BINARY_BODY,
    )
    async def put_part(
        request: Request,
        who: TenantCaller,
        session_id: Annotated[str, PathParam(max_length=64)],
        number: Annotated[int, PathParam(ge=1, le=10_000)],
    ) -> dict[str, Any]:
        service = _service(request)
        session = await run_in_threadpool(open_session, service.engine, who.tenant_id, session_id)
        body = await spool(request, session["part_size"])
        try:
            session = await run_in_threadpool(
                put_session_part,
                service.engine,
                service.zone,
                who.tenant_id,
                session_id,
                number,
                body,
            )
        finally:
            body.path.unlink(missing_ok=True)
        return _session_view(session)

    @app.post(
        "/v1/upload-sessions/{session_id}/complete",
        status_code=201,
        response_model=UploadOut,
        responses={**ERRORS, 409: {"model": Problem}, 429: {"model": Problem}},
        summary="Assemble the parts into the upload; returns its import job",
    )
    def complete_upload_session(
        request: Request,
        response: Response,
        who: TenantCaller,
        session_id: Annotated[str, PathParam(max_length=64)],
    ) -> dict[str, Any]:
        service = _service(request)
        outcome = complete_session(service.engine, service.zone, who.tenant_id, session_id)
        if not outcome.created:
            response.status_code = 200
        response.headers["Location"] = f"/v1/jobs/{outcome.job_id}"
        job = tenant_job(service, who, outcome.job_id)
        answer = first_answer(service.zone, job, service.engine)
        return {**job_view(service, job), "created": outcome.created, "first_answer": answer}

    @app.get("/v1/jobs", response_model=JobList, responses=ERRORS, summary="The tenant's jobs")
    def get_jobs(
        request: Request,
        who: Caller,
        status: Annotated[JobStatus | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> dict[str, Any]:
        """Newest first."""
        service = _service(request)
        with service.engine.connect() as conn:
            jobs = list_jobs(
                conn,
                tenant_id=who.tenant_id,
                status=status.value if status else None,
                limit=limit + 1,
                offset=offset,
            )
        jobs = [j for j in jobs if who.may_see(j.job_id)]
        more = len(jobs) > limit
        return {
            "jobs": job_views(service, jobs[:limit]),
            "next_offset": offset + limit if more else None,
        }

    @app.get(
        "/v1/jobs/{job_id}", response_model=JobOut, responses=ERRORS, summary="One job's status"
    )
    def get_job(request: Request, who: Caller, job_id: Annotated[str, JOB_ID]) -> dict[str, Any]:
        """Status, progress (`processed_rows` of `total_rows`), issue counts by kind, mapping."""
        service = _service(request)
        return job_view(service, tenant_job(service, who, job_id))

    @app.get(
        "/v1/jobs/{job_id}/issues",
        response_model=IssuePage,
        responses=ERRORS,
        summary="A job's open issues, a page at a time",
    )
    def get_issues(
        request: Request,
        who: Caller,
        job_id: Annotated[str, JOB_ID],
        kind: Annotated[str | None, Query(max_length=64)] = None,
        after: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """Pass `next_after` back as `after` for the next page."""
        service = _service(request)
        tenant_job(service, who, job_id)
        with service.engine.connect() as conn:
            page = issues_page(conn, job_id, after=after, limit=limit + 1, kind=kind)
        more = len(page) > limit
        page = page[:limit]
        return {
            "issues": [{**i, "rows": list(i["rows"])} for i in page],
            "next_after": page[-1]["issue_id"] if more else None,
        }

    @app.post(
        "/v1/jobs/{job_id}/decisions",
        response_model=DecisionsOut,
        responses={**ERRORS, 409: {"model": Problem}},
        summary="Record fixes and discards on a job under review",
    )
    def post_decisions(
        request: Request, who: Caller, job_id: Annotated[str, JOB_ID], body: DecisionsIn
    ) -> dict[str, Any]:
        """Recorded, not applied: `POST …/reprocess` applies them. A `fix` sets the given
        fields (`null` or "" empties one); the latest decision on a row wins."""
        service = _service(request)
        job = tenant_job(service, who, job_id)
        fields = job.declaration.field_names
        decisions = [_decision(d, fields) for d in body.decisions]
        return {"job_id": job_id, "recorded": record_job_decisions(service, job, decisions, "api")}

    @app.post(
        "/v1/jobs/{job_id}/mapping",
        status_code=202,
        response_model=RunRequestOut,
        responses={**ERRORS, 409: {"model": Problem}},
        summary="Confirm the column mapping of a job waiting in NEEDS_MAPPING",
    )
    def post_mapping(
        request: Request, who: Caller, job_id: Annotated[str, JOB_ID], body: MappingIn
    ) -> dict[str, Any]:
        """`{"fields": {"email": "E-mail 1 - Value", "company": null}}`: a column, several
        (first non-blank wins) or null (left empty on purpose). Remembered for the tenant's
        next file of the same header; the import continues."""
        from ingestion_pipeline.importer import confirm_mapping

        service = _service(request)
        job = tenant_job(service, who, job_id)
        if job.status not in (JobStatus.NEEDS_MAPPING, JobStatus.PENDING):
            raise ConflictError(
                f"job {job_id} is {job.status.value}; it does not wait for a mapping"
            )
        fields = mappable_fields(job.declaration)
        unknown = sorted(set(body.fields) - set(fields))
        if unknown:
            raise InvalidRequestError(
                f"unknown field(s) {', '.join(unknown)}; fields: {', '.join(fields)}"
            )
        try:
            confirm_mapping(service.engine, service.zone, job, body.fields)
        except MappingError as exc:
            raise InvalidRequestError(f"{job_id}: {exc}") from None
        return _run(service, who, job, "import_job", "api:mapping")

    @app.post(
        "/v1/jobs/{job_id}/reprocess",
        status_code=202,
        response_model=RunRequestOut,
        responses={**ERRORS, 409: {"model": Problem}},
        summary="Apply the recorded decisions (or retry a FAILED job)",
    )
    def post_reprocess(
        request: Request, who: Caller, job_id: Annotated[str, JOB_ID]
    ) -> dict[str, Any]:
        """A run request that the sensors launch within seconds; follow the job's status."""
        service = _service(request)
        return request_reprocess(service, who, tenant_job(service, who, job_id), "api")

    @app.put(
        "/v1/webhook",
        response_model=WebhookOut,
        responses=ERRORS,
        summary="Send the tenant's job events to a URL (null: stop)",
    )
    def put_webhook(request: Request, who: TenantCaller, body: WebhookIn) -> dict[str, Any]:
        """Events: job.completed, job.needs_review, job.needs_mapping, job.failed. The secret
        signs every delivery (headers webhook-id, webhook-timestamp, webhook-signature)."""
        service = _service(request)
        with service.engine.begin() as conn:
            secret = set_webhook(conn, who.tenant_id, body.url)
        return {"url": body.url, "secret": secret}

    @app.get(
        "/v1/webhook/deliveries",
        response_model=list[DeliveryOut],
        responses=ERRORS,
        summary="The delivery log, newest first",
    )
    def get_deliveries(
        request: Request,
        who: Caller,
        job_id: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[dict[str, Any]]:
        service = _service(request)
        with service.engine.connect() as conn:
            rows = list_deliveries(conn, who.tenant_id, job_id=job_id, limit=limit)
        return [
            {
                **{k: r[k] for k in ("delivery_id", "event", "job_id", "url", "state")},
                **{k: r[k] for k in ("attempts", "last_status", "last_error")},
                "event_id": str(r["event_id"]),
                "created_at": _iso(r["created_at"]),
                "delivered_at": _iso(r["delivered_at"]),
            }
            for r in rows
            if who.may_see(r["job_id"])
        ]

    from ingestion_pipeline.service.pages import add_pages

    add_pages(app)
    app.include_router(operations.router)  # /healthz, /readyz, /metrics: no key, no limit
    app.add_middleware(operations.RequestMetricsMiddleware)
    _describe_links(app)
    return app


# OpenAPI links: what an answer's ids lead to (clients and fuzzers follow them).
_JOB_LINKS = {
    "GetJob": ("get", "/v1/jobs/{job_id}"),
    "GetIssues": ("get", "/v1/jobs/{job_id}/issues"),
    "PostDecisions": ("post", "/v1/jobs/{job_id}/decisions"),
    "PostMapping": ("post", "/v1/jobs/{job_id}/mapping"),
    "Reprocess": ("post", "/v1/jobs/{job_id}/reprocess"),
}
_SESSION_LINKS = {
    "GetSession": ("get", "/v1/upload-sessions/{session_id}"),
    "PutPart": ("put", "/v1/upload-sessions/{session_id}/parts/{number}"),
    "Complete": ("post", "/v1/upload-sessions/{session_id}/complete"),
}


def _describe_links(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        paths = schema["paths"]

        def link(source: tuple[str, str, str], targets: dict, param: str) -> None:
            method, path, status = source
            answer = paths[path][method]["responses"][status]
            answer["links"] = {
                name: {
                    "operationId": paths[target][verb]["operationId"],
                    "parameters": {param: f"$response.body#/{param}"},
                }
                for name, (verb, target) in targets.items()
            }

        link(("post", "/v1/uploads", "201"), _JOB_LINKS, "job_id")
        link(("post", "/v1/upload-sessions/{session_id}/complete", "201"), _JOB_LINKS, "job_id")
        link(("post", "/v1/upload-sessions", "201"), _SESSION_LINKS, "session_id")
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


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


def request_reprocess(
    service: Service, who: Principal, job: ImportJob, source: str
) -> dict[str, Any]:
    """Ask for a reprocess run (a retry for a FAILED job); 409 when there is nothing to run."""
    if job.status is JobStatus.NEEDS_REVIEW:
        return _run(service, who, job, "reprocess_job", source)
    if job.status is JobStatus.FAILED:
        return _run(service, who, job, "import_job", source)
    raise ConflictError(
        f"job {job.job_id} is {job.status.value}; only NEEDS_REVIEW or FAILED jobs rerun"
    )


SWEEP_EVERY_SECONDS = 600


async def _deliver_forever(service: Service) -> None:
    """Send due webhooks; every ten minutes, throw away upload sessions that expired."""
    policy = retry_policy(service.settings)
    next_sweep = 0.0
    while True:
        try:
            sent = await run_in_threadpool(deliver_due, service.engine, policy)
            if time.monotonic() >= next_sweep:
                await run_in_threadpool(sweep_expired_sessions, service.engine, service.zone)
                next_sweep = time.monotonic() + SWEEP_EVERY_SECONDS
        except Exception:  # the loop outlives a database restart; the error is logged
            log.exception("webhook delivery or session sweep failed; trying again")
            sent = 0
        await asyncio.sleep(0.05 if sent else 0.5)


def app_from_environment() -> FastAPI:
    """The factory `ingestion-pipeline serve` hands to uvicorn."""
    return create_app()
