"""Move a clean job's READY rows into contacts, exactly once, in one transaction."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ingestion_pipeline.constants import JobStatus
from ingestion_pipeline.db.jobs import get_job, update_job
from ingestion_pipeline.db.tables import import_jobs
from ingestion_pipeline.db.validation import ANALYZE_AFTER_ROWS

_INSERT_CONTACTS = sa.text(
    """
    INSERT INTO contacts (tenant_id, email, email_normalized, first_name, last_name, company,
                          extra, job_id, source_row)
    SELECT :tenant_id, email, email_normalized, first_name, last_name, company,
           extra, job_id, row_number
    FROM staging_rows
    WHERE job_id = :job_id AND status = 'READY'
    ON CONFLICT (tenant_id, email_normalized) DO NOTHING
    """
)
_MARK_SUCCESS = sa.text(
    "UPDATE staging_rows SET status = 'SUCCESS' WHERE job_id = :job_id AND status = 'READY'"
)


class ConsolidationConflictError(RuntimeError):
    """Another job of the tenant created some of these contacts after validation ran."""


@dataclass(frozen=True)
class ConsolidationResult:
    """What consolidation did: the job's status afterwards and the contacts it created."""

    status: JobStatus
    contacts_created: int
    already_completed: bool = False


def consolidate_job(conn: Connection, job_id: str) -> ConsolidationResult:
    """Insert READY rows as contacts and complete the job, or leave it for review.

    Runs inside the caller's transaction. Consolidations of one tenant are serialized by an
    advisory lock; if any READY row meets an existing contact anyway, everything is rolled
    back by the caller on ConsolidationConflictError and the job is validated again.
    """
    job = get_job(conn, job_id, for_update=True)
    if job is None:
        raise LookupError(f"unknown import job {job_id!r}")
    if job["status"] == JobStatus.COMPLETED.value:
        return ConsolidationResult(JobStatus.COMPLETED, job["contacts_created"], True)
    if job["issue_count"]:
        return ConsolidationResult(JobStatus.NEEDS_REVIEW, 0)
    conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"contacts:{job['tenant_id']}"},
    )
    created = conn.execute(_INSERT_CONTACTS, {"job_id": job_id, "tenant_id": job["tenant_id"]})
    ready = conn.execute(_MARK_SUCCESS, {"job_id": job_id})
    if created.rowcount != ready.rowcount:
        raise ConsolidationConflictError(
            f"{ready.rowcount - created.rowcount} row(s) of {job_id} met contacts created "
            "by another job since validation"
        )
    if created.rowcount >= ANALYZE_AFTER_ROWS:
        # Fresh statistics for the checks that read what this load wrote (see validation).
        conn.execute(sa.text("ANALYZE contacts, staging_rows"))
    update_job(
        conn,
        job_id,
        status=JobStatus.COMPLETED,
        contacts_created=created.rowcount,
        processed_rows=sa.func.coalesce(import_jobs.c.total_rows, import_jobs.c.processed_rows),
        finished_at=sa.func.now(),
        error=None,
    )
    return ConsolidationResult(JobStatus.COMPLETED, created.rowcount)
