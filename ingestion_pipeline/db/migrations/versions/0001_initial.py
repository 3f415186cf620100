"""Initial schema: import jobs, staging, issues, review decisions, contacts.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "import_jobs",
        sa.Column("job_id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("source_key", sa.Text, nullable=False),
        sa.Column("source_etag", sa.Text, nullable=False),
        sa.Column("file_name", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="PENDING"),
        sa.Column("total_rows", sa.Integer),
        sa.Column("processed_rows", sa.Integer, nullable=False, server_default="0"),
        sa.Column("issue_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("contacts_created", sa.Integer, nullable=False, server_default="0"),
        sa.Column("encoding", sa.Text),
        sa.Column("delimiter", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
        sa.Column("started_at", TS),
        sa.Column("finished_at", TS),
        sa.UniqueConstraint("tenant_id", "source_key", "source_etag", name="uq_import_jobs_source"),
        sa.CheckConstraint(
            "status IN ('PENDING', 'PROCESSING', 'NEEDS_REVIEW', 'COMPLETED', 'FAILED')",
            name="ck_import_jobs_status",
        ),
    )
    op.create_index("ix_import_jobs_tenant_status", "import_jobs", ["tenant_id", "status"])

    # Bulk-loaded by COPY: only the primary key is maintained (see tables.py).
    op.create_table(
        "staging_rows",
        sa.Column("job_id", sa.Text, primary_key=True),
        sa.Column("row_number", sa.Integer, primary_key=True),
        sa.Column("row_hash", sa.BigInteger, nullable=False),
        sa.Column("email", sa.Text),
        sa.Column("first_name", sa.Text),
        sa.Column("last_name", sa.Text),
        sa.Column("company", sa.Text),
        sa.Column("email_normalized", sa.Text),
        sa.Column("extra", JSONB),
        sa.Column("problems", ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("status", sa.Text, nullable=False, server_default="READY"),
        sa.CheckConstraint(
            "status IN ('READY', 'ISSUE', 'DISCARD', 'SUCCESS')", name="ck_staging_rows_status"
        ),
    )

    op.create_table(
        "issues",
        sa.Column("issue_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("job_id", sa.Text, sa.ForeignKey("import_jobs.job_id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("field", sa.Text, nullable=False),
        sa.Column("issue_key", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("resolved", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("resolved_at", TS),
        sa.UniqueConstraint("job_id", "kind", "field", "issue_key", name="uq_issues_identity"),
    )

    op.create_table(
        "issue_items",
        sa.Column("issue_id", sa.BigInteger, sa.ForeignKey("issues.issue_id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("job_id", sa.Text, nullable=False),
        sa.Column("row_number", sa.Integer, primary_key=True),
        sa.ForeignKeyConstraint(
            ["job_id", "row_number"],
            ["staging_rows.job_id", "staging_rows.row_number"],
            ondelete="CASCADE",
            name="fk_issue_items_row",
        ),
    )
    op.create_index("ix_issue_items_row", "issue_items", ["job_id", "row_number"])

    op.create_table(
        "contacts",
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
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.UniqueConstraint("tenant_id", "email_normalized", name="uq_contacts_tenant_email"),
    )
    op.create_index("ix_contacts_job", "contacts", ["job_id"])

    op.create_table(
        "review_decisions",
        sa.Column("decision_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("job_id", sa.Text, nullable=False),
        sa.Column("row_number", sa.Integer, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("changes", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("applied_at", TS),
        sa.ForeignKeyConstraint(
            ["job_id", "row_number"],
            ["staging_rows.job_id", "staging_rows.row_number"],
            ondelete="CASCADE",
            name="fk_review_decisions_row",
        ),
        sa.CheckConstraint("action IN ('fix', 'discard')", name="ck_review_decisions_action"),
    )
    op.create_index("ix_review_decisions_row", "review_decisions", ["job_id", "row_number"])
    op.create_table(
        "review_files",
        sa.Column("job_id", sa.Text, sa.ForeignKey("import_jobs.job_id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("etag", sa.Text, primary_key=True),
        sa.Column("decisions", sa.Integer, nullable=False),
        sa.Column("loaded_at", TS, nullable=False, server_default=NOW),
    )


def downgrade() -> None:
    for table in (
        "review_files", "review_decisions", "contacts", "issue_items", "issues", "staging_rows",
        "import_jobs",
    ):
        op.drop_table(table)
