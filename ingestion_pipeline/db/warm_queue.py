"""The warm lane's queue: small jobs claimed by worker processes with SKIP LOCKED under a
lease, tenants in turn, woken by NOTIFY. All of a worker's state is in this table."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

# The channel workers LISTEN on; the payload is the tenant (for the logs only).
CHANNEL = "warm_jobs"


@dataclass(frozen=True)
class Claim:
    """A job a worker holds: its tenant, why it was queued, and how often it was claimed
    (more than once: the process that held it before died)."""

    job_id: str
    tenant_id: str
    reason: str
    claims: int
    previous_run: str | None


def enqueue(conn: Connection, jobs: Iterable[tuple[str, str]], reason: str) -> int:
    """Queue (job id, tenant) pairs for the workers and wake them (NOTIFY goes out at commit);
    a job queued already keeps its place, and one a worker holds runs again after (`again`).
    Returns how many were added."""
    pairs = list(dict(jobs).items())
    if not pairs:
        return 0
    added = conn.execute(
        sa.text(
            "INSERT INTO warm_queue (job_id, tenant_id, reason) "
            "SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:tenants AS text[])), "
            "CAST(:reason AS text) ON CONFLICT (job_id) DO UPDATE SET again = true, "
            "reason = EXCLUDED.reason WHERE warm_queue.claimed_by IS NOT NULL"
        ),
        {"ids": [j for j, _ in pairs], "tenants": [t for _, t in pairs], "reason": reason},
    ).rowcount
    conn.execute(
        sa.text("SELECT pg_notify(:channel, :payload)"),
        {"channel": CHANNEL, "payload": pairs[0][1]},
    )
    return added


# Up to :per_tenant jobs of each tenant, their turns interleaved (every tenant's first job,
# then every tenant's second, ...), locked with SKIP LOCKED so that workers never wait on or
# take each other's claims; a claim whose lease ran out is free again.
_CLAIM = sa.text(
    """
    WITH free AS (
        SELECT job_id, enqueued_at,
               row_number() OVER (PARTITION BY tenant_id ORDER BY enqueued_at, job_id) AS turn
        FROM warm_queue
        WHERE lease_until IS NULL OR lease_until < now()
    ), picked AS (
        SELECT q.job_id FROM warm_queue q JOIN free f ON f.job_id = q.job_id
        WHERE f.turn <= :per_tenant AND (q.lease_until IS NULL OR q.lease_until < now())
        ORDER BY f.turn, f.enqueued_at, q.job_id
        LIMIT :limit
        FOR UPDATE OF q SKIP LOCKED
    )
    UPDATE warm_queue w
    SET claimed_by = :worker, claimed_at = now(), claims = w.claims + 1,
        lease_until = now() + make_interval(secs => :lease)
    FROM picked WHERE w.job_id = picked.job_id
    RETURNING w.job_id, w.tenant_id, w.reason, w.claims, w.run_id
    """
)


def claim(
    conn: Connection, worker: str, *, limit: int, per_tenant: int, lease_seconds: float
) -> list[Claim]:
    """Claim up to `limit` free jobs for `worker`, tenants in turn."""
    found = conn.execute(
        _CLAIM,
        {
            "worker": worker,
            "limit": limit,
            "per_tenant": per_tenant,
            "lease": lease_seconds,
        },
    )
    return [Claim(*row) for row in found]


def set_run(conn: Connection, job_ids: list[str], worker: str, run_id: str) -> list[str]:
    """Record the Dagster run that has the worker's jobs in hand; the jobs it still holds."""
    found = conn.execute(
        sa.text(
            "UPDATE warm_queue SET run_id = :run_id "
            "WHERE job_id = ANY(:ids) AND claimed_by = :w AND lease_until > now() "
            "RETURNING job_id"
        ),
        {"run_id": run_id, "ids": job_ids, "w": worker},
    )
    return [job_id for (job_id,) in found]


def extend_lease(conn: Connection, worker: str, lease_seconds: float) -> int:
    """Keep the worker's claims while it works on them (its heartbeat)."""
    return conn.execute(
        sa.text(
            "UPDATE warm_queue SET lease_until = now() + make_interval(secs => :lease) "
            "WHERE claimed_by = :w"
        ),
        {"w": worker, "lease": lease_seconds},
    ).rowcount


def finish(conn: Connection, job_ids: list[str], worker: str) -> None:
    """Take the worker's finished jobs off the queue; one queued again meanwhile is put back
    for the next claim."""
    params = {"ids": job_ids, "w": worker}
    conn.execute(
        sa.text(
            "DELETE FROM warm_queue WHERE job_id = ANY(:ids) AND claimed_by = :w AND NOT again"
        ),
        params,
    )
    conn.execute(
        sa.text(
            "UPDATE warm_queue SET again = false, claimed_by = NULL, lease_until = NULL, "
            "claims = 0, run_id = NULL, enqueued_at = now() "
            "WHERE job_id = ANY(:ids) AND claimed_by = :w"
        ),
        params,
    )
    conn.execute(sa.text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


def release(conn: Connection, job_ids: list[str], worker: str) -> None:
    """Give claims back untouched (a worker stopping before it started them)."""
    conn.execute(
        sa.text(
            "UPDATE warm_queue SET claimed_by = NULL, lease_until = NULL, claims = claims - 1 "
            "WHERE job_id = ANY(:ids) AND claimed_by = :w"
        ),
        {"ids": job_ids, "w": worker},
    )


def queued(conn: Connection, job_ids: list[str]) -> set[str]:
    """The jobs among `job_ids` that the warm lane holds (the run queue must not launch them)."""
    found = conn.execute(
        sa.text("SELECT job_id FROM warm_queue WHERE job_id = ANY(:ids)"), {"ids": job_ids}
    )
    return {job_id for (job_id,) in found}


def take_unclaimed(conn: Connection, older_than_seconds: float) -> list[tuple[str, str]]:
    """Jobs no worker claimed for `older_than_seconds` (no worker running): taken off the
    queue, for the run queue to launch. (job id, tenant) pairs."""
    found = conn.execute(
        sa.text(
            "DELETE FROM warm_queue WHERE job_id IN (SELECT job_id FROM warm_queue "
            "WHERE claimed_by IS NULL AND enqueued_at < now() - make_interval(secs => :age) "
            "FOR UPDATE SKIP LOCKED) RETURNING job_id, tenant_id"
        ),
        {"age": older_than_seconds},
    )
    return [(job_id, tenant) for job_id, tenant in found]


def depth(conn: Connection) -> tuple[dict[str, int], dict[str, int]]:
    """Queued jobs by state (waiting; held under a running lease; expired: a worker died), and
    the jobs each worker holds, in one statement."""
    found = conn.execute(
        sa.text(
            "SELECT CASE WHEN claimed_by IS NULL THEN 'waiting' WHEN lease_until >= now() "
            "THEN 'held' ELSE 'expired' END AS state, claimed_by, count(*) "
            "FROM warm_queue GROUP BY 1, 2"
        )
    )
    states = {"waiting": 0, "held": 0, "expired": 0}
    leases: dict[str, int] = {}
    for state, worker, count in found:
        states[state] += count
        if state == "held":
            leases[worker] = count
    return states, leases
