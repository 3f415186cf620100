"""Bulk COPY of prepared chunks into staging_rows: one COPY (and one INSERT on resume) a chunk."""

from __future__ import annotations

import hashlib
import io

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ingestion_pipeline.constants import CANONICAL_FIELDS, IssueKind, RowStatus
from ingestion_pipeline.emails import normalize_email
from ingestion_pipeline.normalize import normalize_series
from ingestion_pipeline.schemas import row_problems

STAGING_COPY_COLUMNS: tuple[str, ...] = (
    "job_id",
    "row_number",
    "row_hash",
    *CANONICAL_FIELDS,
    "email_normalized",
    "extra",
    "problems",
    "status",
)
_COLUMN_LIST = ", ".join(STAGING_COPY_COLUMNS)
MALFORMED = "{" + IssueKind.MALFORMED_RECORD.value + ":record}"


def _hash_key(job_id: str) -> str:
    # pandas wants exactly 16 characters; deriving them from the job mixes the job into the hash.
    return hashlib.sha1(job_id.encode()).hexdigest()[:16]


def _without_nul(out: pd.DataFrame) -> pd.Series:
    """Replace NUL (which PostgreSQL text and JSONB cannot hold) by U+FFFD; True where found."""
    nul = pd.Series(False, index=out.index)
    for name, char, shown in (
        *((n, "\x00", "\ufffd") for n in CANONICAL_FIELDS),
        ("extra", "\\u0000", "\\ufffd"),  # the JSON escape, in the extra column's text
    ):
        found = out[name].astype("str").str.contains(char, regex=False, na=False)
        if found.any():
            out[name] = out[name].astype("str").str.replace(char, shown, regex=False)
            nul |= found
    return nul


def prepare_chunk(frame: pd.DataFrame, job_id: str) -> pd.DataFrame:
    """Add the normalized email, row rule verdicts, row hash and status to a read chunk."""
    out = frame.copy()
    nul = _without_nul(out)
    for name in CANONICAL_FIELDS:
        out[name] = normalize_series(out[name])
    out["email_normalized"] = normalize_email(out["email"])
    checked = out[list(CANONICAL_FIELDS)].assign(email=out["email_normalized"])
    out["problems"] = row_problems(checked)
    problem = out.get("record_problem", pd.Series(None, index=out.index, dtype="str"))
    problem = problem.mask(nul, "nul")
    if "parse_error" in out:
        # A record that is not an object has one problem, not four missing fields.
        malformed = out["parse_error"].notna()
        out.loc[malformed, "problems"] = MALFORMED
        problem = problem.mask(malformed, None)
    if problem.notna().any():
        # A CSV record whose fields do not line up with the header, or a record that held NUL
        # bytes: flagged first, its other problems kept (`malformed_record:record:<n>/<width>`
        # or `malformed_record:record:nul`).
        flagged = problem.notna()
        marker = "{" + IssueKind.MALFORMED_RECORD.value + ":record:"
        rest = out.loc[flagged, "problems"].str[1:]
        out.loc[flagged, "problems"] = (
            marker + problem[flagged] + rest.where(rest == "}", "," + rest)
        )
    hashed = pd.util.hash_pandas_object(
        out[["row_number", *CANONICAL_FIELDS, "extra"]], index=False, hash_key=_hash_key(job_id)
    )
    out["row_hash"] = hashed.to_numpy().view("int64")
    out["status"] = (out["problems"] == "{}").map(
        {True: RowStatus.READY.value, False: RowStatus.ISSUE.value}
    )
    out["job_id"] = job_id
    return out[list(STAGING_COPY_COLUMNS)]


def _copy(conn: Connection, table: str, frame: pd.DataFrame) -> None:
    # Arrow's CSV writer is ~10x faster than DataFrame.to_csv; nulls come out as unquoted
    # empty fields, which COPY reads as NULL, and every string is quoted.
    buffer = io.BytesIO()
    pacsv.write_csv(
        pa.Table.from_pandas(frame, preserve_index=False),
        buffer,
        pacsv.WriteOptions(include_header=False),
    )
    buffer.seek(0)
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.copy_expert(f"COPY {table} ({_COLUMN_LIST}) FROM STDIN WITH (FORMAT csv)", buffer)
    finally:
        cursor.close()


def copy_chunk(conn: Connection, frame: pd.DataFrame, *, resume: bool) -> int:
    """Write a prepared chunk; with `resume`, rows already staged (same hash) are skipped.

    Returns the number of rows newly written.
    """
    if not resume:
        _copy(conn, "staging_rows", frame)
        return len(frame)
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS staging_incoming "
            "(LIKE staging_rows INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
    finally:
        cursor.close()
    _copy(conn, "staging_incoming", frame)
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(
            f"INSERT INTO staging_rows ({_COLUMN_LIST}) "
            f"SELECT {_COLUMN_LIST} FROM staging_incoming ON CONFLICT DO NOTHING"
        )
        return cursor.rowcount
    finally:
        cursor.close()


def analyze_staging(conn: Connection) -> None:
    """Fresh planner statistics for staging_rows (after a bulk load)."""
    conn.execute(sa.text("ANALYZE staging_rows"))
