"""Column mapping: the NEEDS_MAPPING status, each job's mapping and file layout, and the
mappings people confirmed, remembered per tenant and header signature.

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
OLD = "status IN ('PENDING', 'PROCESSING', 'NEEDS_REVIEW', 'COMPLETED', 'FAILED')"
NEW = "status IN ('PENDING', 'PROCESSING', 'NEEDS_MAPPING', 'NEEDS_REVIEW', 'COMPLETED', 'FAILED')"


def upgrade() -> None:
    op.drop_constraint("ck_import_jobs_status", "import_jobs", type_="check")
    op.create_check_constraint("ck_import_jobs_status", "import_jobs", NEW)
    op.add_column("import_jobs", sa.Column("mapping", JSONB))
    op.add_column("import_jobs", sa.Column("layout", JSONB))
    op.create_table(
        "column_mappings",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("signature", sa.Text, primary_key=True),
        sa.Column("header", JSONB, nullable=False),
        sa.Column("mapping", JSONB, nullable=False),
        sa.Column("confirmed_by_job", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
    )


def downgrade() -> None:
    op.drop_table("column_mappings")
    op.drop_column("import_jobs", "layout")
    op.drop_column("import_jobs", "mapping")
    op.drop_constraint("ck_import_jobs_status", "import_jobs", type_="check")
    op.create_check_constraint("ck_import_jobs_status", "import_jobs", OLD)
