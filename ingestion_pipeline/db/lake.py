"""The SQL the lake reads: a job's loaded rows (streamed out of PostgreSQL by `copy_out`)."""

from __future__ import annotations

import sqlalchemy as sa

from ingestion_pipeline.db.tables import contacts


def job_rows_query(columns: list[str]) -> str:
    """The SELECT of a job's contacts (its id the one placeholder) in `columns` order, as the
    lake reads them from CSV: timestamps as microseconds since the epoch, JSONB as its text."""
    exprs = []
    for name in columns:
        column = contacts.c[name]
        if isinstance(column.type, sa.DateTime):
            exprs.append(f"(extract(epoch FROM {name}) * 1000000)::bigint")
        else:
            exprs.append(f"{name}::text" if name == "extra" else name)
    return f"SELECT {', '.join(exprs)} FROM contacts WHERE job_id = %s"


def ensure_schema(url: sa.URL, schema: str) -> None:
    """Create `schema` in the database at `url` if it is not there (the lake's SQL catalog)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    finally:
        engine.dispose()
