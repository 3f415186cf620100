"""Review decisions and the decision files they came from.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
NOW = sa.text("now()")


def upgrade() -> None:
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
    op.create_index("ix_review_decisions_pending", "review_decisions", ["job_id", "applied_at"])
    op.create_table(
        "review_files",
        sa.Column("job_id", sa.Text, sa.ForeignKey("import_jobs.job_id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("etag", sa.Text, primary_key=True),
        sa.Column("decisions", sa.Integer, nullable=False),
        sa.Column("loaded_at", TS, nullable=False, server_default=NOW),
    )


def downgrade() -> None:
    op.drop_table("review_files")
    op.drop_table("review_decisions")
