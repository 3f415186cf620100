"""The SQL the lake runs: a job's loaded rows (streamed out of PostgreSQL by `copy_out`), the
lock that serializes a tenant's writes to one lake table, and the catalog's schema."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine


def _read_as(column: sa.Column) -> str:
    """A column as the lake reads it from CSV: timestamps as microseconds since the epoch,
    booleans as true/false, UUIDs, JSONB and dates as their text, the rest as PostgreSQL
    writes it."""
    kind = column.type
    name = f'"{column.name}"'
    if isinstance(kind, sa.DateTime):
        return f"(extract(epoch FROM {name}) * 1000000)::bigint"
    if isinstance(kind, sa.Boolean | sa.Uuid | sa.Date | JSONB):
        return f"{name}::text"
    return name


def job_rows_query(table: sa.Table, columns: list[str]) -> str:
    """The SELECT of the rows a job wrote to `table` that it still holds, in `columns` order;
    its placeholders the tenant id and the job id.

    A row a later job updated carries that job's id, and goes to the lake with that job.
    """
    exprs = ", ".join(_read_as(table.c[name]) for name in columns)
    return f'SELECT {exprs} FROM "{table.name}" WHERE tenant_id = %s AND job_id = %s'


@contextmanager
def lake_lock(engine: Engine, table: str, tenant_id: str) -> Iterator[None]:
    """Hold the lock on one tenant's rows of one lake table while a job is written there.

    Writes of one tenant to one table go one after the other: the later job reads PostgreSQL
    after the earlier one committed, so the key it replaces is never one the earlier job was
    about to write back. Other tenants' writes go on beside (Iceberg's commit retries them).
    """
    key = f"lake:{table}:{tenant_id}"
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(hashtextextended(:key, 0))"), {"key": key})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(
                sa.text("SELECT pg_advisory_unlock(hashtextextended(:key, 0))"), {"key": key}
            )
            conn.commit()


def ensure_schema(url: sa.URL, schema: str) -> None:
    """Create `schema` in the database at `url` if it is not there (the lake's SQL catalog)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    finally:
        engine.dispose()
