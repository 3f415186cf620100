"""import_jobs.crash_count: how often a process died while it had the job in hand, so that a
file that crashes its reader is retried once alone and then failed, never retried forever.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "import_jobs",
        sa.Column("crash_count", sa.Integer, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_column("import_jobs", "crash_count")
