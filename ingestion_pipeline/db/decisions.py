"""Review decisions in the database: record them, list rows for review, apply them set-based."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Engine

from ingestion_pipeline.constants import JobStatus
from ingestion_pipeline.datasets import CONTACTS, Dataset
from ingestion_pipeline.db.import_jobs import ImportJob
from ingestion_pipeline.db.staging import data_json
from ingestion_pipeline.db.tables import review_decisions, review_files
from ingestion_pipeline.db.validation import staged_value
from ingestion_pipeline.normalize import normalize_text
from ingestion_pipeline.review_files import Decision, render_issues_csv
from ingestion_pipeline.schemas import judge_rows


class ReviewError(ValueError):
    """A decision that cannot be taken: wrong job state, rows not in the job."""


def _rows_for_review_sql(dataset: Dataset) -> str:
    values = ", ".join(f"{staged_value(dataset, f)} AS {f}" for f in dataset.field_names)
    # Grouped by the primary key, so every column of the row can be selected.
    return f"""
    SELECT s.row_number, {values},
           string_agg(i.kind || ': ' || i.message, '; ' ORDER BY i.kind, i.field) AS problems
    FROM staging_rows s
    JOIN issue_items ii ON ii.job_id = s.job_id AND ii.row_number = s.row_number
    JOIN issues i ON i.issue_id = ii.issue_id AND NOT i.resolved
    WHERE s.job_id = :job_id AND s.status = 'ISSUE'
    GROUP BY s.job_id, s.row_number
    ORDER BY s.row_number
    """


def rows_for_review(conn: Connection, job_id: str, dataset: Dataset = CONTACTS) -> Iterator[dict]:
    """Rows with open issues, their values and a line describing their problems, streamed."""
    result = conn.execution_options(stream_results=True, yield_per=5000).execute(
        sa.text(_rows_for_review_sql(dataset)), {"job_id": job_id}
    )
    for row in result.mappings():
        yield dict(row)


def record_decisions(
    conn: Connection, job: ImportJob, decisions: Sequence[Decision], source: str
) -> int:
    """Store decisions for later application; refuses rows that are not in the job."""
    if job.status is JobStatus.COMPLETED:
        raise ReviewError(f"job {job.job_id} is already COMPLETED; its {job.dataset} are loaded")
    if not decisions:
        return 0
    wanted = sorted({d.row_number for d in decisions})
    found = set(
        conn.scalars(
            sa.text(
                "SELECT row_number FROM staging_rows "
                "WHERE job_id = :job_id AND row_number = ANY(:rows)"
            ),
            {"job_id": job.job_id, "rows": wanted},
        )
    )
    missing = [n for n in wanted if n not in found]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        raise ReviewError(f"job {job.job_id} has no record {shown}")
    conn.execute(
        insert(review_decisions),
        [
            {
                "job_id": job.job_id,
                "row_number": d.row_number,
                "action": d.action,
                "changes": {k: normalize_text(v) for k, v in d.changes.items()},
                "source": source,
            }
            for d in decisions
        ],
    )
    return len(decisions)


def claim_review_file(conn: Connection, job_id: str, etag: str, decisions: int) -> bool:
    """Note that this version of the decisions file was read; False if it was already."""
    stmt = (
        insert(review_files)
        .values(job_id=job_id, etag=etag, decisions=decisions)
        .on_conflict_do_nothing()
    )
    return conn.execute(stmt).rowcount == 1


def review_file_seen(conn: Connection, job_id: str, etag: str) -> bool:
    return bool(
        conn.scalar(
            sa.select(sa.literal(1)).where(
                review_files.c.job_id == job_id, review_files.c.etag == etag
            )
        )
    )


@dataclass(frozen=True)
class AppliedDecisions:
    """What applying a job's pending decisions did."""

    fixed: int
    discarded: int

    @property
    def total(self) -> int:
        return self.fixed + self.discarded


_LATEST = sa.text(
    """
    CREATE TEMP TABLE latest_decisions ON COMMIT DROP AS
    SELECT DISTINCT ON (row_number) row_number, action, changes
    FROM review_decisions
    WHERE job_id = :job_id AND applied_at IS NULL
    ORDER BY row_number, decision_id DESC
    """
)
_DISCARD = sa.text(
    """
    UPDATE staging_rows s SET status = 'DISCARD'
    FROM latest_decisions d
    WHERE s.job_id = :job_id AND s.row_number = d.row_number
      AND d.action = 'discard' AND s.status <> 'SUCCESS'
    """
)
_FIX = sa.text(
    """
    UPDATE staging_rows s SET
        email = CASE WHEN d.changes ? 'email' THEN d.changes->>'email' ELSE s.email END,
        first_name = CASE WHEN d.changes ? 'first_name' THEN d.changes->>'first_name'
                          ELSE s.first_name END,
        last_name = CASE WHEN d.changes ? 'last_name' THEN d.changes->>'last_name'
                         ELSE s.last_name END,
        company = CASE WHEN d.changes ? 'company' THEN d.changes->>'company' ELSE s.company END,
        status = 'READY'
    FROM latest_decisions d
    WHERE s.job_id = :job_id AND s.row_number = d.row_number
      AND d.action = 'fix' AND s.status <> 'SUCCESS'
    RETURNING s.row_number, s.email, s.first_name, s.last_name, s.company
    """
)
# Every other dataset: the fixed fields replace the row's values in data.
_FIX_DATA = sa.text(
    """
    UPDATE staging_rows s SET data = s.data || d.changes, status = 'READY'
    FROM latest_decisions d
    WHERE s.job_id = :job_id AND s.row_number = d.row_number
      AND d.action = 'fix' AND s.status <> 'SUCCESS'
    RETURNING s.row_number, s.data
    """
)
_SET_DATA_VERDICTS = sa.text(
    """
    UPDATE staging_rows s SET data = v.data::jsonb, problems = v.problems::text[]
    FROM (SELECT unnest(CAST(:rows AS integer[])) AS row_number,
                 unnest(CAST(:data AS text[])) AS data,
                 unnest(CAST(:problems AS text[])) AS problems) v
    WHERE s.job_id = :job_id AND s.row_number = v.row_number
    """
)
_SET_VERDICTS = sa.text(
    """
    UPDATE staging_rows s
       SET email_normalized = v.email_normalized, problems = v.problems::text[]
    FROM (SELECT unnest(CAST(:rows AS integer[])) AS row_number,
                 unnest(CAST(:emails AS text[])) AS email_normalized,
                 unnest(CAST(:problems AS text[])) AS problems) v
    WHERE s.job_id = :job_id AND s.row_number = v.row_number
    """
)


def apply_decisions(conn: Connection, job_id: str, dataset: Dataset = CONTACTS) -> AppliedDecisions:
    """Apply the latest pending decision of every row, then judge fixed rows by the row rules."""
    conn.execute(sa.text("DROP TABLE IF EXISTS latest_decisions"))
    conn.execute(_LATEST, {"job_id": job_id})
    discarded = conn.execute(_DISCARD, {"job_id": job_id}).rowcount
    if dataset.staged_in_columns:
        fixed_rows = [dict(r) for r in conn.execute(_FIX, {"job_id": job_id}).mappings()]
    else:
        fixed_rows = [
            {"row_number": r.row_number, **r.data}
            for r in conn.execute(_FIX_DATA, {"job_id": job_id})
        ]
    if fixed_rows:
        frame = pd.DataFrame(fixed_rows, columns=["row_number", *dataset.field_names], dtype="str")
        judged = judge_rows(frame, dataset)
        params = {
            "job_id": job_id,
            "rows": [int(n) for n in frame["row_number"]],
            "problems": judged["problems"].tolist(),
        }
        if dataset.staged_in_columns:
            emails = judged["email_normalized"]
            params["emails"] = [None if pd.isna(e) else e for e in emails]
            conn.execute(_SET_VERDICTS, params)
        else:
            params["data"] = data_json(judged[list(dataset.field_names)]).tolist()
            conn.execute(_SET_DATA_VERDICTS, params)
    conn.execute(
        sa.text(
            "UPDATE review_decisions SET applied_at = now() "
            "WHERE job_id = :job_id AND applied_at IS NULL"
        ),
        {"job_id": job_id},
    )
    return AppliedDecisions(fixed=len(fixed_rows), discarded=discarded)


# The page's rows are found first, in record order on the primary key (a page costs the same
# wherever it starts), and only those rows are joined to their issues and decisions.
@cache
def _review_page_sql(dataset: Dataset) -> str:
    names = ", ".join(f"p.{f}" for f in dataset.field_names)
    values = ", ".join(f"{staged_value(dataset, f)} AS {f}" for f in dataset.field_names)
    return f"""
    WITH page AS (
        SELECT s.row_number, {values}
        FROM staging_rows s
        WHERE s.job_id = :job_id AND s.status = 'ISSUE' AND s.row_number > :after
          AND (CAST(:kind AS text) IS NULL AND CAST(:field AS text) IS NULL OR EXISTS (
              SELECT 1 FROM issue_items k JOIN issues ki ON ki.issue_id = k.issue_id
              WHERE k.job_id = s.job_id AND k.row_number = s.row_number AND NOT ki.resolved
                AND (CAST(:kind AS text) IS NULL OR ki.kind = :kind)
                AND (CAST(:field AS text) IS NULL OR ki.field = :field)))
        ORDER BY s.row_number
        LIMIT :limit)
    SELECT p.row_number, {names},
           jsonb_agg(jsonb_build_object('kind', i.kind, 'field', i.field, 'message', i.message)
                     ORDER BY i.kind, i.field) AS problems,
           d.action AS pending_action, d.changes AS pending_changes
    FROM page p
    JOIN issue_items ii ON ii.job_id = :job_id AND ii.row_number = p.row_number
    JOIN issues i ON i.issue_id = ii.issue_id AND NOT i.resolved
    LEFT JOIN LATERAL (
        SELECT action, changes FROM review_decisions r
        WHERE r.job_id = :job_id AND r.row_number = p.row_number AND r.applied_at IS NULL
        ORDER BY r.decision_id DESC LIMIT 1) d ON true
    GROUP BY p.row_number, {names}, d.action, d.changes
    ORDER BY p.row_number
    """


def review_page(
    conn: Connection,
    job_id: str,
    *,
    after: int = 0,
    limit: int = 100,
    kind: str | None = None,
    field: str | None = None,
    dataset: Dataset = CONTACTS,
) -> list[dict]:
    """One page of rows with open issues (record numbers after `after`; only those with an
    open issue of `kind` on `field` when given), each with its problems and the reviewer's
    decision not yet applied, if any."""
    params = {"job_id": job_id, "after": after, "limit": limit, "kind": kind, "field": field}
    return [dict(r) for r in conn.execute(sa.text(_review_page_sql(dataset)), params).mappings()]


_ISSUES_PAGE = sa.text(
    """
    WITH page AS (
        SELECT i.issue_id, i.kind, i.field, i.message
        FROM issues i
        WHERE i.job_id = :job_id AND NOT i.resolved AND i.issue_id > :after
          AND (CAST(:kind AS text) IS NULL OR i.kind = :kind)
        ORDER BY i.issue_id
        LIMIT :limit)
    SELECT p.issue_id, p.kind, p.field, p.message,
           array_agg(ii.row_number ORDER BY ii.row_number) AS rows
    FROM page p
    JOIN issue_items ii ON ii.issue_id = p.issue_id
    GROUP BY p.issue_id, p.kind, p.field, p.message
    ORDER BY p.issue_id
    """
)


def issues_page(
    conn: Connection, job_id: str, *, after: int = 0, limit: int = 100, kind: str | None = None
) -> list[dict]:
    """One page of a job's open issues in issue id order (keyset: ids after `after`)."""
    params = {"job_id": job_id, "after": after, "limit": limit, "kind": kind}
    return [dict(r) for r in conn.execute(_ISSUES_PAGE, params).mappings()]


_DISCARD_KIND = sa.text(
    """
    INSERT INTO review_decisions (job_id, row_number, action, changes, source)
    SELECT DISTINCT :job_id, ii.row_number, 'discard', '{}'::jsonb, :source
    FROM issues i JOIN issue_items ii ON ii.issue_id = i.issue_id
    WHERE i.job_id = :job_id AND NOT i.resolved AND i.kind = :kind
    """
)


def discard_kind(conn: Connection, job_id: str, kind: str, source: str) -> int:
    """Record a discard for every row with an open issue of `kind`, in one statement."""
    return conn.execute(_DISCARD_KIND, {"job_id": job_id, "kind": kind, "source": source}).rowcount


_ROWS_BY_FIELD = sa.text(
    """
    SELECT i.field, count(DISTINCT ii.row_number)
    FROM issues i
    JOIN issue_items ii ON ii.issue_id = i.issue_id
    JOIN staging_rows s ON s.job_id = ii.job_id AND s.row_number = ii.row_number
    WHERE i.job_id = :job_id AND NOT i.resolved AND s.status = 'ISSUE'
    GROUP BY i.field
    """
)


def row_counts_by_field(conn: Connection, job_id: str) -> dict[str, int]:
    """Rows with an open issue on each field (what `review_page(field=…)` lists), in one
    statement."""
    return {field: count for field, count in conn.execute(_ROWS_BY_FIELD, {"job_id": job_id})}


@dataclass(frozen=True)
class ReplaceExample:
    """One row a find and replace changes: its value before and after."""

    row_number: int
    before: str | None
    after: str | None


@dataclass(frozen=True)
class ReplacePreview:
    """What a find and replace would do: the rows it changes and the first few of them."""

    rows: int
    examples: list[ReplaceExample]


# The rows in error of the job (those review_page lists) that a find and replace changes, with
# the value each has now: a pending fix of the field wins over the staged value, and a row
# pending discard is left alone. The value written is normalized as record_decisions would.
@cache
def _replaced_sql(dataset: Dataset, field: str, whole: bool) -> str:
    staged = staged_value(dataset, field)
    matches = "v.before = :find" if whole else "strpos(v.before, :find) > 0"
    replaced = "CAST(:replacement AS text)" if whole else "replace(v.before, :find, :replacement)"
    return f"""
    WITH latest AS (
        SELECT DISTINCT ON (row_number) row_number, action, changes
        FROM review_decisions
        WHERE job_id = :job_id AND applied_at IS NULL
        ORDER BY row_number, decision_id DESC),
    v AS (
        SELECT s.row_number, d.changes,
               CASE WHEN d.changes ? :field THEN d.changes->>:field ELSE {staged} END AS before
        FROM staging_rows s
        LEFT JOIN latest d ON d.row_number = s.row_number
        WHERE s.job_id = :job_id AND s.status = 'ISSUE'
          AND d.action IS DISTINCT FROM 'discard'
          AND EXISTS (SELECT 1 FROM issue_items ii JOIN issues i ON i.issue_id = ii.issue_id
                      WHERE ii.job_id = s.job_id AND ii.row_number = s.row_number
                        AND NOT i.resolved)),
    replaced AS (
        SELECT v.row_number, v.changes, v.before,
               nullif(btrim(normalize({replaced}, NFC), E' \\t\\r\\n'), '') AS after
        FROM v
        WHERE {matches}),
    changed AS (
        SELECT * FROM replaced WHERE after IS DISTINCT FROM before)
    """


def _replace_params(
    job_id: str, dataset: Dataset, field: str, find: str, replacement: str
) -> dict[str, str]:
    """The bound parameters of a find and replace; ReviewError for one that cannot be run."""
    if field not in dataset.field_names:
        raise ReviewError(f"unknown field {field!r}; fields: {', '.join(dataset.field_names)}")
    if not find:
        raise ReviewError("nothing to find (the Find text is empty)")
    for text in (find, replacement):
        if "\x00" in text or not _encodable(text):
            raise ReviewError("find and replace take plain text (no NUL or broken characters)")
    return {"job_id": job_id, "field": field, "find": find, "replacement": replacement}


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def replace_preview(
    conn: Connection,
    job_id: str,
    dataset: Dataset,
    field: str,
    find: str,
    replacement: str,
    *,
    whole: bool = False,
    examples: int = 5,
) -> ReplacePreview:
    """How many of the job's rows in error replacing `find` by `replacement` in `field` would
    change, and the first `examples` of them; one statement, nothing written.

    Args:
        conn: A connection to the database.
        job_id: The import job.
        dataset: The job's dataset.
        field: One of the dataset's fields; ReviewError for any other.
        find: The text to find (not empty), case-sensitive.
        replacement: What replaces each occurrence (may be empty).
        whole: Replace only a value that is exactly `find`.
        examples: How many changed rows to show (at least one is read).
    """
    params = _replace_params(job_id, dataset, field, find, replacement)
    sql = _replaced_sql(dataset, field, whole) + (
        "SELECT row_number, before, after, count(*) OVER () AS total "
        "FROM changed ORDER BY row_number LIMIT :limit"
    )
    found = conn.execute(sa.text(sql), {**params, "limit": max(examples, 1)}).all()
    shown = [ReplaceExample(r.row_number, r.before, r.after) for r in found[:examples]]
    return ReplacePreview(rows=found[0].total if found else 0, examples=shown)


def replace_in_field(
    conn: Connection,
    job_id: str,
    dataset: Dataset,
    field: str,
    find: str,
    replacement: str,
    *,
    whole: bool = False,
    source: str,
) -> int:
    """Record a `fix` of `field` on every row in error that the find and replace changes (see
    replace_preview), in one statement; a pending fix keeps its other fields. Returns the
    rows recorded."""
    params = _replace_params(job_id, dataset, field, find, replacement)
    sql = _replaced_sql(dataset, field, whole) + (
        "INSERT INTO review_decisions (job_id, row_number, action, changes, source) "
        "SELECT :job_id, row_number, 'fix', "
        "coalesce(changes, '{}'::jsonb) || jsonb_build_object(CAST(:field AS text), after), "
        ":source FROM changed ORDER BY row_number"
    )
    return conn.execute(sa.text(sql), {**params, "source": source}).rowcount


def review_csv_chunks(
    engine: Engine, job_id: str, dataset: Dataset = CONTACTS, rows_per_chunk: int = 2000
) -> Iterator[bytes]:
    """The review file of the job's rows in error (write_issues_csv), a chunk of rows at a
    time from one streamed statement, for a download that never holds the whole file."""
    head = render_issues_csv((), dataset)
    yield head
    with engine.connect() as conn:
        batch: list[dict] = []
        for row in rows_for_review(conn, job_id, dataset):
            batch.append(row)
            if len(batch) >= rows_per_chunk:
                yield render_issues_csv(batch, dataset)[len(head) :]
                batch = []
        if batch:
            yield render_issues_csv(batch, dataset)[len(head) :]
