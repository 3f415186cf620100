"""The import_jobs registry: create, read and move jobs through their lifecycle."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from ingestion_pipeline.constants import JobStatus
from ingestion_pipeline.datasets import Dataset, dataset_named
from ingestion_pipeline.db.tables import import_jobs, issues, staging_rows, warm_queue


@dataclass(frozen=True)
class NewJob:
    """What is known about an import job before it runs."""

    job_id: str
    tenant_id: str
    source_key: str
    source_etag: str
    file_name: str
    dataset: str = "contacts"
    # The stored object's size in bytes: what the lane of a job not read yet is decided by.
    source_size: int | None = None


@dataclass(frozen=True)
class ImportJob:
    """One import job as stored: an uploaded object version and where it stands."""

    job_id: str
    tenant_id: str
    source_key: str
    source_etag: str
    file_name: str
    dataset: str
    status: JobStatus
    total_rows: int | None
    processed_rows: int
    issue_count: int
    contacts_created: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    encoding: str | None
    delimiter: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    mapping: dict[str, Any] | None
    layout: dict[str, Any] | None
    source_size: int | None = None
    # The import link the file came through, and the user label the link carried.
    link_id: str | None = None
    uploaded_by: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ImportJob:
        values = {f.name: row[f.name] for f in fields(cls) if f.name in row}
        return cls(**{**values, "status": JobStatus(values["status"])})

    @property
    def declaration(self) -> Dataset:
        """The declared dataset the job imports."""
        return dataset_named(self.dataset)


def register_jobs(conn: Connection, jobs: Iterable[NewJob]) -> int:
    """Insert jobs that do not exist yet, in one statement; returns how many were new."""
    rows = [job.__dict__ for job in jobs]
    if not rows:
        return 0
    stmt = insert(import_jobs).values(rows).on_conflict_do_nothing()
    return conn.execute(stmt).rowcount


def unstarted_jobs(conn: Connection, job_ids: list[str]) -> set[str]:
    """The PENDING jobs among `job_ids` that the warm lane does not hold."""
    if not job_ids:
        return set()
    query = sa.select(import_jobs.c.job_id).where(
        import_jobs.c.job_id.in_(job_ids),
        import_jobs.c.status == JobStatus.PENDING.value,
        ~sa.exists().where(warm_queue.c.job_id == import_jobs.c.job_id),
    )
    return set(conn.scalars(query))


def get_job(conn: Connection, job_id: str, *, for_update: bool = False) -> ImportJob | None:
    """The job, or None."""
    query = sa.select(import_jobs).where(import_jobs.c.job_id == job_id)
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return ImportJob.from_row(row) if row else None


def datasets_of(conn: Connection, job_ids: list[str]) -> dict[str, str]:
    """The dataset of each of `job_ids` that exists."""
    query = sa.select(import_jobs.c.job_id, import_jobs.c.dataset).where(
        import_jobs.c.job_id.in_(job_ids)
    )
    return {job_id: dataset for job_id, dataset in conn.execute(query)}


def update_job(conn: Connection, job_id: str, **values: Any) -> None:
    """Set columns of one job (status may be a JobStatus) and touch updated_at."""
    if isinstance(values.get("status"), JobStatus):
        values["status"] = values["status"].value
    conn.execute(
        sa.update(import_jobs)
        .where(import_jobs.c.job_id == job_id)
        .values(**values, updated_at=sa.func.now())
    )


def staged_row_count(conn: Connection, job_id: str) -> int:
    return conn.scalar(
        sa.select(sa.func.count()).select_from(staging_rows).where(staging_rows.c.job_id == job_id)
    )


_LIST_ISSUES = sa.text(
    """
    SELECT i.issue_id, i.kind, i.field, i.message, i.resolved,
           coalesce(array_agg(ii.row_number ORDER BY ii.row_number)
                    FILTER (WHERE ii.row_number IS NOT NULL), '{}') AS rows
    FROM issues i
    LEFT JOIN issue_items ii ON ii.issue_id = i.issue_id
    WHERE i.job_id = :job_id AND (:include_resolved OR NOT i.resolved)
    GROUP BY i.issue_id
    ORDER BY min(ii.row_number), i.kind, i.field, i.issue_id
    LIMIT :limit
    """
)


def iter_issues(
    conn: Connection, job_id: str, *, include_resolved: bool = False, limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """Issues of a job with the record numbers each concerns, in a stable order, streamed."""
    params = {"job_id": job_id, "include_resolved": include_resolved, "limit": limit}
    result = conn.execution_options(stream_results=True, yield_per=5000).execute(
        _LIST_ISSUES, params
    )
    for row in result.mappings():
        yield dict(row)


def list_issues(
    conn: Connection, job_id: str, *, include_resolved: bool = False, limit: int | None = None
) -> list[dict[str, Any]]:
    """Issues of a job, as a list (see iter_issues)."""
    return list(iter_issues(conn, job_id, include_resolved=include_resolved, limit=limit))


def public_issue(issue: Mapping[str, Any]) -> dict[str, Any]:
    """An issue as the CLI prints it."""
    return {k: issue[k] for k in ("kind", "field", "message", "rows")}


def issue_counts_by_kind(conn: Connection, job_id: str) -> dict[str, int]:
    """Unresolved issues of a job, counted by kind."""
    return issue_counts_of_jobs(conn, [job_id])[job_id]


def issue_counts_of_jobs(conn: Connection, job_ids: list[str]) -> dict[str, dict[str, int]]:
    """Unresolved issues of each of `job_ids`, counted by kind, in one statement."""
    query = (
        sa.select(issues.c.job_id, issues.c.kind, sa.func.count())
        .where(issues.c.job_id.in_(job_ids), sa.not_(issues.c.resolved))
        .group_by(issues.c.job_id, issues.c.kind)
    )
    counts: dict[str, dict[str, int]] = {job_id: {} for job_id in job_ids}
    for job_id, kind, count in conn.execute(query):
        counts[job_id][kind] = count
    return counts


def job_summary(job: ImportJob) -> dict[str, Any]:
    """The public summary of a job (its issues are streamed separately: see iter_issues)."""
    return {
        "job_id": job.job_id,
        "tenant": job.tenant_id,
        "dataset": job.dataset,
        "status": job.status.value,
        "file": job.source_key,
        "total_rows": job.total_rows or 0,
        "processed_rows": job.processed_rows,
        "issue_count": job.issue_count,
        "contacts_created": job.contacts_created,
        "rows_inserted": job.rows_inserted,
        "rows_updated": job.rows_updated,
        "rows_unchanged": job.rows_unchanged,
        "encoding": job.encoding,
        "delimiter": job.delimiter,
        "error": job.error,
        "mapping": job.mapping,
        "layout": job.layout,
        "waiting_for": (
            sorted({r.dataset for r in job.declaration.references})
            if job.status is JobStatus.WAITING_FOR_REFERENCES
            else []
        ),
    }


def list_jobs(
    conn: Connection,
    *,
    tenant_id: str | None = None,
    status: str | None = None,
    link_id: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[ImportJob]:
    """Jobs, newest first, optionally of one tenant, one status and one import link,
    optionally one page."""
    query = (
        sa.select(import_jobs)
        .order_by(import_jobs.c.created_at.desc(), import_jobs.c.job_id)
        .limit(limit)
        .offset(offset)
    )
    if tenant_id is not None:
        query = query.where(import_jobs.c.tenant_id == tenant_id)
    if status is not None:
        query = query.where(import_jobs.c.status == status)
    if link_id is not None:
        query = query.where(import_jobs.c.link_id == link_id)
    return [ImportJob.from_row(row) for row in conn.execute(query).mappings()]


@contextmanager
def hold_job_lock(conn: Connection, job_id: str) -> Iterator[None]:
    """The job's session-level advisory lock, held on `conn` (an autocommit connection)."""
    key = {"key": f"job:{job_id}"}
    conn.execute(sa.text("SELECT pg_advisory_lock(hashtextextended(:key, 0))"), key)
    try:
        yield
    finally:
        conn.execute(sa.text("SELECT pg_advisory_unlock(hashtextextended(:key, 0))"), key)


def set_processing(conn: Connection, job_id: str) -> None:
    """PROCESSING (from any state but COMPLETED), last error cleared, started_at kept."""
    conn.execute(
        sa.text(
            "UPDATE import_jobs SET status = 'PROCESSING', error = NULL, updated_at = now(), "
            "started_at = coalesce(started_at, now()) "
            "WHERE job_id = :job_id AND status <> 'COMPLETED'"
        ),
        {"job_id": job_id},
    )


def set_failed(conn: Connection, job_id: str, error: str, *, only_running: bool = False) -> bool:
    """FAILED with the error, never over COMPLETED (nor, `only_running`, over a job under
    review); True if the job changed."""
    states = (
        ("PENDING", "PROCESSING")
        if only_running
        else ("PENDING", "PROCESSING", "NEEDS_REVIEW", "FAILED")
    )
    result = conn.execute(
        sa.text(
            "UPDATE import_jobs SET status = 'FAILED', error = :error, updated_at = now(), "
            "finished_at = now() WHERE job_id = :job_id AND status = ANY(:states)"
        ),
        {"job_id": job_id, "error": error[:4000], "states": list(states)},
    )
    return result.rowcount == 1


def unstage_and_fail(conn: Connection, job_id: str, error: str) -> None:
    """Delete what the job staged and its issues, then fail it with the error (not when it is
    COMPLETED); the job row is locked first."""
    params = {"job_id": job_id}
    status = conn.scalar(
        sa.text("SELECT status FROM import_jobs WHERE job_id = :job_id FOR UPDATE"), params
    )
    if status is None or status == JobStatus.COMPLETED.value:
        return
    # issue_items and review_decisions go with their rows (ON DELETE CASCADE).
    conn.execute(sa.text("DELETE FROM issues WHERE job_id = :job_id"), params)
    conn.execute(sa.text("DELETE FROM staging_rows WHERE job_id = :job_id"), params)
    conn.execute(
        sa.text(
            "UPDATE import_jobs SET status = 'FAILED', error = :error, total_rows = NULL, "
            "processed_rows = 0, issue_count = 0, updated_at = now(), finished_at = now() "
            "WHERE job_id = :job_id"
        ),
        {**params, "error": error[:4000]},
    )


# The message of a job whose reading killed the process twice.
CRASHED = "the reader crashed on this file (the process importing it died twice): {reason}"


def after_crash(
    conn: Connection, job_ids: list[str], reason: str, in_flight: Iterable[str] = ()
) -> dict[str, JobStatus]:
    """Jobs a dead process had in hand: one it never started stays as it is, to be run again;
    one in flight (PROCESSING, or named in `in_flight`: the one job of a run) counts a crash,
    and on its second becomes FAILED with CRASHED. Returns the new status of each job that was
    still unfinished (the others are left be)."""
    flying = "(status = 'PROCESSING' OR job_id = ANY(:flight))"
    last = f"{flying} AND crash_count >= 1"
    found = conn.execute(
        sa.text(
            f"UPDATE import_jobs SET crash_count = crash_count + ({flying})::int, "
            f"status = CASE WHEN {last} THEN 'FAILED' ELSE status END, "
            f"error = CASE WHEN {last} THEN :error ELSE error END, "
            f"finished_at = CASE WHEN {last} THEN now() ELSE finished_at END, "
            "updated_at = now() "
            "WHERE job_id = ANY(:ids) AND status IN ('PENDING', 'PROCESSING') "
            "RETURNING job_id, status"
        ),
        {"ids": job_ids, "flight": list(in_flight), "error": CRASHED.format(reason=reason)[:4000]},
    )
    return {job_id: JobStatus(status) for job_id, status in found}


def mark_link(
    conn: Connection, job_id: str, link_id: str, user: str | None, *, only_unclaimed: bool
) -> None:
    """Record the import link a job's file came through (and the link's user label); with
    `only_unclaimed`, only on a job that no link has yet (the same bytes sent again)."""
    query = sa.update(import_jobs).where(import_jobs.c.job_id == job_id)
    if only_unclaimed:
        query = query.where(import_jobs.c.link_id.is_(None))
    conn.execute(query.values(link_id=link_id, uploaded_by=user))
