"""The schema as SQLAlchemy Core metadata; migrations under db/migrations create it."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from ingestion_pipeline.datasets import DATASETS, Dataset, FieldType

metadata = sa.MetaData()


def _now() -> sa.TextClause:
    return sa.text("now()")


import_jobs = sa.Table(
    "import_jobs",
    metadata,
    sa.Column("job_id", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("source_key", sa.Text, nullable=False),
    sa.Column("source_etag", sa.Text, nullable=False),
    sa.Column("file_name", sa.Text, nullable=False),
    sa.Column("dataset", sa.Text, nullable=False, server_default="contacts"),
    sa.Column("status", sa.Text, nullable=False, server_default="PENDING"),
    sa.Column("total_rows", sa.Integer),
    sa.Column("processed_rows", sa.Integer, nullable=False, server_default="0"),
    sa.Column("issue_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("contacts_created", sa.Integer, nullable=False, server_default="0"),
    # What loading did by merge policy (contacts: inserted = contacts_created).
    sa.Column("rows_inserted", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rows_updated", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rows_unchanged", sa.Integer, nullable=False, server_default="0"),
    sa.Column("encoding", sa.Text),
    sa.Column("delimiter", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    # The mapping the job used (the suggestion while it waits in NEEDS_MAPPING) and the file's
    # layout: header, samples, sheet, lines skipped above the header and below the data.
    sa.Column("mapping", JSONB),
    sa.Column("layout", JSONB),
    sa.Column("source_size", sa.BigInteger),
    sa.Column("link_id", sa.Text),
    sa.Column("uploaded_by", sa.Text),
    # Processes that died with the job in hand: one crash is retried alone, two fail the job.
    sa.Column("crash_count", sa.Integer, nullable=False, server_default="0"),
    sa.UniqueConstraint("tenant_id", "source_key", "source_etag", name="uq_import_jobs_source"),
    sa.CheckConstraint(
        "status IN ('PENDING', 'PROCESSING', 'NEEDS_MAPPING', 'NEEDS_REVIEW', "
        "'WAITING_FOR_REFERENCES', 'COMPLETED', 'FAILED')",
        name="ck_import_jobs_status",
    ),
    sa.Index("ix_import_jobs_tenant_status", "tenant_id", "status"),
    sa.Index("ix_import_jobs_tenant_dataset", "tenant_id", "dataset"),
    sa.Index("ix_import_jobs_link", "tenant_id", "link_id"),
)

# Mappings a person confirmed, by tenant and header signature: the next export of the same
# shape maps itself.
column_mappings = sa.Table(
    "column_mappings",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("signature", sa.Text, primary_key=True),
    sa.Column("header", JSONB, nullable=False),
    sa.Column("mapping", JSONB, nullable=False),
    sa.Column("confirmed_by_job", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
)

# Bulk-loaded by COPY: only the primary key is maintained on insert. A foreign key to
# import_jobs (a trigger per row) and indexes on a row hash and email tripled the cost of a
# load; a resumed run recognises staged rows by their key.
staging_rows = sa.Table(
    "staging_rows",
    metadata,
    sa.Column("job_id", sa.Text, primary_key=True),
    sa.Column("row_number", sa.Integer, primary_key=True),
    sa.Column("email", sa.Text),
    sa.Column("first_name", sa.Text),
    sa.Column("last_name", sa.Text),
    sa.Column("company", sa.Text),
    sa.Column("email_normalized", sa.Text),
    # The fields of every dataset but contacts, as text values by field name.
    sa.Column("data", JSONB),
    sa.Column("extra", JSONB),
    sa.Column("problems", ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("status", sa.Text, nullable=False, server_default="READY"),
    sa.CheckConstraint(
        "status IN ('READY', 'ISSUE', 'DISCARD', 'SUCCESS')", name="ck_staging_rows_status"
    ),
)

issues = sa.Table(
    "issues",
    metadata,
    sa.Column("issue_id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column(
        "job_id", sa.Text, sa.ForeignKey("import_jobs.job_id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("field", sa.Text, nullable=False),
    # What makes two detections the same issue: the row number for row rules, the email for
    # duplicates and existing contacts.
    sa.Column("issue_key", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("resolved", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    sa.Column("resolved_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("job_id", "kind", "field", "issue_key", name="uq_issues_identity"),
    sa.Index("ix_issues_job_id", "job_id", "issue_id"),
)

issue_items = sa.Table(
    "issue_items",
    metadata,
    sa.Column(
        "issue_id",
        sa.BigInteger,
        sa.ForeignKey("issues.issue_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("job_id", sa.Text, nullable=False),
    sa.Column("row_number", sa.Integer, primary_key=True),
    sa.ForeignKeyConstraint(
        ["job_id", "row_number"],
        ["staging_rows.job_id", "staging_rows.row_number"],
        ondelete="CASCADE",
        name="fk_issue_items_row",
    ),
    sa.Index("ix_issue_items_row", "job_id", "row_number"),
)

contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("contact_id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("email_normalized", sa.Text, nullable=False),
    sa.Column("first_name", sa.Text, nullable=False),
    sa.Column("last_name", sa.Text, nullable=False),
    sa.Column("company", sa.Text, nullable=False),
    sa.Column("extra", JSONB),
    sa.Column("job_id", sa.Text),
    sa.Column("source_row", sa.Integer),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    sa.UniqueConstraint("tenant_id", "email_normalized", name="uq_contacts_tenant_email"),
    sa.Index("ix_contacts_job", "job_id"),
)

_COLUMN_TYPES = {
    FieldType.TEXT: sa.Text,
    FieldType.EMAIL: sa.Text,
    FieldType.UUID: sa.Uuid,
    FieldType.INTEGER: sa.BigInteger,
    FieldType.DECIMAL: sa.Numeric,
    FieldType.BOOLEAN: sa.Boolean,
    FieldType.DATE: sa.Date,
    FieldType.TIMESTAMP: sa.DateTime(timezone=True),
    FieldType.JSON: JSONB,
}


def column_type(field_type: FieldType) -> Any:
    """The PostgreSQL type a declared field loads as."""
    return _COLUMN_TYPES[field_type]


def loaded_table(dataset: Dataset) -> sa.Table:
    """A dataset's table (every dataset but contacts, whose table is above): the tenant and
    the natural key as primary key, the fields typed, and what loaded each row."""
    return sa.Table(
        dataset.table,
        metadata,
        sa.Column("tenant_id", sa.Text, primary_key=True),
        *(
            sa.Column(f.name, column_type(f.type), primary_key=f.name == dataset.key)
            for f in dataset.fields
        ),
        sa.Column("content_hash", sa.Text, nullable=False),
        sa.Column("job_id", sa.Text),
        sa.Column("source_row", sa.Integer),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Index(f"ix_{dataset.table}_job", "job_id"),
    )


LOADED_TABLES: dict[str, sa.Table] = {
    d.name: loaded_table(d) for d in DATASETS.values() if not d.staged_in_columns
}

# A reviewer's decision on one staged row: fix some fields, or discard the row. Decisions are
# recorded first and applied by the reviewed_staging asset, latest per row winning.
review_decisions = sa.Table(
    "review_decisions",
    metadata,
    sa.Column("decision_id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("job_id", sa.Text, nullable=False),
    sa.Column("row_number", sa.Integer, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("changes", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    sa.Column("applied_at", sa.DateTime(timezone=True)),
    sa.ForeignKeyConstraint(
        ["job_id", "row_number"],
        ["staging_rows.job_id", "staging_rows.row_number"],
        ondelete="CASCADE",
        name="fk_review_decisions_row",
    ),
    sa.CheckConstraint("action IN ('fix', 'discard')", name="ck_review_decisions_action"),
    sa.Index("ix_review_decisions_row", "job_id", "row_number"),
)

# Decision files taken from reviews/<job_id>/decisions.csv, one row per object version read.
review_files = sa.Table(
    "review_files",
    metadata,
    sa.Column(
        "job_id",
        sa.Text,
        sa.ForeignKey("import_jobs.job_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("etag", sa.Text, primary_key=True),
    sa.Column("decisions", sa.Integer, nullable=False),
    sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
)

# The HTTP service (migration 0003). API keys are stored as the SHA-256 of their secret part.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("secret_sha256", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)

tenant_settings = sa.Table(
    "tenant_settings",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("import_limit", sa.Integer),
    sa.Column("window_seconds", sa.Integer),
    sa.Column("webhook_url", sa.Text),
    sa.Column("webhook_secret", sa.Text),
    sa.Column("embed_origins", JSONB),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    sa.CheckConstraint(
        "(import_limit IS NULL) = (window_seconds IS NULL) "
        "AND coalesce(import_limit, 1) >= 0 AND coalesce(window_seconds, 1) > 0",
        name="ck_tenant_settings_limit",
    ),
)

# One row per import let in under a tenant's limit; the sliding window counts these.
admissions = sa.Table(
    "admissions",
    metadata,
    sa.Column("admission_id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("job_id", sa.Text, unique=True),
    sa.Column("admitted_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    sa.Index("ix_admissions_window", "tenant_id", "admitted_at"),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("content_sha256", sa.Text, nullable=False),
    sa.Column("job_id", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
)

upload_sessions = sa.Table(
    "upload_sessions",
    metadata,
    sa.Column("session_id", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("file_name", sa.Text, nullable=False),
    sa.Column("object_key", sa.Text, nullable=False),
    sa.Column("upload_id", sa.Text, nullable=False),
    sa.Column("part_size", sa.Integer, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("parts", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("job_id", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_upload_sessions_tenant", "tenant_id"),
)

# Runs the service asks for (reprocess, continue after a mapping); request_sensor launches them.
run_requests = sa.Table(
    "run_requests",
    metadata,
    sa.Column("request_id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("job_id", sa.Text, nullable=False),
    sa.Column("job_name", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
)

# The warm lane: small jobs for `ingestion-pipeline worker`, claimed under a lease.
warm_queue = sa.Table(
    "warm_queue",
    metadata,
    sa.Column(
        "job_id", sa.Text, sa.ForeignKey("import_jobs.job_id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("tenant_id", sa.Text, nullable=False),
    # What put it there: an upload, a reprocess, a mapping confirmed, the upload sensor.
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    sa.Column("claimed_by", sa.Text),
    sa.Column("claimed_at", sa.DateTime(timezone=True)),
    sa.Column("lease_until", sa.DateTime(timezone=True)),
    # Claims so far: a job claimed again after a lease ran out was in a process that died.
    sa.Column("claims", sa.Integer, nullable=False, server_default="0"),
    # The Dagster run that has it in hand (failed for the record if its worker died).
    sa.Column("run_id", sa.Text),
    # Queued again while a worker held it (a reprocess asked for during its run): the worker
    # puts it back instead of taking it off when that run ends.
    sa.Column("again", sa.Boolean, nullable=False, server_default=sa.text("false")),
    sa.Index("ix_warm_queue_tenant", "tenant_id", "enqueued_at"),
)

# Written by the trigger import_jobs_webhook_event (migration 0003), sent by the service.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("delivery_id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column(
        "event_id",
        sa.Uuid,
        nullable=False,
        unique=True,
        server_default=sa.text("gen_random_uuid()"),
    ),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("job_id", sa.Text, nullable=False),
    sa.Column("event", sa.Text, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("payload", JSONB, nullable=False),
    sa.Column("state", sa.Text, nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    sa.Column("last_status", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
    sa.Column("delivered_at", sa.DateTime(timezone=True)),
    sa.CheckConstraint(
        "state IN ('pending', 'delivered', 'failed')", name="ck_webhook_deliveries_state"
    ),
    sa.Index(
        "ix_webhook_deliveries_due",
        "next_attempt_at",
        postgresql_where=sa.text("state = 'pending'"),
    ),
    sa.Index("ix_webhook_deliveries_tenant", "tenant_id", "delivery_id"),
)

service_secrets = sa.Table(
    "service_secrets",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
)
