"""The HTTP service: API keys, tenant settings (import limit, webhook), admissions under the
limit, idempotent uploads, resumable upload sessions, run requests for the sensors, webhook
events written by a trigger on every status change, and the service's signing secret.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
NOW = sa.text("now()")

# A webhook event for every job that reaches a status an application waits for, written in
# the transaction that changes the status, whichever writer (run, batch, CLI, failure sensor)
# changes it: at least once, never lost between a commit and a send.
JOB_EVENT_FUNCTION = """
CREATE FUNCTION import_job_webhook_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IN ('COMPLETED', 'NEEDS_REVIEW', 'NEEDS_MAPPING', 'FAILED') THEN
        INSERT INTO webhook_deliveries (tenant_id, job_id, event, url, payload)
        SELECT NEW.tenant_id, NEW.job_id, 'job.' || lower(NEW.status), t.webhook_url,
               jsonb_build_object(
                   'type', 'job.' || lower(NEW.status),
                   'tenant', NEW.tenant_id,
                   'job_id', NEW.job_id,
                   'status', NEW.status,
                   'file', NEW.file_name,
                   'total_rows', coalesce(NEW.total_rows, 0),
                   'processed_rows', NEW.processed_rows,
                   'issue_count', NEW.issue_count,
                   'contacts_created', NEW.contacts_created,
                   'error', NEW.error,
                   'occurred_at', now())
        FROM tenant_settings t
        WHERE t.tenant_id = NEW.tenant_id AND t.webhook_url IS NOT NULL;
    END IF;
    RETURN NEW;
END $$
"""
JOB_EVENT_TRIGGER = """
CREATE TRIGGER import_jobs_webhook_event
AFTER UPDATE OF status ON import_jobs
FOR EACH ROW WHEN (NEW.status IS DISTINCT FROM OLD.status)
EXECUTE FUNCTION import_job_webhook_event()
"""


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False, server_default=""),
        sa.Column("secret_sha256", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("revoked_at", TS),
    )
    op.create_table(
        "tenant_settings",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("import_limit", sa.Integer),
        sa.Column("window_seconds", sa.Integer),
        sa.Column("webhook_url", sa.Text),
        sa.Column("webhook_secret", sa.Text),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
        sa.CheckConstraint(
            "(import_limit IS NULL) = (window_seconds IS NULL) "
            "AND coalesce(import_limit, 1) >= 0 AND coalesce(window_seconds, 1) > 0",
            name="ck_tenant_settings_limit",
        ),
    )
    op.create_table(
        "admissions",
        sa.Column("admission_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("job_id", sa.Text, unique=True),
        sa.Column("admitted_at", TS, nullable=False, server_default=NOW),
        sa.Index("ix_admissions_window", "tenant_id", "admitted_at"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("content_sha256", sa.Text, nullable=False),
        sa.Column("job_id", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
    )
    op.create_table(
        "upload_sessions",
        sa.Column("session_id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("file_name", sa.Text, nullable=False),
        sa.Column("object_key", sa.Text, nullable=False),
        sa.Column("upload_id", sa.Text, nullable=False),
        sa.Column("part_size", sa.Integer, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("parts", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("job_id", sa.Text),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("expires_at", TS, nullable=False),
        sa.Index("ix_upload_sessions_tenant", "tenant_id"),
    )
    op.create_table(
        "run_requests",
        sa.Column("request_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("job_id", sa.Text, nullable=False),
        sa.Column("job_name", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("requested_at", TS, nullable=False, server_default=NOW),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("delivery_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "event_id", sa.Uuid, nullable=False, unique=True, server_default=sa.text("gen_random_uuid()")
        ),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("job_id", sa.Text, nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("state", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TS, nullable=False, server_default=NOW),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("delivered_at", TS),
        sa.CheckConstraint(
            "state IN ('pending', 'delivered', 'failed')", name="ck_webhook_deliveries_state"
        ),
        sa.Index("ix_webhook_deliveries_due", "next_attempt_at", postgresql_where=sa.text("state = 'pending'")),
        sa.Index("ix_webhook_deliveries_tenant", "tenant_id", "delivery_id"),
    )
    op.create_table(
        "service_secrets",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
    )
    # The API pages a job's issues in id order.
    op.create_index("ix_issues_job_id", "issues", ["job_id", "issue_id"])
    op.execute(JOB_EVENT_FUNCTION)
    op.execute(JOB_EVENT_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER import_jobs_webhook_event ON import_jobs")
    op.execute("DROP FUNCTION import_job_webhook_event()")
    op.drop_index("ix_issues_job_id", "issues")
    for table in (
        "service_secrets",
        "webhook_deliveries",
        "run_requests",
        "upload_sessions",
        "idempotency_keys",
        "admissions",
        "tenant_settings",
        "api_keys",
    ):
        op.drop_table(table)
