"""Uploads: a file in one request, or a resumable session of parts."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool

from ingestion_pipeline.db.import_jobs import mark_link
from ingestion_pipeline.first_answer import first_answer
from ingestion_pipeline.landing import S3LandingZone
from ingestion_pipeline.service.deps import (
    Principal,
    Service,
    ServiceDep,
    TenantCaller,
    iso,
    job_view,
    tenant_job,
)
from ingestion_pipeline.service.schemas import (
    BINARY_BODY,
    DEFAULT_DATASET_NAME,
    ERRORS,
    FILE_NAME,
    UPLOAD_BODY,
    DatasetName,
    Problem,
    SessionIn,
    SessionOut,
    UploadOut,
)
from ingestion_pipeline.service.uploads import (
    S3_MIN_PART_SIZE,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    Spooled,
    TooLargeError,
    UploadOutcome,
    accept_upload,
    check_file_name,
    complete_session,
    open_session,
    put_session_part,
    start_session,
)

router = APIRouter(tags=["uploads"])


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


def session_view(session: dict[str, Any]) -> dict[str, Any]:
    return {
        "session_id": session["session_id"],
        "file_name": session["file_name"],
        "size": session["size"],
        "part_size": session["part_size"],
        "parts_received": sorted(int(n) for n in session["parts"]),
        "job_id": session["job_id"],
        "expires_at": iso(session["expires_at"]),
        "url": f"/v1/upload-sessions/{session['session_id']}",
    }


def link_dataset(who: Principal, dataset: str) -> str:
    """The dataset of an upload: an import link that fixes one allows that one only."""
    if who.dataset is not None and dataset != who.dataset:
        raise InvalidRequestError(f"this import link takes {who.dataset} files, not {dataset}")
    return dataset


def landed(service: Service, who: Principal, outcome: UploadOutcome) -> dict[str, Any]:
    """The answer to an upload: its job (recorded as the import link's, when it came by one)
    and the first answer of its file."""
    if who.link_id is not None:
        with service.engine.begin() as conn:
            mark_link(
                conn, outcome.job_id, who.link_id, who.user, only_unclaimed=not outcome.created
            )
    try:
        job = tenant_job(service, who, outcome.job_id)
    except NotFoundError:
        raise ConflictError("the same file came through another import link") from None
    answer = first_answer(service.zone, job, service.engine)
    return {**job_view(service, job), "created": outcome.created, "first_answer": answer}


@router.post(
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
    service: ServiceDep,
    who: TenantCaller,
    file_name: Annotated[str | None, Query(min_length=1, max_length=255, pattern=FILE_NAME)] = None,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    dataset: Annotated[DatasetName, Query()] = DEFAULT_DATASET_NAME,  # type: ignore[valid-type]
) -> dict[str, Any]:
    """The body is the file's bytes (`file_name` names it), or a `multipart/form-data`
    form whose `file` part is the file (its file name is used unless `file_name` is
    given). `dataset` says what the file holds (contacts unless given).
    `Idempotency-Key`: the same key and bytes return the same job; the same key with
    other bytes is a 409."""
    limit = service.settings.api_max_upload_bytes
    target = link_dataset(who, dataset.value)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        body, part_name = await spool_form(request, limit)
        file_name = file_name or part_name
    else:
        if not file_name:
            raise InvalidRequestError("query.file_name: required when the body is the file")
        check_file_name(who.tenant_id, file_name, target)
        body = await spool(request, limit)
    try:
        if not file_name:
            raise InvalidRequestError("the form's file part has no file name: pass file_name")
        check_file_name(who.tenant_id, file_name, target)
        outcome = await run_in_threadpool(
            accept_upload,
            service.engine,
            service.zone,
            who.tenant_id,
            file_name,
            body,
            idempotency_key,
            target,
        )
    finally:
        body.path.unlink(missing_ok=True)
    if not outcome.created:
        response.status_code = 200
    response.headers["Location"] = f"/v1/jobs/{outcome.job_id}"
    return await run_in_threadpool(landed, service, who, outcome)


@router.post(
    "/v1/upload-sessions",
    status_code=201,
    response_model=SessionOut,
    responses={**ERRORS, 413: {"model": Problem}},
    summary="Open a resumable upload: send its parts, then complete it",
)
def create_upload_session(
    service: ServiceDep, who: TenantCaller, body: SessionIn
) -> dict[str, Any]:
    """Parts are `part_size` bytes each (the last one the rest), numbered from 1."""
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
        link_dataset(who, body.dataset.value),
    )
    return session_view(session)


@router.get(
    "/v1/upload-sessions/{session_id}",
    response_model=SessionOut,
    responses=ERRORS,
    summary="A resumable upload: which parts arrived (send the others)",
)
def get_upload_session(
    service: ServiceDep, who: TenantCaller, session_id: Annotated[str, PathParam(max_length=64)]
) -> dict[str, Any]:
    return session_view(open_session(service.engine, who.tenant_id, session_id))


@router.put(
    "/v1/upload-sessions/{session_id}/parts/{number}",
    response_model=SessionOut,
    responses={**ERRORS, 409: {"model": Problem}, 413: {"model": Problem}},
    summary="Send one part (sending it again replaces it)",
    openapi_extra=BINARY_BODY,
)
async def put_part(
    request: Request,
    service: ServiceDep,
    who: TenantCaller,
    session_id: Annotated[str, PathParam(max_length=64)],
    number: Annotated[int, PathParam(ge=1, le=10_000)],
) -> dict[str, Any]:
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
    return session_view(session)


@router.post(
    "/v1/upload-sessions/{session_id}/complete",
    status_code=201,
    response_model=UploadOut,
    responses={**ERRORS, 409: {"model": Problem}, 429: {"model": Problem}},
    summary="Assemble the parts into the upload; returns its import job",
)
def complete_upload_session(
    response: Response,
    service: ServiceDep,
    who: TenantCaller,
    session_id: Annotated[str, PathParam(max_length=64)],
) -> dict[str, Any]:
    outcome = complete_session(service.engine, service.zone, who.tenant_id, session_id)
    if not outcome.created:
        response.status_code = 200
    response.headers["Location"] = f"/v1/jobs/{outcome.job_id}"
    return landed(service, who, outcome)
