"""warm_queue and import_jobs.source_size: the small jobs that `ingestion-pipeline worker` processes run in-process, each
claimed with SKIP LOCKED under a lease (what a dead worker held goes to another when it ends).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "warm_queue",
        sa.Column(
            "job_id",
            sa.Text,
            sa.ForeignKey("import_jobs.job_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column(
            "enqueued_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
        ),
        sa.Column("claimed_by", sa.Text),
        sa.Column("claimed_at", sa.DateTime(timezone=True)),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("claims", sa.Integer, nullable=False, server_default="0"),
        sa.Column("run_id", sa.Text),
        sa.Column("again", sa.Boolean, nullable=False, server_default=sa.text("false")),
    )
    op.create_index("ix_warm_queue_tenant", "warm_queue", ["tenant_id", "enqueued_at"])
    # The stored object's size: the lane of a job not read yet (a mapping confirmed).
    op.add_column("import_jobs", sa.Column("source_size", sa.BigInteger))


def downgrade() -> None:
    op.drop_column("import_jobs", "source_size")
    op.drop_table("warm_queue")
