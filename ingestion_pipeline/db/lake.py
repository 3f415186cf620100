"""The SQL the lake reads: a job's loaded rows, streamed out of PostgreSQL as CSV by COPY."""

from __future__ import annotations

from typing import BinaryIO

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ingestion_pipeline.db.tables import contacts


def copy_job_rows(engine: Engine, job_id: str, columns: list[str], out: BinaryIO) -> None:
    """Write the job's contacts as CSV (no header) to `out`, in `columns` order; timestamps as
    microseconds since the epoch, JSONB as its text. One COPY, streamed as PostgreSQL sends it.
    """
    exprs = []
    for name in columns:
        column = contacts.c[name]
        if isinstance(column.type, sa.DateTime):
            exprs.append(f"(extract(epoch FROM {name}) * 1000000)::bigint")
        else:
            exprs.append(f"{name}::text" if name == "extra" else name)
    with engine.connect() as conn:
        literal = conn.connection.driver_connection.cursor().mogrify("%s", (job_id,)).decode()
        query = (
            f"COPY (SELECT {', '.join(exprs)} FROM contacts WHERE job_id = {literal}) "
            "TO STDOUT WITH (FORMAT csv)"
        )
        cursor = conn.connection.driver_connection.cursor()
        try:
            cursor.copy_expert(query, out)
        finally:
            cursor.close()


def ensure_schema(url: sa.URL, schema: str) -> None:
    """Create `schema` in the database at `url` if it is not there (the lake's SQL catalog)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    finally:
        engine.dispose()
