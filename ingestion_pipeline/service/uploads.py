"""Uploads over HTTP, into the landing zone: one request, or a resumable session of parts.

Free of the web framework: the app streams the body to a spooled file and calls these.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath

from sqlalchemy.engine import Engine

from ingestion_pipeline.constants import COMPRESSED_EXTENSIONS
from ingestion_pipeline.datasets import DEFAULT_DATASET
from ingestion_pipeline.db.import_jobs import NewJob, register_jobs
from ingestion_pipeline.db.service import (
    admit,
    attach_admission,
    create_session,
    delete_session,
    expired_sessions,
    finish_session,
    get_session,
    idempotent_job,
    job_for_source,
    record_part,
    release_admission,
    remember_idempotency_key,
)
from ingestion_pipeline.db.warm_queue import enqueue
from ingestion_pipeline.landing import (
    InvalidKeyError,
    LandingZone,
    ObjectInfo,
    job_id_for,
    parse_upload_key,
    upload_key,
)
from ingestion_pipeline.lanes import warm_by_size
from ingestion_pipeline.settings import load_settings

SESSION_TTL = timedelta(hours=24)
# S3 refuses multipart parts under 5 MiB (all but the last).
S3_MIN_PART_SIZE = 5 * 1024**2
MAX_PARTS = 10_000


class ServiceError(Exception):
    """A request the service refuses: an HTTP status, a message, optional headers."""

    status = 400

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class NotFoundError(ServiceError):
    status = 404


class ConflictError(ServiceError):
    status = 409


class TooLargeError(ServiceError):
    status = 413


class InvalidRequestError(ServiceError):
    status = 422


class RateLimitedError(ServiceError):
    status = 429

    def __init__(self, tenant_id: str, retry_after: int) -> None:
        super().__init__(
            f"tenant {tenant_id} reached its import limit; try again in {retry_after} s",
            {"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


@dataclass(frozen=True)
class Spooled:
    """A request body written to a temporary file as it arrived, with its size and hash."""

    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class UploadOutcome:
    job_id: str
    created: bool


def object_name(file_name: str, tag: str) -> str:
    """`contacts.csv` -> `contacts.<tag>.csv` (`.csv.gz` kept whole): uploads never overwrite
    one another, and the same bytes land on the same key."""
    path = PurePosixPath(file_name)
    suffixes = path.suffixes[-2:] if path.suffix.lower() in COMPRESSED_EXTENSIONS else [path.suffix]
    ext = "".join(suffixes)
    stem = file_name[: len(file_name) - len(ext)] if ext else file_name
    return f"{stem}.{tag}{ext}"


_TAG = re.compile(r"\.[0-9a-f]{12}(?=(\.[^.]+)(\.gz)?$)", re.IGNORECASE)


def display_name(file_name: str) -> str:
    """The name a person gave the file: `object_name`'s tag taken out again."""
    return _TAG.sub("", file_name, count=1)


def check_file_name(tenant_id: str, file_name: str, dataset: str = DEFAULT_DATASET) -> str:
    """The upload key layout check for the file name as given; its message on failure."""
    if not file_name or "/" in file_name:
        raise InvalidRequestError(f"file name {file_name!r} is not a plain file name")
    try:
        return upload_key(tenant_id, file_name, dataset)
    except InvalidKeyError as exc:
        raise InvalidRequestError(str(exc).replace(f"uploads/{tenant_id}/", "")) from None


def _admit_and_land(engine: Engine, tenant_id: str, land: Callable[[], ObjectInfo]) -> str:
    """Take a place in the tenant's import window (429 when there is none), put the object in
    the landing zone with `land`, and register its job; the place is given back if landing
    fails, so a refused or broken upload costs the tenant nothing."""
    with engine.begin() as conn:
        verdict = admit(conn, tenant_id)[0]
    if not verdict.admitted:
        raise RateLimitedError(tenant_id, verdict.retry_after)
    try:
        info = land()
        parsed = parse_upload_key(info.key)
        job_id = job_id_for(tenant_id, info.key, info.etag)
        with engine.begin() as conn:
            register_jobs(
                conn,
                [
                    NewJob(
                        job_id,
                        tenant_id,
                        info.key,
                        info.etag,
                        parsed.file_name,
                        parsed.dataset,
                        info.size,
                    )
                ],
            )
            if verdict.admission_id is not None:
                attach_admission(conn, verdict.admission_id, job_id)
            if warm_by_size(load_settings(), info.size):
                # In the transaction that registers the job: the upload sensor, which sees
                # the object too, never launches a run of a job the warm lane holds.
                enqueue(conn, [(job_id, tenant_id)], "upload")
    except BaseException:
        if verdict.admission_id is not None:
            with engine.begin() as conn:
                release_admission(conn, verdict.admission_id)
        raise
    return job_id


def accept_upload(
    engine: Engine,
    zone: LandingZone,
    tenant_id: str,
    file_name: str,
    body: Spooled,
    idempotency_key: str | None,
    dataset: str = DEFAULT_DATASET,
) -> UploadOutcome:
    """Put a spooled upload in the landing zone and register its job (PENDING: the upload
    sensor launches it). The same bytes again are the same job; the same Idempotency-Key with
    other bytes is a conflict; over the tenant's import limit nothing is written."""
    check_file_name(tenant_id, file_name, dataset)
    if body.size == 0:
        raise InvalidRequestError(f"{file_name}: the upload is empty")
    with engine.connect() as conn:
        known = idempotent_job(conn, tenant_id, idempotency_key) if idempotency_key else None
    if known is not None:
        if known[0] != body.sha256:
            raise ConflictError(
                f"Idempotency-Key {idempotency_key!r} was used for other content (job {known[1]})"
            )
        return UploadOutcome(known[1], created=False)
    key = upload_key(tenant_id, object_name(file_name, body.sha256[:12]), dataset)
    existing = zone.stat(key)
    job_id = None
    if existing is not None and existing.size == body.size:
        with engine.connect() as conn:
            job_id = job_for_source(conn, tenant_id, key, existing.etag)
    created = job_id is None
    if job_id is None:

        def land() -> ObjectInfo:
            with body.path.open("rb") as data:
                return zone.write(key, data)

        job_id = _admit_and_land(engine, tenant_id, land)
    if idempotency_key:
        with engine.begin() as conn:
            sha, job_id = remember_idempotency_key(
                conn, tenant_id, idempotency_key, body.sha256, job_id
            )
        if sha != body.sha256:
            raise ConflictError(f"Idempotency-Key {idempotency_key!r} was used for other content")
    return UploadOutcome(job_id, created=created)


def start_session(
    engine: Engine,
    zone: LandingZone,
    tenant_id: str,
    file_name: str,
    size: int,
    part_size: int,
    dataset: str = DEFAULT_DATASET,
) -> dict:
    """Open a resumable upload of `size` bytes in parts of `part_size` (the last one shorter)."""
    check_file_name(tenant_id, file_name, dataset)
    if size < 1:
        raise InvalidRequestError("size must be at least 1 byte")
    if -(-size // part_size) > MAX_PARTS:
        raise TooLargeError(f"{size} bytes would take more than {MAX_PARTS} parts")
    session_id = secrets.token_hex(12)
    key = upload_key(tenant_id, object_name(file_name, session_id[:12]), dataset)
    upload_id = zone.start_upload(key)
    with engine.begin() as conn:
        create_session(
            conn,
            session_id=session_id,
            tenant_id=tenant_id,
            file_name=file_name,
            object_key=key,
            upload_id=upload_id,
            part_size=part_size,
            size=size,
            expires_at=datetime.now(timezone.utc) + SESSION_TTL,
        )
        return get_session(conn, tenant_id, session_id) or {}


def open_session(engine: Engine, tenant_id: str, session_id: str) -> dict:
    with engine.connect() as conn:
        session = get_session(conn, tenant_id, session_id)
    if session is None:
        raise NotFoundError(f"no upload session {session_id!r}")
    return session


def expected_part_size(session: dict, number: int) -> int:
    count = -(-session["size"] // session["part_size"])
    if not 1 <= number <= count:
        raise InvalidRequestError(f"part number must be 1 to {count}, got {number}")
    if number < count:
        return session["part_size"]
    return session["size"] - session["part_size"] * (count - 1)


def put_session_part(
    engine: Engine, zone: LandingZone, tenant_id: str, session_id: str, number: int, body: Spooled
) -> dict:
    """Store one part (sent again, it replaces the earlier copy); the session afterwards."""
    session = open_session(engine, tenant_id, session_id)
    if session["job_id"]:
        raise ConflictError(f"upload session {session_id} is complete (job {session['job_id']})")
    want = expected_part_size(session, number)
    if body.size != want:
        raise InvalidRequestError(f"part {number} must be {want} bytes, got {body.size}")
    with body.path.open("rb") as data:
        etag = zone.put_part(session["object_key"], session["upload_id"], number, data)
    with engine.begin() as conn:
        record_part(conn, session_id, number, etag, body.size)
    return open_session(engine, tenant_id, session_id)


def complete_session(
    engine: Engine, zone: LandingZone, tenant_id: str, session_id: str
) -> UploadOutcome:
    """Assemble the parts into the object and register its job; missing parts are a 409."""
    session = open_session(engine, tenant_id, session_id)
    if session["job_id"]:
        return UploadOutcome(session["job_id"], created=False)
    count = -(-session["size"] // session["part_size"])
    missing = [n for n in range(1, count + 1) if str(n) not in session["parts"]]
    if missing:
        shown = ", ".join(map(str, missing[:20]))
        raise ConflictError(f"upload session {session_id} is missing part(s) {shown}")
    parts = [(int(n), p["etag"]) for n, p in session["parts"].items()]
    job_id = _admit_and_land(
        engine,
        tenant_id,
        lambda: zone.complete_upload(session["object_key"], session["upload_id"], parts),
    )
    with engine.begin() as conn:
        finish_session(conn, session_id, job_id)
    return UploadOutcome(job_id, created=True)


def sweep_expired_sessions(engine: Engine, zone: LandingZone) -> int:
    """Abort the uploads of sessions that expired unfinished and forget them; how many."""
    with engine.connect() as conn:
        stale = expired_sessions(conn)
    for session in stale:
        zone.abort_upload(session["object_key"], session["upload_id"])
        with engine.begin() as conn:
            delete_session(conn, session["session_id"])
    return len(stale)
