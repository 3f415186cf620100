"""Bulk COPY of prepared chunks into staging_rows: one COPY (and one INSERT on resume) a chunk."""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ingestion_pipeline.constants import IssueKind, RowStatus
from ingestion_pipeline.datasets import CONTACTS, Dataset
from ingestion_pipeline.reading.records import json_lines
from ingestion_pipeline.schemas import judge_rows

CONTACTS_COPY_COLUMNS: tuple[str, ...] = (
    "job_id",
    "row_number",
    *CONTACTS.field_names,
    "email_normalized",
    "extra",
    "problems",
    "status",
)
# Every other dataset keeps its fields in one JSONB object.
DATA_COPY_COLUMNS: tuple[str, ...] = (
    "job_id",
    "row_number",
    "data",
    "extra",
    "problems",
    "status",
)
MALFORMED = "{" + IssueKind.MALFORMED_RECORD.value + ":record}"


def copy_columns(dataset: Dataset) -> tuple[str, ...]:
    """The staging_rows columns a dataset's chunks are copied into."""
    return CONTACTS_COPY_COLUMNS if dataset.staged_in_columns else DATA_COPY_COLUMNS


def _without_nul(out: pd.DataFrame, fields: tuple[str, ...]) -> pd.Series:
    """Replace NUL (which PostgreSQL text and JSONB cannot hold) by U+FFFD; True where found."""
    nul = pd.Series(False, index=out.index)
    for name, char, shown in (
        *((n, "\x00", "\ufffd") for n in fields),
        ("extra", "\\u0000", "\\ufffd"),  # the JSON escape, in the extra column's text
    ):
        found = out[name].astype("str").str.contains(char, regex=False, na=False)
        if found.any():
            out[name] = out[name].astype("str").str.replace(char, shown, regex=False)
            nul |= found
    return nul


def data_json(values: pd.DataFrame) -> pd.Series:
    """Each row's fields as one JSON object of text values (null where missing): what
    staging_rows.data holds for every dataset but contacts."""
    lines = json_lines(values.to_json(orient="records", lines=True, force_ascii=False))
    return pd.Series(lines, index=values.index, dtype="str")


def prepare_chunk(frame: pd.DataFrame, job_id: str, dataset: Dataset = CONTACTS) -> pd.DataFrame:
    """Add the normalized values, row rule verdicts and status to a read chunk."""
    fields = dataset.field_names
    out = frame.copy()
    nul = _without_nul(out, fields)
    out = judge_rows(out, dataset)
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
    out["status"] = (out["problems"] == "{}").map(
        {True: RowStatus.READY.value, False: RowStatus.ISSUE.value}
    )
    out["job_id"] = job_id
    if not dataset.staged_in_columns:
        out["data"] = data_json(out[list(fields)])
    return out[list(copy_columns(dataset))]


def _copy(conn: Connection, table: str, frame: pd.DataFrame) -> None:
    columns = ", ".join(frame.columns)
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
        cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)", buffer)
    finally:
        cursor.close()


def copy_chunk(conn: Connection, frame: pd.DataFrame, *, resume: bool) -> int:
    """Write a prepared chunk; with `resume`, rows already staged (same key) are skipped.

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
    columns = ", ".join(frame.columns)
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(
            f"INSERT INTO staging_rows ({columns}) "
            f"SELECT {columns} FROM staging_incoming ON CONFLICT DO NOTHING"
        )
        return cursor.rowcount
    finally:
        cursor.close()


# The columns plans over staging filter, join or group on: statistics of the others (names,
# extra, data) cost half of an ANALYZE and no plan reads them.
ANALYZE_STAGING = "staging_rows (job_id, row_number, status, email_normalized)"


def analyze_staging(conn: Connection) -> None:
    """Fresh planner statistics for staging_rows (after a bulk load)."""
    conn.execute(sa.text(f"ANALYZE {ANALYZE_STAGING}"))
