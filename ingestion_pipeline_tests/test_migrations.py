"""The migrations build exactly the schema the metadata describes."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ingestion_pipeline.db.tables import metadata


def test_migrated_schema_matches_the_metadata(engine):
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
