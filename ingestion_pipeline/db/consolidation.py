"""Move a clean job's READY rows into its dataset's table, exactly once, in one transaction,
by the dataset's merge policy; a completed parent wakes the jobs waiting for its keys."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from psycopg2.errors import UniqueViolation
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ingestion_pipeline.constants import JobStatus
from ingestion_pipeline.datasets import DATASETS, Dataset, MergePolicy, dependents
from ingestion_pipeline.db.import_jobs import get_job, update_job
from ingestion_pipeline.db.tables import import_jobs
from ingestion_pipeline.db.validation import ANALYZE_AFTER_ROWS, reference_lock, typed_value

# A plain INSERT in the unique index's order: validation found no existing email, and loads
# of a tenant are serialized, so a conflict is a rare late one (a unique violation, handled
# below). Measured on 927k rows against 1M contacts, PostgreSQL 15 with default settings:
# ON CONFLICT DO NOTHING in file order 25-28 s, sorted 19-25 s, plain and sorted 12-16 s (the
# index pages are visited in order instead of at random, and no speculative insertion).
INSERT_CONTACTS = sa.text(
    """
    INSERT INTO contacts (tenant_id, email, email_normalized, first_name, last_name, company,
                          extra, job_id, source_row)
    SELECT :tenant_id, email, email_normalized, first_name, last_name, company,
           extra, job_id, row_number
    FROM staging_rows
    WHERE job_id = :job_id AND status = 'READY'
    ORDER BY email_normalized
    """
)
# A COMPLETED job's READY rows are the rows it loaded: a job-level fact, so the load does not
# rewrite every staged row to say it again (rows of jobs loaded before this say SUCCESS).
_READY_ROWS = sa.text(
    "SELECT count(*) FROM staging_rows WHERE job_id = :job_id AND status = 'READY'"
)


def _merge_sql(dataset: Dataset) -> str:
    """INSERT of a job's READY rows into the dataset's table by its merge policy, answering
    (inserted, updated)."""
    columns = ", ".join(dataset.field_names)
    values = ", ".join(typed_value(dataset, f, "s", guarded=False) for f in dataset.fields)
    if dataset.merge is MergePolicy.UPSERT:
        assigned = ", ".join(
            f"{c} = EXCLUDED.{c}"
            for c in (*dataset.field_names, "content_hash", "job_id", "source_row")
            if c != dataset.key
        )
        conflict = (
            f"DO UPDATE SET {assigned}, updated_at = now() "
            "WHERE t.content_hash <> EXCLUDED.content_hash"
        )
    else:
        conflict = "DO NOTHING"
    return f"""
    WITH written AS (
        INSERT INTO {dataset.table} AS t (tenant_id, {columns}, content_hash, job_id, source_row)
        SELECT :tenant_id, {values},
               encode(sha256(convert_to(s.data::text, 'UTF8')), 'hex'), s.job_id, s.row_number
        FROM staging_rows s
        WHERE s.job_id = :job_id AND s.status = 'READY'
        ON CONFLICT (tenant_id, {dataset.key}) {conflict}
        RETURNING (xmax = 0) AS inserted
    )
    SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written
    """


# Waiting jobs of the tenant that reference the completed dataset are validated again.
_WAKE_WAITING = sa.text(
    """
    INSERT INTO run_requests (tenant_id, job_id, job_name, source)
    SELECT tenant_id, job_id, 'reprocess_job', :source
    FROM import_jobs
    WHERE tenant_id = :tenant_id AND status = 'WAITING_FOR_REFERENCES'
      AND dataset = ANY(:datasets)
    RETURNING job_id
    """
)


class ConsolidationConflictError(RuntimeError):
    """Another job of the tenant created some of these rows after validation ran."""


@dataclass(frozen=True)
class ConsolidationResult:
    """What consolidation did: the job's status afterwards and the rows it wrote."""

    status: JobStatus
    inserted: int
    already_completed: bool = False
    updated: int = 0
    unchanged: int = 0
    # Jobs waiting for this dataset's keys, asked to be validated again.
    woken: tuple[str, ...] = ()

    @property
    def contacts_created(self) -> int:
        """Contacts' name for the rows inserted."""
        return self.inserted


def consolidate_job(conn: Connection, job_id: str) -> ConsolidationResult:
    """Load READY rows into the job's dataset and complete the job, or leave it for review.

    Runs inside the caller's transaction. Loads of one tenant and dataset are serialized by an
    advisory lock; under merge policy insert, if any READY row meets an existing key anyway,
    everything is rolled back by the caller on ConsolidationConflictError and the job is
    validated again.
    """
    job = get_job(conn, job_id, for_update=True)
    if job is None:
        raise LookupError(f"unknown import job {job_id!r}")
    if job.status is JobStatus.COMPLETED:
        done = job.contacts_created if job.dataset == "contacts" else job.rows_inserted
        return ConsolidationResult(JobStatus.COMPLETED, done, True)
    if job.issue_count:
        return ConsolidationResult(job.status, 0)
    dataset = DATASETS[job.dataset]
    tenant_id = job.tenant_id
    waiting_children = dependents(dataset.name)
    if waiting_children:
        reference_lock(conn, tenant_id)
    conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"{dataset.table}:{tenant_id}"},
    )
    params = {"job_id": job_id, "tenant_id": tenant_id}
    if dataset.staged_in_columns:
        try:
            inserted = conn.execute(INSERT_CONTACTS, params).rowcount
        except IntegrityError as exc:
            if not isinstance(exc.orig, UniqueViolation):
                raise
            raise ConsolidationConflictError(
                f"rows of {job_id} met {dataset.name} created by another job since "
                f"validation: {str(exc.orig).strip().splitlines()[-1]}"
            ) from exc
        updated = 0
    else:
        inserted, updated = conn.execute(sa.text(_merge_sql(dataset)), params).one()
    # A plain INSERT of contacts wrote every READY row or raised; the other policies count.
    ready = inserted if dataset.staged_in_columns else conn.scalar(_READY_ROWS, params)
    if dataset.merge is MergePolicy.INSERT and inserted != ready:
        raise ConsolidationConflictError(
            f"{ready - inserted} row(s) of {job_id} met {dataset.name} rows created "
            "by another job since validation"
        )
    if inserted + updated >= ANALYZE_AFTER_ROWS:
        # Fresh statistics for the checks that read what this load wrote (see validation);
        # a load changes no staging row.
        conn.execute(sa.text(f"ANALYZE {dataset.table}"))
    unchanged = ready - inserted - updated
    update_job(
        conn,
        job_id,
        status=JobStatus.COMPLETED,
        contacts_created=inserted if dataset.staged_in_columns else 0,
        rows_inserted=inserted,
        rows_updated=updated,
        rows_unchanged=unchanged,
        processed_rows=sa.func.coalesce(import_jobs.c.total_rows, import_jobs.c.processed_rows),
        finished_at=sa.func.now(),
        error=None,
    )
    woken: tuple[str, ...] = ()
    if waiting_children:
        woken = tuple(
            conn.scalars(
                _WAKE_WAITING,
                {
                    "tenant_id": tenant_id,
                    "datasets": waiting_children,
                    "source": f"references:{job_id}",
                },
            )
        )
    return ConsolidationResult(JobStatus.COMPLETED, inserted, False, updated, unchanged, woken)
