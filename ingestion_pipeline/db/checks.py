"""The SQL behind the asset checks: each query is scoped to one job or one job's tenant."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ingestion_pipeline.db.copy_out import copy_out_batches

# How many offending rows a failed check carries in its metadata.
SAMPLE = 20


@dataclass(frozen=True)
class Finding:
    """What a check found: how many offenders, the first few, and the figures it compared."""

    count: int
    sample: list[Any] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.count == 0


def staging_row_count(conn: Connection, job_id: str) -> Finding:
    """Staging must hold exactly rows 1..total_rows: counts rows missing or out of range."""
    total, staged, outside = conn.execute(
        sa.text(
            "SELECT coalesce(j.total_rows, 0), count(s.row_number), "
            "count(s.row_number) FILTER (WHERE s.row_number NOT BETWEEN 1 AND "
            "coalesce(j.total_rows, 0)) "
            "FROM import_jobs j LEFT JOIN staging_rows s ON s.job_id = j.job_id "
            "WHERE j.job_id = :job_id GROUP BY j.total_rows"
        ),
        {"job_id": job_id},
    ).one()
    missing = total - (staged - outside)
    sample: list[int] = []
    if missing:
        sample = list(
            conn.scalars(
                sa.text(
                    "SELECT n FROM generate_series(1, :total) AS n WHERE NOT EXISTS "
                    "(SELECT 1 FROM staging_rows s WHERE s.job_id = :job_id AND s.row_number = n) "
                    "ORDER BY n LIMIT :limit"
                ),
                {"job_id": job_id, "total": total, "limit": SAMPLE},
            )
        )
    return Finding(
        missing + outside,
        sample,
        {
            "total_rows": total,
            "staged_rows": staged,
            "missing_rows": missing,
            "extra_rows": outside,
        },  # fmt: skip,
    )


def _offenders(conn: Connection, column: str, where: str, params: dict[str, Any]) -> Finding:
    """How many rows `SELECT column <where>` yields, and the first SAMPLE of them."""
    count = conn.scalar(sa.text(f"SELECT count(*) FROM (SELECT {column} {where}) AS o"), params)
    if not count:
        return Finding(0)
    sample = conn.scalars(
        sa.text(f"SELECT {column} {where} ORDER BY 1 LIMIT :limit"), {**params, "limit": SAMPLE}
    )
    return Finding(count, list(sample))


# A set difference (hashed or sorted) rather than NOT EXISTS: its cost cannot turn into a nested
# loop when the planner's statistics lag behind a bulk write.
UNLINKED_ROWS = (
    "FROM (SELECT s.row_number FROM staging_rows s "
    "WHERE s.job_id = :job_id AND s.status = 'ISSUE' "
    "EXCEPT SELECT ii.row_number FROM issue_items ii JOIN issues i USING (issue_id) "
    "WHERE ii.job_id = :job_id AND i.job_id = :job_id AND NOT i.resolved) AS unlinked"
)


def unlinked_issue_rows(conn: Connection, job_id: str) -> Finding:
    """Rows in ISSUE state that no unresolved issue of their job points at."""
    # The links and their issues are joined by hashing too: with statistics from before the
    # job's issues were written, the planner looped over all of them once per link (seen by
    # `make explain`: 1,533 links x 592 issues for a 20k-row file; quadratic as files grow).
    conn.execute(sa.text("SET LOCAL enable_nestloop = off"))
    return _offenders(conn, "row_number", UNLINKED_ROWS, {"job_id": job_id})


def issue_count_mismatch(conn: Connection, job_id: str) -> Finding:
    """import_jobs.issue_count against the job's unresolved issues."""
    recorded, unresolved = conn.execute(
        sa.text(
            "SELECT j.issue_count, (SELECT count(*) FROM issues i "
            "WHERE i.job_id = :job_id AND NOT i.resolved) "
            "FROM import_jobs j WHERE j.job_id = :job_id"
        ),
        {"job_id": job_id},
    ).one()
    return Finding(
        abs(recorded - unresolved), [], {"issue_count": recorded, "unresolved_issues": unresolved}
    )


def duplicate_contacts(conn: Connection, tenant_id: str, job_id: str) -> Finding:
    """Normalized emails of the job's contacts that another contact of its tenant holds too.

    Scoped to the job's contacts, looked up by index: grouping all of the tenant's contacts
    cost a 20-row file 0.2-0.5 s in a tenant of a million. Every load is checked, so the
    tenant is covered job by job.
    """
    where = (
        "FROM contacts mine WHERE mine.job_id = :job_id AND mine.tenant_id = :tenant_id "
        "AND EXISTS (SELECT 1 FROM contacts o WHERE o.tenant_id = :tenant_id "
        "AND o.email_normalized = mine.email_normalized AND o.contact_id <> mine.contact_id)"
    )
    return _offenders(
        conn, "mine.email_normalized", where, {"tenant_id": tenant_id, "job_id": job_id}
    )


def job_contact_emails(engine: Engine, job_id: str, chunk_size: int) -> Iterator[pd.DataFrame]:
    """The `source_row` and `email` (normalized) of the job's contacts in row order, as frames
    of about `chunk_size` rows (streamed by COPY into Arrow)."""
    columns = {"source_row": pa.int64(), "email": pa.string()}
    query = "SELECT source_row, email_normalized FROM contacts WHERE job_id = %s ORDER BY 1"
    for batch in copy_out_batches(engine, query, (job_id,), columns, chunk_size * 40):
        yield batch.to_pandas()


# A COMPLETED job loaded its READY rows (SUCCESS: rows of jobs loaded before that was a job-
# level fact); any other job's READY and ISSUE rows wait. One pass over the job's rows, named
# by its id: correlated to `j.job_id`, the planner estimated a table-wide average of rows per
# job and scanned all of staging (1M rows, twice, 0.3 s) for a 20-row job staged after a big one.
_PENDING_AND_LOADED = (
    "CROSS JOIN LATERAL (SELECT "
    "count(*) FILTER (WHERE s.status = 'ISSUE' "
    "   OR (s.status = 'READY' AND j.status <> 'COMPLETED')) AS rows_pending, "
    "count(*) FILTER (WHERE s.status = 'SUCCESS' "
    "   OR (s.status = 'READY' AND j.status = 'COMPLETED')) AS rows_loaded "
    "FROM staging_rows s WHERE s.job_id = :job_id) AS staged"
)


def status_figures(conn: Connection, job_id: str) -> dict[str, Any]:
    """The counts a job's status must agree with, in one statement."""
    row = conn.execute(
        sa.text(
            "SELECT j.status, coalesce(j.total_rows, 0) AS total_rows, j.processed_rows, "
            "j.issue_count, j.contacts_created, staged.rows_pending, staged.rows_loaded, "
            "(SELECT count(*) FROM contacts c WHERE c.job_id = :job_id) AS job_contacts "
            f"FROM import_jobs j {_PENDING_AND_LOADED} WHERE j.job_id = :job_id"
        ),
        {"job_id": job_id},
    ).one()
    return dict(row._mapping)


def status_disagreements(figures: dict[str, Any]) -> list[str]:
    """What a job's counts contradict of its status; empty when they agree."""
    status = figures["status"]
    found = []
    if status == "COMPLETED":
        if figures["issue_count"]:
            found.append(f"COMPLETED with {figures['issue_count']} open issue(s)")
        if figures["processed_rows"] != figures["total_rows"]:
            found.append(
                f"COMPLETED with processed_rows {figures['processed_rows']} "
                f"of total_rows {figures['total_rows']}"
            )
        if figures["rows_pending"]:
            found.append(f"COMPLETED with {figures['rows_pending']} row(s) still in ISSUE")
        if not figures["contacts_created"] == figures["rows_loaded"] == figures["job_contacts"]:
            found.append(
                f"contacts_created {figures['contacts_created']}, rows loaded "
                f"{figures['rows_loaded']} and contacts of the job {figures['job_contacts']} "
                "differ"
            )
    elif status == "NEEDS_REVIEW" and not figures["issue_count"]:
        found.append("NEEDS_REVIEW with no open issue")
    elif status in ("PENDING", "PROCESSING", "FAILED") and figures["job_contacts"]:
        found.append(f"{status} but {figures['job_contacts']} contact(s) already loaded")
    return found


def dataset_status_figures(conn: Connection, job_id: str, table: str) -> dict[str, Any]:
    """The counts a dataset job's status must agree with (its rows in `table`), in one
    statement."""
    row = conn.execute(
        sa.text(
            "SELECT j.status, coalesce(j.total_rows, 0) AS total_rows, j.processed_rows, "
            "j.issue_count, j.rows_inserted, j.rows_updated, j.rows_unchanged, "
            "staged.rows_pending, staged.rows_loaded, "
            f"(SELECT count(*) FROM {table} t WHERE t.job_id = :job_id) AS rows_of_job "
            f"FROM import_jobs j {_PENDING_AND_LOADED} WHERE j.job_id = :job_id"
        ),
        {"job_id": job_id},
    ).one()
    return dict(row._mapping)


def dataset_status_disagreements(figures: dict[str, Any]) -> list[str]:
    """What a dataset job's counts contradict of its status; empty when they agree."""
    status = figures["status"]
    found = []
    written = figures["rows_inserted"] + figures["rows_updated"]
    if status == "COMPLETED":
        if figures["issue_count"]:
            found.append(f"COMPLETED with {figures['issue_count']} open issue(s)")
        if figures["rows_pending"]:
            found.append(f"COMPLETED with {figures['rows_pending']} row(s) still in ISSUE")
        if written + figures["rows_unchanged"] != figures["rows_loaded"]:
            found.append(
                f"inserted {figures['rows_inserted']} + updated {figures['rows_updated']} + "
                f"unchanged {figures['rows_unchanged']} differ from rows loaded "
                f"{figures['rows_loaded']}"
            )
        # A later job may have updated some of them since: never more, though.
        if figures["rows_of_job"] > written:
            found.append(f"{figures['rows_of_job']} rows of the job, {written} written")
    elif figures["rows_of_job"]:
        found.append(f"{status} but {figures['rows_of_job']} row(s) already loaded")
    return found
