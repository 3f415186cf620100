"""Set-based validation of a job's staging rows: issues, their links, row and job status.

Row rules were judged per chunk by pandera (staging_rows.problems); here they are joined with
the cross-row rules (in-file duplicates, existing contacts) into one problem set, which is then
reconciled with the issues table: new problems open issues, vanished ones resolve them, and a
problem that comes back reopens its issue. A fixed number of statements per job, none per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ingestion_pipeline.constants import MAX_NAME_LENGTH, IssueKind, JobStatus

_CURRENT_PROBLEMS = sa.text(
    """
    CREATE TEMP TABLE current_problems ON COMMIT DROP AS
    WITH live AS (
        SELECT row_number, email, email_normalized, problems
        FROM staging_rows
        WHERE job_id = :job_id AND status IN ('READY', 'ISSUE')
    ),
    dups AS (
        SELECT row_number, email_normalized,
               count(*) OVER (PARTITION BY email_normalized) AS copies
        FROM live
        WHERE email_normalized IS NOT NULL
    )
    SELECT split_part(p, ':', 1) AS kind,
           split_part(p, ':', 2) AS field,
           live.row_number::text AS issue_key,
           live.row_number,
           CASE split_part(p, ':', 1)
               WHEN :invalid_email THEN '"' || live.email || '" is not a valid email address'
               WHEN :malformed_record THEN CASE split_part(p, ':', 3)
                   WHEN '' THEN 'the record is not a JSON object; its text is kept in extra._raw'
                   WHEN 'nul' THEN 'the record holds NUL bytes, shown as U+FFFD; fix or discard it'
                   ELSE 'the record has ' || split_part(split_part(p, ':', 3), '/', 1)
                        || ' fields where the header has '
                        || split_part(split_part(p, ':', 3), '/', 2)
                        || '; values past the header are kept in extra as column_N'
                   END
               WHEN :value_too_long THEN split_part(p, ':', 2) || ' is longer than '
                   || :max_name_length || ' characters'
               ELSE split_part(p, ':', 2) || ' is required but empty'
           END AS message
    FROM live, unnest(live.problems) AS p
    WHERE cardinality(live.problems) > 0
    UNION ALL
    SELECT :duplicate_email, 'email', email_normalized, row_number,
           email_normalized || ' appears on ' || copies || ' rows of this file'
    FROM dups
    WHERE copies > 1
    UNION ALL
    SELECT :existing_contact, 'email', live.email_normalized, live.row_number,
           'a contact with email ' || live.email_normalized || ' already exists'
    FROM live
    JOIN contacts c
      ON c.tenant_id = :tenant_id AND c.email_normalized = live.email_normalized
    """
)

_UPSERT_ISSUES = sa.text(
    """
    INSERT INTO issues (job_id, kind, field, issue_key, message)
    SELECT DISTINCT ON (kind, field, issue_key) :job_id, kind, field, issue_key, message
    FROM current_problems
    ORDER BY kind, field, issue_key, row_number
    ON CONFLICT (job_id, kind, field, issue_key) DO UPDATE
       SET message = EXCLUDED.message, resolved = false, resolved_at = NULL
     WHERE issues.resolved OR issues.message IS DISTINCT FROM EXCLUDED.message
    """
)

_RESOLVE_VANISHED = sa.text(
    """
    UPDATE issues i SET resolved = true, resolved_at = now()
    WHERE i.job_id = :job_id AND NOT i.resolved
      AND NOT EXISTS (SELECT 1 FROM current_problems p
                      WHERE p.kind = i.kind AND p.field = i.field AND p.issue_key = i.issue_key)
    """
)

# Links of open issues follow the current rows; resolved issues keep theirs as history.
_UNLINK_STALE = sa.text(
    """
    DELETE FROM issue_items ii USING issues i
    WHERE ii.issue_id = i.issue_id AND i.job_id = :job_id AND NOT i.resolved
      AND NOT EXISTS (SELECT 1 FROM current_problems p
                      WHERE p.kind = i.kind AND p.field = i.field AND p.issue_key = i.issue_key
                        AND p.row_number = ii.row_number)
    """
)

_LINK_CURRENT = sa.text(
    """
    INSERT INTO issue_items (issue_id, job_id, row_number)
    SELECT i.issue_id, :job_id, p.row_number
    FROM current_problems p
    JOIN issues i ON i.job_id = :job_id AND i.kind = p.kind AND i.field = p.field
                 AND i.issue_key = p.issue_key
    ON CONFLICT DO NOTHING
    """
)

_MARK_ROWS = sa.text(
    """
    UPDATE staging_rows s
       SET status = CASE WHEN EXISTS (SELECT 1 FROM current_problems p
                                      WHERE p.row_number = s.row_number)
                         THEN 'ISSUE' ELSE 'READY' END
    WHERE s.job_id = :job_id AND s.status IN ('READY', 'ISSUE')
      AND s.status IS DISTINCT FROM CASE WHEN EXISTS (SELECT 1 FROM current_problems p
                                                      WHERE p.row_number = s.row_number)
                                         THEN 'ISSUE' ELSE 'READY' END
    """
)

WORK_MEM = "256MB"
# A job writing this many problem rows refreshes the statistics of what it wrote.
ANALYZE_AFTER_ROWS = 10_000

_COUNT_OPEN = sa.text("SELECT count(*) FROM issues WHERE job_id = :job_id AND NOT resolved")


@dataclass(frozen=True)
class ValidationResult:
    """Outcome of validating one job."""

    open_issues: int
    problem_rows: int


def validate_job(conn: Connection, job_id: str, tenant_id: str) -> ValidationResult:
    """Recompute every issue of a job from its current staging rows (inside the caller's tx)."""
    params = {
        "job_id": job_id,
        "tenant_id": tenant_id,
        "invalid_email": IssueKind.INVALID_EMAIL.value,
        "duplicate_email": IssueKind.DUPLICATE_EMAIL.value,
        "existing_contact": IssueKind.EXISTING_CONTACT.value,
        "malformed_record": IssueKind.MALFORMED_RECORD.value,
        "value_too_long": IssueKind.VALUE_TOO_LONG.value,
        "max_name_length": MAX_NAME_LENGTH,
    }
    # Sorting and hashing a million emails in memory instead of in temp files.
    conn.execute(sa.text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
    conn.execute(sa.text("DROP TABLE IF EXISTS current_problems"))
    conn.execute(_CURRENT_PROBLEMS, params)
    conn.execute(sa.text("CREATE INDEX ON current_problems (row_number)"))
    # Issues written in this same transaction have no statistics yet, so the planner may pick
    # a nested loop over them; an index keeps every such plan cheap.
    conn.execute(sa.text("CREATE INDEX ON current_problems (kind, field, issue_key, row_number)"))
    conn.execute(sa.text("ANALYZE current_problems"))
    for statement in (_UPSERT_ISSUES, _RESOLVE_VANISHED, _UNLINK_STALE, _LINK_CURRENT, _MARK_ROWS):
        conn.execute(statement, {"job_id": job_id})
    open_issues = conn.scalar(_COUNT_OPEN, {"job_id": job_id})
    problem_rows = conn.scalar(sa.text("SELECT count(DISTINCT row_number) FROM current_problems"))
    if problem_rows >= ANALYZE_AFTER_ROWS:
        # Until autovacuum comes by, the planner would read these tables with the row counts
        # of before this bulk write, and the next statements on them (the checks, a review)
        # could pick nested loops over tens of thousands of rows.
        conn.execute(sa.text("ANALYZE issues, issue_items, staging_rows"))
    status = JobStatus.NEEDS_REVIEW if open_issues else JobStatus.PROCESSING
    conn.execute(
        sa.text(
            "UPDATE import_jobs SET issue_count = :n, status = :status, updated_at = now() "
            "WHERE job_id = :job_id"
        ),
        {"n": open_issues, "status": status.value, "job_id": job_id},
    )
    return ValidationResult(open_issues=open_issues, problem_rows=problem_rows)
