"""What the HTTP service keeps in PostgreSQL: API keys, tenant settings, admissions under the
import limit, idempotency keys, upload sessions, run requests and webhook deliveries."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Engine

from ingestion_pipeline.db.import_jobs import ImportJob, NewJob
from ingestion_pipeline.db.tables import (
    admissions,
    api_keys,
    idempotency_keys,
    import_jobs,
    run_requests,
    service_secrets,
    tenant_settings,
    upload_sessions,
    warm_queue,
    webhook_deliveries,
)
from ingestion_pipeline.service.signing import is_webhook_secret, new_webhook_secret

KEY_PREFIX = "ipk"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- API keys -------------------------------------------------------------------------------


def create_api_key(conn: Connection, tenant_id: str, name: str = "") -> tuple[str, str]:
    """A new key for the tenant: (key id, the whole key, shown once; only its hash is kept)."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(24)
    conn.execute(
        sa.insert(api_keys).values(
            key_id=key_id, tenant_id=tenant_id, name=name, secret_sha256=_sha256(secret)
        )
    )
    return key_id, f"{KEY_PREFIX}_{key_id}_{secret}"


def authenticate(conn: Connection, presented: str) -> tuple[str, str] | None:
    """(tenant, key id) for a valid, unrevoked key; None for anything else."""
    prefix, _, rest = presented.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != KEY_PREFIX or not key_id or not secret:
        return None
    row = conn.execute(
        sa.select(api_keys.c.tenant_id, api_keys.c.secret_sha256).where(
            api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None)
        )
    ).first()
    if row is None or not hmac.compare_digest(row.secret_sha256, _sha256(secret)):
        return None
    return row.tenant_id, key_id


def key_is_active(conn: Connection, key_id: str, tenant_id: str) -> bool:
    return bool(
        conn.scalar(
            sa.select(sa.literal(1)).where(
                api_keys.c.key_id == key_id,
                api_keys.c.tenant_id == tenant_id,
                api_keys.c.revoked_at.is_(None),
            )
        )
    )


def revoke_api_key(conn: Connection, key_id: str) -> str | None:
    """Revoke a key; its tenant, or None when there is no such active key."""
    return conn.scalar(
        sa.update(api_keys)
        .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=sa.func.now())
        .returning(api_keys.c.tenant_id)
    )


def list_api_keys(conn: Connection, tenant_id: str | None = None) -> list[dict[str, Any]]:
    query = sa.select(
        api_keys.c.key_id,
        api_keys.c.tenant_id,
        api_keys.c.name,
        api_keys.c.created_at,
        api_keys.c.revoked_at,
    ).order_by(api_keys.c.created_at, api_keys.c.key_id)
    if tenant_id is not None:
        query = query.where(api_keys.c.tenant_id == tenant_id)
    return [dict(r) for r in conn.execute(query).mappings()]


def service_secret(conn: Connection, name: str) -> bytes:
    """A random secret shared by every process of the service, made on first use."""
    conn.execute(
        insert(service_secrets)
        .values(name=name, secret=secrets.token_hex(32))
        .on_conflict_do_nothing()
    )
    value = conn.scalar(sa.select(service_secrets.c.secret).where(service_secrets.c.name == name))
    return bytes.fromhex(value)


# --- Tenant settings ------------------------------------------------------------------------


def tenant_config(conn: Connection, tenant_id: str) -> dict[str, Any]:
    row = (
        conn.execute(sa.select(tenant_settings).where(tenant_settings.c.tenant_id == tenant_id))
        .mappings()
        .first()
    )
    return dict(row) if row else {"tenant_id": tenant_id}


def _upsert_settings(conn: Connection, tenant_id: str, **values: Any) -> None:
    stmt = insert(tenant_settings).values(tenant_id=tenant_id, **values)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[tenant_settings.c.tenant_id],
            set_={**values, "updated_at": sa.func.now()},
        )
    )


def set_import_limit(
    conn: Connection, tenant_id: str, limit: int | None, window_seconds: int | None
) -> None:
    """At most `limit` imports per `window_seconds` for the tenant; None lifts the limit."""
    if limit is None:
        _upsert_settings(conn, tenant_id, import_limit=None, window_seconds=None)
    else:
        _upsert_settings(conn, tenant_id, import_limit=limit, window_seconds=window_seconds)


def set_webhook(conn: Connection, tenant_id: str, url: str | None) -> str | None:
    """Send the tenant's job events to `url`; returns the signing secret, whsec_ + base64 of
    32 random bytes as Standard Webhooks has it (kept across changes of URL, made on first
    use, or in place of one not of that form). None removes the webhook."""
    if url is None:
        _upsert_settings(conn, tenant_id, webhook_url=None)
        return None
    secret = tenant_config(conn, tenant_id).get("webhook_secret")
    if not is_webhook_secret(secret):
        secret = new_webhook_secret()
    _upsert_settings(conn, tenant_id, webhook_url=url, webhook_secret=secret)
    return secret


def set_embed_origins(conn: Connection, tenant_id: str, origins: list[str] | None) -> None:
    """The origins whose pages may frame the tenant's import flow and hear its events."""
    _upsert_settings(conn, tenant_id, embed_origins=origins or None)


def embed_origins(conn: Connection, tenant_id: str) -> list[str]:
    return list(tenant_config(conn, tenant_id).get("embed_origins") or [])


# --- Admissions under the sliding-window import limit ----------------------------------------


@dataclass(frozen=True)
class Admission:
    """Whether an import may start now; if not, in how many seconds a place frees up."""

    admitted: bool
    retry_after: int = 0
    admission_id: int | None = None


_LIMIT_AND_WINDOW = sa.text(
    """
    SELECT t.import_limit, t.window_seconds,
           (SELECT count(*) FROM admissions a
            WHERE a.tenant_id = :tenant AND a.admitted_at > now() - make_interval(
                secs => t.window_seconds)) AS used,
           (SELECT ceil(extract(epoch FROM min(a.admitted_at)
                        + make_interval(secs => t.window_seconds) - now()))
            FROM admissions a
            WHERE a.tenant_id = :tenant AND a.admitted_at > now() - make_interval(
                secs => t.window_seconds)) AS frees_in
    FROM tenant_settings t
    WHERE t.tenant_id = :tenant AND t.import_limit IS NOT NULL
    """
)


def _lock_tenant(conn: Connection, tenant_id: str) -> None:
    # The first statement of the transaction: every process (API workers, the sensor) that
    # counts a tenant's window does so one at a time, so N is never exceeded.
    conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"admission:{tenant_id}"},
    )


def admit(
    conn: Connection, tenant_id: str, job_ids: Sequence[str | None] = (None,)
) -> list[Admission]:
    """Let in as many of `job_ids` (None: one import whose job is not known yet) as the
    tenant's window allows, in order; call inside a transaction of its own."""
    _lock_tenant(conn, tenant_id)
    row = conn.execute(_LIMIT_AND_WINDOW, {"tenant": tenant_id}).first()
    if row is None:
        return [Admission(True) for _ in job_ids]
    room = max(row.import_limit - row.used, 0)
    out = []
    for job_id in job_ids:
        if room <= 0:
            out.append(Admission(False, max(int(row.frees_in or row.window_seconds), 1)))
            continue
        admission_id = conn.scalar(
            insert(admissions)
            .values(tenant_id=tenant_id, job_id=job_id)
            .on_conflict_do_nothing()
            .returning(admissions.c.admission_id)
        )
        room -= 1
        out.append(Admission(True, admission_id=admission_id))
    return out


def attach_admission(conn: Connection, admission_id: int, job_id: str) -> None:
    """Tie an admission taken before the upload was written to its job (once known)."""
    taken = conn.scalar(sa.select(admissions.c.admission_id).where(admissions.c.job_id == job_id))
    if taken is not None:
        release_admission(conn, admission_id)  # the sensor admitted the job meanwhile
        return
    conn.execute(
        sa.update(admissions).where(admissions.c.admission_id == admission_id).values(job_id=job_id)
    )


def release_admission(conn: Connection, admission_id: int) -> None:
    conn.execute(sa.delete(admissions).where(admissions.c.admission_id == admission_id))


def admit_jobs(engine: Engine, jobs: Iterable[NewJob]) -> set[str]:
    """The jobs among `jobs` that may run: those of tenants without a limit, those admitted
    before, and as many more per tenant as its window allows (oldest first)."""
    jobs = list(jobs)
    if not jobs:
        return set()
    with engine.connect() as conn:
        limited = set(
            conn.scalars(
                sa.select(tenant_settings.c.tenant_id).where(
                    tenant_settings.c.tenant_id.in_({j.tenant_id for j in jobs}),
                    tenant_settings.c.import_limit.is_not(None),
                )
            )
        )
        ok = {j.job_id for j in jobs if j.tenant_id not in limited}
        ids = [j.job_id for j in jobs if j.tenant_id in limited]
        if ids:
            query = sa.select(admissions.c.job_id).where(admissions.c.job_id.in_(ids))
            ok |= set(conn.scalars(query))
    for tenant in sorted(limited):
        waiting = [j.job_id for j in jobs if j.tenant_id == tenant and j.job_id not in ok]
        if waiting:
            with engine.begin() as conn:
                verdicts = admit(conn, tenant, waiting)
            ok |= {job_id for job_id, v in zip(waiting, verdicts, strict=True) if v.admitted}
    return ok


# A job admitted this long ago and still PENDING lost its run request (the sensor's tick
# failed after admitting it): it is offered again. A run it did get is not doubled by this:
# a single run's run key dedups it, and a second batch run finds the job done (job lock).
READMIT_AFTER_SECONDS = 15 * 60

_WAITING = sa.text(
    """
    SELECT j.job_id, j.tenant_id, j.source_key, j.source_etag, j.file_name, j.dataset,
           j.source_size
    FROM import_jobs j
    JOIN tenant_settings t ON t.tenant_id = j.tenant_id AND t.import_limit IS NOT NULL
    WHERE j.status = 'PENDING'
      AND NOT EXISTS (SELECT 1 FROM admissions a WHERE a.job_id = j.job_id
                      AND a.admitted_at > now() - make_interval(secs => :readmit_after))
    ORDER BY j.created_at, j.job_id
    LIMIT :limit
    """
)


def waiting_jobs(conn: Connection, limit: int) -> list[NewJob]:
    """PENDING jobs held back by their tenant's import limit, oldest first, and those
    admitted long ago whose run never came (READMIT_AFTER_SECONDS)."""
    params = {"limit": limit, "readmit_after": READMIT_AFTER_SECONDS}
    return [NewJob(**dict(r)) for r in conn.execute(_WAITING, params).mappings()]


# --- Idempotent uploads ---------------------------------------------------------------------


def idempotent_job(conn: Connection, tenant_id: str, key: str) -> tuple[str, str] | None:
    """(content SHA-256, job id) recorded for the tenant's Idempotency-Key, if any."""
    row = conn.execute(
        sa.select(idempotency_keys.c.content_sha256, idempotency_keys.c.job_id).where(
            idempotency_keys.c.tenant_id == tenant_id, idempotency_keys.c.key == key
        )
    ).first()
    return (row.content_sha256, row.job_id) if row else None


def remember_idempotency_key(
    conn: Connection, tenant_id: str, key: str, content_sha256: str, job_id: str
) -> tuple[str, str]:
    """Record the key for this content and job; what is recorded (the first writer wins)."""
    conn.execute(
        insert(idempotency_keys)
        .values(tenant_id=tenant_id, key=key, content_sha256=content_sha256, job_id=job_id)
        .on_conflict_do_nothing()
    )
    found = idempotent_job(conn, tenant_id, key)
    assert found is not None
    return found


# --- Upload sessions ------------------------------------------------------------------------


def create_session(conn: Connection, **values: Any) -> None:
    conn.execute(sa.insert(upload_sessions).values(**values))


def get_session(
    conn: Connection, tenant_id: str, session_id: str, *, for_update: bool = False
) -> dict[str, Any] | None:
    query = sa.select(upload_sessions).where(
        upload_sessions.c.session_id == session_id,
        upload_sessions.c.tenant_id == tenant_id,
        upload_sessions.c.expires_at > sa.func.now(),
    )
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return dict(row) if row else None


def record_part(conn: Connection, session_id: str, number: int, etag: str, size: int) -> None:
    part = {str(number): {"etag": etag, "size": size}}
    conn.execute(
        sa.update(upload_sessions)
        .where(upload_sessions.c.session_id == session_id)
        .values(parts=upload_sessions.c.parts.op("||")(sa.cast(part, upload_sessions.c.parts.type)))
    )


def expired_sessions(conn: Connection, limit: int = 100) -> list[dict[str, Any]]:
    """Sessions past their expiry that never completed: their parts are to be thrown away."""
    query = (
        sa.select(upload_sessions)
        .where(upload_sessions.c.expires_at <= sa.func.now(), upload_sessions.c.job_id.is_(None))
        .order_by(upload_sessions.c.expires_at)
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def delete_session(conn: Connection, session_id: str) -> None:
    conn.execute(sa.delete(upload_sessions).where(upload_sessions.c.session_id == session_id))


def finish_session(conn: Connection, session_id: str, job_id: str) -> None:
    conn.execute(
        sa.update(upload_sessions)
        .where(upload_sessions.c.session_id == session_id)
        .values(job_id=job_id)
    )


# --- Run requests ---------------------------------------------------------------------------


def request_run(conn: Connection, tenant_id: str, job_id: str, job_name: str, source: str) -> int:
    """Ask the sensors for a run of `job_name` on the job; the request's id."""
    return conn.scalar(
        sa.insert(run_requests)
        .values(tenant_id=tenant_id, job_id=job_id, job_name=job_name, source=source)
        .returning(run_requests.c.request_id)
    )


def woken_by(conn: Connection, job_id: str) -> list[str]:
    """The jobs whose revalidation the completion of `job_id` asked for (see consolidation)."""
    query = (
        sa.select(run_requests.c.job_id)
        .where(run_requests.c.source == f"references:{job_id}")
        .order_by(run_requests.c.request_id)
    )
    return list(dict.fromkeys(conn.scalars(query)))


def run_requests_after(conn: Connection, after: int, limit: int) -> list[dict[str, Any]]:
    """Requests after the cursor, with the dataset of each request's job."""
    query = (
        sa.select(run_requests, import_jobs.c.dataset)
        .join(import_jobs, import_jobs.c.job_id == run_requests.c.job_id)
        .where(run_requests.c.request_id > after)
        .order_by(run_requests.c.request_id)
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


# --- Webhook deliveries ---------------------------------------------------------------------

_CLAIM_DUE = sa.text(
    """
    UPDATE webhook_deliveries d
    SET next_attempt_at = now() + make_interval(secs => :lease)
    FROM tenant_settings t
    WHERE d.delivery_id IN (
        SELECT delivery_id FROM webhook_deliveries
        WHERE state = 'pending' AND next_attempt_at <= now()
        ORDER BY next_attempt_at, delivery_id
        LIMIT :limit
        FOR UPDATE SKIP LOCKED)
      AND t.tenant_id = d.tenant_id
    RETURNING d.delivery_id, d.event_id, d.tenant_id, d.job_id, d.event, d.url, d.payload,
              d.attempts, d.created_at, t.webhook_secret AS secret,
              (SELECT j.dataset FROM import_jobs j WHERE j.job_id = d.job_id) AS dataset
    """
)


def claim_due_deliveries(conn: Connection, limit: int, lease_seconds: int) -> list[dict[str, Any]]:
    """Deliveries due now, leased to this process for `lease_seconds` (other processes skip
    them; a process that dies leaves them to be taken again when the lease ends)."""
    rows = conn.execute(_CLAIM_DUE, {"limit": limit, "lease": lease_seconds}).mappings()
    return [dict(r) for r in rows]


def record_attempt(
    conn: Connection,
    delivery_id: int,
    *,
    delivered: bool,
    status: int | None,
    error: str | None,
    retry_in: float | None,
) -> None:
    """The outcome of one attempt: delivered, to be retried in `retry_in` s, or given up."""
    values: dict[str, Any] = {
        "attempts": webhook_deliveries.c.attempts + 1,
        "last_status": status,
        "last_error": error,
    }
    if delivered:
        values.update(state="delivered", delivered_at=sa.func.now())
    elif retry_in is None:
        values.update(state="failed")
    else:
        delay = sa.func.make_interval(0, 0, 0, 0, 0, 0, retry_in)
        values.update(next_attempt_at=sa.func.now() + delay)
    conn.execute(
        sa.update(webhook_deliveries)
        .where(webhook_deliveries.c.delivery_id == delivery_id)
        .values(**values)
    )


def list_deliveries(
    conn: Connection, tenant_id: str, *, job_id: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The tenant's delivery log, newest first."""
    query = (
        sa.select(webhook_deliveries)
        .where(webhook_deliveries.c.tenant_id == tenant_id)
        .order_by(webhook_deliveries.c.delivery_id.desc())
        .limit(limit)
    )
    if job_id is not None:
        query = query.where(webhook_deliveries.c.job_id == job_id)
    return [dict(r) for r in conn.execute(query).mappings()]


def job_of_tenant(conn: Connection, tenant_id: str, job_id: str) -> ImportJob | None:
    """The job if it belongs to the tenant; None otherwise (the caller answers 404 alike)."""
    row = (
        conn.execute(
            sa.select(import_jobs).where(
                import_jobs.c.job_id == job_id, import_jobs.c.tenant_id == tenant_id
            )
        )
        .mappings()
        .first()
    )
    return ImportJob.from_row(row) if row else None


def job_for_source(conn: Connection, tenant_id: str, key: str, etag: str) -> str | None:
    return conn.scalar(
        sa.select(import_jobs.c.job_id).where(
            import_jobs.c.tenant_id == tenant_id,
            import_jobs.c.source_key == key,
            import_jobs.c.source_etag == etag,
        )
    )


def now(conn: Connection) -> datetime:
    return conn.scalar(sa.select(sa.func.now()))


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A transaction that sees one state of the database throughout (REPEATABLE READ): what a
    page shows of a job, its rows and whether a run is on its way agree with one another."""
    with (
        engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn,
        conn.begin(),
    ):
        yield conn


def run_requested_since(conn: Connection, job_id: str, since: datetime) -> bool:
    """Whether a run is on its way: asked of the sensors after `since` (the job's last change),
    or in the warm queue not taken yet, to run again, or taken since. A claim the run has
    already settled the job under (its row not yet let go) is not one."""
    requested = sa.exists().where(
        run_requests.c.job_id == job_id, run_requests.c.requested_at > since
    )
    queued = sa.exists().where(
        warm_queue.c.job_id == job_id,
        sa.or_(
            warm_queue.c.claimed_by.is_(None),
            warm_queue.c.again,
            warm_queue.c.claimed_at > since,
        ),
    )
    return bool(conn.scalar(sa.select(sa.or_(requested, queued))))
