"""Column mappings: the one each job uses, and those people confirmed, per tenant and header."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from ingestion_pipeline.db.tables import column_mappings


def remembered_mapping(conn: Connection, tenant_id: str, signature: str) -> dict[str, Any] | None:
    """The mapping the tenant confirmed for this header signature, if any."""
    return conn.scalar(
        sa.select(column_mappings.c.mapping).where(
            column_mappings.c.tenant_id == tenant_id, column_mappings.c.signature == signature
        )
    )


def remember_mapping(
    conn: Connection,
    tenant_id: str,
    signature: str,
    header: list[str],
    mapping: dict[str, Any],
    job_id: str,
) -> None:
    """Keep a confirmed mapping for the tenant's next file of the same header (latest wins)."""
    stmt = insert(column_mappings).values(
        tenant_id=tenant_id,
        signature=signature,
        header=header,
        mapping=mapping,
        confirmed_by_job=job_id,
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[column_mappings.c.tenant_id, column_mappings.c.signature],
            set_={
                "mapping": stmt.excluded.mapping,
                "header": stmt.excluded.header,
                "confirmed_by_job": stmt.excluded.confirmed_by_job,
                "updated_at": sa.func.now(),
            },
        )
    )
