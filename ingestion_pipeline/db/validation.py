"""Set-based validation of a job's staging rows: issues, their links, row and job status.

Row rules were judged per chunk by pandera (staging_rows.problems); here they are joined with
the cross-row rules (in-file duplicates, existing contacts) into one problem set, which is then
reconciled with the issues table: new problems open issues, vanished ones resolve them, and a
problem that comes back reopens its issue. A fixed number of statements per job, none per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from ingestion_pipeline.constants import IssueKind, JobStatus
from ingestion_pipeline.datasets import DATASETS, Dataset, Field, FieldType, MergePolicy
from ingestion_pipeline.db.staging import ANALYZE_STAGING
from ingestion_pipeline.db.tables import column_type
from ingestion_pipeline.issue_kinds import ROW_RULE_KINDS, UnknownIssueKindError, template_parts


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _by_field(field_sql: str, values: dict[str, str]) -> str:
    """CASE over the field name of a problem code, NULL for any other field."""
    if not values:
        return "NULL"
    whens = " ".join(f"WHEN {_literal(name)} THEN {expr}" for name, expr in values.items())
    return f"CASE {field_sql} {whens} END"


def _message(kind: str, variables: dict[str, str]) -> str:
    """The registry's message for `kind` as a SQL expression over `variables`."""
    parts = []
    for part, text in template_parts(kind):
        if part == "text":
            parts.append(_literal(text))
        elif text in variables:
            parts.append(variables[text])
        else:
            raise UnknownIssueKindError(f"message of {kind!r} uses an unknown {{{text}}}")
    return "concat(" + ", ".join(parts) + ")"


def staged_value(dataset: Dataset, name: str, alias: str = "s") -> str:
    """The SQL expression of a field's staged text value."""
    if dataset.staged_in_columns:
        return f"{alias}.{name}"
    return f"({alias}.data->>{_literal(name)})"


def typed_value(dataset: Dataset, field: Field, alias: str = "s", *, guarded: bool) -> str:
    """A field's staged value cast to its column type (tables.column_type); `guarded` casts
    only values that passed the row rules (NULL otherwise), so a bad value never aborts a
    statement."""
    value = staged_value(dataset, field.name, alias)
    column = sa.types.to_instance(column_type(field.type))
    if isinstance(column, sa.Text):
        return value
    cast = f"{value}::{column.compile(dialect=postgresql.dialect())}"
    if not guarded:
        return cast
    flagged = ", ".join(
        _literal(f"{kind.value}:{field.name}")
        for kind in (IssueKind.INVALID_VALUE, IssueKind.MISSING_FIELD)
    )
    return f"CASE WHEN NOT ({alias}.problems && ARRAY[{flagged}]) THEN {cast} END"


def key_value(dataset: Dataset, alias: str = "s") -> str:
    """The natural key as compared: contacts by their normalized email."""
    if dataset.staged_in_columns:
        return f"{alias}.{dataset.key}_normalized"
    return staged_value(dataset, dataset.key, alias)


def _judged_by_value(dataset: Dataset) -> list[Field]:
    """The fields whose issue messages show the value: those with a type or allowed values."""
    return [f for f in dataset.fields if f.type is not FieldType.TEXT or f.allowed]


def _row_message(dataset: Dataset) -> str:
    field_sql = "split_part(p, ':', 2)"
    shown = _judged_by_value(dataset)
    expected = {
        f.name: _literal("one of " + ", ".join(f.allowed) if f.allowed else f.described)
        for f in shown
    }
    variables = {
        "field": field_sql,
        "dataset": _literal(dataset.name),
        "value": _by_field(
            field_sql, {f.name: staged_value(dataset, f.name, "live") for f in shown}
        ),
        "expected": _by_field(field_sql, expected),
        "max_length": _by_field(
            field_sql,
            {f.name: _literal(str(f.max_length)) for f in dataset.fields if f.max_length},
        ),
        "detail": _MALFORMED_DETAIL,
    }
    whens = " ".join(
        f"WHEN {_literal(kind)} THEN {_message(kind, variables)}" for kind in ROW_RULE_KINDS
    )
    # ELSE NULL: a code of a kind the registry does not know is found and refused below.
    return f"CASE split_part(p, ':', 1) {whens} END"


_MALFORMED_DETAIL = """CASE split_part(p, ':', 3)
    WHEN '' THEN 'the record is not a JSON object; its text is kept in extra._raw'
    WHEN 'nul' THEN 'the record holds NUL bytes, shown as U+FFFD; fix or discard it'
    ELSE 'the record has ' || split_part(split_part(p, ':', 3), '/', 1)
         || ' fields where the header has '
         || split_part(split_part(p, ':', 3), '/', 2)
         || '; values past the header are kept in extra as column_N'
END"""


@cache
def current_problems_sql(dataset: Dataset) -> str:
    """The statement that collects every problem of a job's live rows into current_problems:
    row rules, rows sharing the natural key, existing keys (merge policy insert) and
    references to keys the tenant does not have."""
    key = "live.key"
    if dataset.staged_in_columns:
        # Only the columns a message shows (the email of invalid_email): live is materialized.
        values = ", ".join(f"s.{f.name}" for f in _judged_by_value(dataset))
    else:
        values = "s.data"
    key_vars = {
        "dataset": _literal(dataset.name),
        "field": _literal(dataset.key),
        "key": "key",
        "copies": "copies",
    }
    parts = [
        f"""
    SELECT split_part(p, ':', 1) AS kind,
           split_part(p, ':', 2) AS field,
           live.row_number::text AS issue_key,
           live.row_number,
           {_row_message(dataset)} AS message
    FROM live, unnest(live.problems) AS p
    WHERE cardinality(live.problems) > 0""",
        f"""
    SELECT {_literal(dataset.duplicate_kind)}, {_literal(dataset.key)}, key, row_number,
           {_message(dataset.duplicate_kind, key_vars)}
    FROM dups
    WHERE copies > 1""",
    ]
    if dataset.merge is MergePolicy.INSERT:
        table = dataset.table
        if dataset.staged_in_columns:
            match = f"t.{dataset.key}_normalized = {key}"
        else:
            match = (
                f"t.{dataset.key} = {typed_value(dataset, dataset.key_field, 'live', guarded=True)}"
            )
        existing_vars = {**key_vars, "key": key}
        parts.append(
            f"""
    SELECT {_literal(dataset.existing_kind)}, {_literal(dataset.key)}, {key}, live.row_number,
           {_message(dataset.existing_kind, existing_vars)}
    FROM live
    JOIN {table} t ON t.tenant_id = :tenant_id AND {match}"""
        )
    for ref in dataset.references:
        parent = DATASETS[ref.dataset]
        field = dataset.field(ref.field)
        raw = staged_value(dataset, ref.field, "live")
        typed = typed_value(dataset, field, "live", guarded=True)
        ref_vars = {
            "dataset": _literal(dataset.name),
            "field": _literal(ref.field),
            "value": raw,
            "parent": _literal(parent.name),
        }
        same_upload = ""
        if parent.name == dataset.name:
            same_upload = (
                f" AND NOT EXISTS (SELECT 1 FROM staging_rows o WHERE o.job_id = :job_id "
                f"AND o.status <> 'DISCARD' AND {key_value(dataset, 'o')} = {raw})"
            )
        parts.append(
            f"""
    SELECT {_literal(IssueKind.MISSING_REFERENCE.value)}, {_literal(ref.field)}, {raw},
           live.row_number, {_message(IssueKind.MISSING_REFERENCE.value, ref_vars)}
    FROM live
    WHERE {typed} IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM {parent.table} r
                      WHERE r.tenant_id = :tenant_id AND r.{parent.key} = {typed}){same_upload}"""
        )
    return f"""
    CREATE TEMP TABLE current_problems ON COMMIT DROP AS
    WITH live AS (
        SELECT row_number, {key_value(dataset, "s")} AS key, {values}, problems
        FROM staging_rows s
        WHERE job_id = :job_id AND status IN ('READY', 'ISSUE')
    ),
    dups AS (
        SELECT row_number, key, count(*) OVER (PARTITION BY key) AS copies
        FROM live
        WHERE key IS NOT NULL
    )
    {" UNION ALL ".join(parts)}
    """


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
# A job writing this many problem rows refreshes the statistics of what it wrote (a burst of
# small files does not; a few thousand rows are enough to make a nested loop costly).
ANALYZE_AFTER_ROWS = 1_000

_COUNT_OPEN = sa.text("SELECT count(*) FROM issues WHERE job_id = :job_id AND NOT resolved")


@dataclass(frozen=True)
class ValidationResult:
    """Outcome of validating one job."""

    open_issues: int
    problem_rows: int
    status: JobStatus = JobStatus.PROCESSING


def validate_job(
    conn: Connection, job_id: str, tenant_id: str, dataset: Dataset
) -> ValidationResult:
    """Recompute every issue of a job from its current staging rows (inside the caller's tx)."""
    params = {"job_id": job_id, "tenant_id": tenant_id}
    if dataset.references:
        # Serialized with the loads of the datasets it references (see consolidation): a
        # parent completing while this job looks for its keys cannot go unnoticed.
        reference_lock(conn, tenant_id)
    # Sorting and hashing a million emails in memory instead of in temp files.
    conn.execute(sa.text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
    # These statements run once per job: compiling them (a stock server's default for costly
    # plans) took 0.3-0.4 s of a 1M-row validation and saved nothing measurable.
    conn.execute(sa.text("SET LOCAL jit = off"))
    conn.execute(sa.text("DROP TABLE IF EXISTS current_problems"))
    conn.execute(sa.text(current_problems_sql(dataset)), params)
    unknown = conn.scalars(
        sa.text("SELECT DISTINCT kind FROM current_problems WHERE message IS NULL LIMIT 5")
    ).all()
    if unknown:
        raise UnknownIssueKindError(
            f"job {job_id}: problem code(s) of unregistered kind {', '.join(unknown)}"
        )
    conn.execute(sa.text("CREATE INDEX ON current_problems (row_number)"))
    # Issues written in this same transaction have no statistics yet, so the planner may pick
    # a nested loop over them; an index keeps every such plan cheap.
    conn.execute(sa.text("CREATE INDEX ON current_problems (kind, field, issue_key, row_number)"))
    conn.execute(sa.text("ANALYZE current_problems"))
    written = conn.execute(_UPSERT_ISSUES, {"job_id": job_id}).rowcount
    if written >= ANALYZE_AFTER_ROWS:
        # The links join the issues just written. With statistics from when the table was
        # small, the planner may probe the job's issues by job alone once per problem row:
        # seen on a stock PostgreSQL 15 with 64k issues whose index also held the entries of
        # rolled-back attempts, over ten minutes; 1.6 s once analyzed.
        conn.execute(sa.text("ANALYZE issues"))
    for statement in (_RESOLVE_VANISHED, _UNLINK_STALE, _LINK_CURRENT, _MARK_ROWS):
        conn.execute(statement, {"job_id": job_id})
    open_issues = conn.scalar(_COUNT_OPEN, {"job_id": job_id})
    problem_rows = conn.scalar(sa.text("SELECT count(DISTINCT row_number) FROM current_problems"))
    if problem_rows >= ANALYZE_AFTER_ROWS:
        # Until autovacuum comes by, the planner would read these tables with the row counts
        # of before this bulk write, and the next statements on them (the checks, a review)
        # could pick nested loops over tens of thousands of rows.
        conn.execute(sa.text(f"ANALYZE issues, issue_items, {ANALYZE_STAGING}"))
    status = JobStatus.PROCESSING
    if open_issues:
        waiting = bool(dataset.references) and _only_awaited_references(conn, job_id, dataset)
        status = JobStatus.WAITING_FOR_REFERENCES if waiting else JobStatus.NEEDS_REVIEW
    conn.execute(
        sa.text(
            "UPDATE import_jobs SET issue_count = :n, status = :status, updated_at = now() "
            "WHERE job_id = :job_id"
        ),
        {"n": open_issues, "status": status.value, "job_id": job_id},
    )
    return ValidationResult(open_issues=open_issues, problem_rows=problem_rows, status=status)


def reference_lock(conn: Connection, tenant_id: str) -> None:
    """The tenant's lock between validating references and loading referenced datasets."""
    conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"references:{tenant_id}"},
    )


_OPEN_FIELDS = sa.text(
    "SELECT DISTINCT kind, field FROM issues WHERE job_id = :job_id AND NOT resolved"
)
_ARRIVED = sa.text(
    """
    SELECT DISTINCT p.dataset FROM import_jobs p, import_jobs j
    WHERE j.job_id = :job_id AND p.tenant_id = j.tenant_id AND p.dataset = ANY(:parents)
      AND p.status = 'COMPLETED' AND p.finished_at > j.created_at
    """
)


def _only_awaited_references(conn: Connection, job_id: str, dataset: Dataset) -> bool:
    """Whether every open issue is a missing reference to a dataset of which no job of the
    tenant has completed since this job arrived: the parent rows may still be on their way.
    A reference still missing once the parent arrived is a reviewer's issue."""
    open_fields = conn.execute(_OPEN_FIELDS, {"job_id": job_id}).all()
    if any(kind != IssueKind.MISSING_REFERENCE.value for kind, _ in open_fields):
        return False
    parent_of = {r.field: r.dataset for r in dataset.references}
    arrived = set(conn.scalars(_ARRIVED, {"job_id": job_id, "parents": list(dataset.parents)}))
    return all(parent_of[field] not in arrived for _, field in open_fields)
