"""What the service's /metrics and /readyz read from PostgreSQL: one statement each."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ingestion_pipeline.db.tables import import_jobs, webhook_deliveries


def job_counts(conn: Connection) -> dict[tuple[str, str], int]:
    """Import jobs by (status, dataset), in one GROUP BY."""
    query = sa.select(import_jobs.c.status, import_jobs.c.dataset, sa.func.count()).group_by(
        import_jobs.c.status, import_jobs.c.dataset
    )
    return {(status, dataset): count for status, dataset, count in conn.execute(query)}


@dataclass(frozen=True)
class WebhookBacklog:
    pending: int
    # Age of the oldest pending delivery; 0 without any.
    oldest_seconds: float


def webhook_backlog(conn: Connection) -> WebhookBacklog:
    """Deliveries still to send (due or waiting to retry), in one statement on the partial
    index of pending deliveries."""
    pending = webhook_deliveries.c.state == "pending"
    oldest = sa.func.extract("epoch", sa.func.now() - sa.func.min(webhook_deliveries.c.created_at))
    row = conn.execute(sa.select(sa.func.count(), sa.func.coalesce(oldest, 0)).where(pending)).one()
    return WebhookBacklog(pending=int(row[0]), oldest_seconds=max(float(row[1]), 0.0))


@lru_cache(maxsize=1)
def migration_heads() -> frozenset[str]:
    """The head revision(s) of the project's migrations (read from the files once)."""
    from alembic.script import ScriptDirectory

    from ingestion_pipeline.db.engine import _MIGRATIONS

    return frozenset(ScriptDirectory(str(_MIGRATIONS)).get_heads())


def database_revisions(conn: Connection) -> frozenset[str]:
    """The revision(s) the database was migrated to; empty if it never was."""
    if conn.scalar(sa.text("SELECT to_regclass('alembic_version')")) is None:
        return frozenset()
    return frozenset(conn.scalars(sa.text("SELECT version_num FROM alembic_version")))
