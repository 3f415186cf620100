"""Alembic environment: runs on the connection handed over by ingestion_pipeline.db.migrate."""

from __future__ import annotations

from alembic import context

from ingestion_pipeline.db.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through ingestion_pipeline.db.engine.migrate()")

context.configure(connection=connection, target_metadata=metadata, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
