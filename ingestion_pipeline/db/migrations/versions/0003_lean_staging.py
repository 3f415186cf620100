"""Lean staging: keep only the primary key on the bulk-loaded table.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("staging_rows_job_id_fkey", "staging_rows", type_="foreignkey")
    op.drop_constraint("uq_staging_rows_hash", "staging_rows", type_="unique")
    op.drop_index("ix_staging_rows_job_email", table_name="staging_rows")


def downgrade() -> None:
    op.create_index("ix_staging_rows_job_email", "staging_rows", ["job_id", "email_normalized"])
    op.create_unique_constraint("uq_staging_rows_hash", "staging_rows", ["job_id", "row_hash"])
    op.create_foreign_key(
        "staging_rows_job_id_fkey", "staging_rows", "import_jobs", ["job_id"], ["job_id"],
        ondelete="CASCADE",
    )
