"""Import links: the link (and user label) a job's file came through, and the origins that may
embed a tenant's import pages.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("import_jobs", sa.Column("link_id", sa.Text))
    op.add_column("import_jobs", sa.Column("uploaded_by", sa.Text))
    op.create_index("ix_import_jobs_link", "import_jobs", ["tenant_id", "link_id"])
    op.add_column("tenant_settings", sa.Column("embed_origins", JSONB))


def downgrade() -> None:
    op.drop_column("tenant_settings", "embed_origins")
    op.drop_index("ix_import_jobs_link", "import_jobs")
    op.drop_column("import_jobs", "uploaded_by")
    op.drop_column("import_jobs", "link_id")
