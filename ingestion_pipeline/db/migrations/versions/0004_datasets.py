"""Datasets: a job's dataset, staged values of datasets other than contacts, the waiting status,
upsert counts, and the shop's four tables (customers, products, orders, order_items).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
NOW = sa.text("now()")
STATUSES = (
    "'PENDING', 'PROCESSING', 'NEEDS_MAPPING', 'NEEDS_REVIEW', 'WAITING_FOR_REFERENCES', "
    "'COMPLETED', 'FAILED'"
)


def _loaded_table(name: str, *columns: sa.Column) -> None:
    """A dataset's table: the tenant, the declared fields, what loaded each row and when."""
    op.create_table(
        name,
        sa.Column("tenant_id", sa.Text, primary_key=True),
        *columns,
        sa.Column("content_hash", sa.Text, nullable=False),
        sa.Column("job_id", sa.Text),
        sa.Column("source_row", sa.Integer),
        sa.Column("loaded_at", TS, nullable=False, server_default=NOW),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
    )
    op.create_index(f"ix_{name}_job", name, ["job_id"])


def upgrade() -> None:
    op.add_column(
        "import_jobs", sa.Column("dataset", sa.Text, nullable=False, server_default="contacts")
    )
    for column in ("rows_inserted", "rows_updated", "rows_unchanged"):
        op.add_column(
            "import_jobs", sa.Column(column, sa.Integer, nullable=False, server_default="0")
        )
    op.drop_constraint("ck_import_jobs_status", "import_jobs")
    op.create_check_constraint("ck_import_jobs_status", "import_jobs", f"status IN ({STATUSES})")
    op.create_index("ix_import_jobs_tenant_dataset", "import_jobs", ["tenant_id", "dataset"])
    op.add_column("staging_rows", sa.Column("data", JSONB))

    _loaded_table(
        "customers",
        sa.Column("customer_id", sa.Uuid, primary_key=True),
        sa.Column("name", sa.Text),
        sa.Column("email", sa.Text),
        sa.Column("metadata", JSONB),
        sa.Column("created_at", TS),
    )
    _loaded_table(
        "products",
        sa.Column("product_id", sa.Uuid, primary_key=True),
        sa.Column("sku", sa.Text),
        sa.Column("name", sa.Text),
        sa.Column("price", sa.Numeric),
        sa.Column("category_id", sa.Uuid),
        sa.Column("active", sa.Boolean),
        sa.Column("created_at", TS),
    )
    _loaded_table(
        "orders",
        sa.Column("order_id", sa.Uuid, primary_key=True),
        sa.Column("external_order_id", sa.Text),
        sa.Column("customer_id", sa.Uuid),
        sa.Column("customer_name", sa.Text),
        sa.Column("customer_email", sa.Text),
        sa.Column("total_amount", sa.Numeric),
        sa.Column("currency", sa.Text),
        sa.Column("order_status", sa.Text),
        sa.Column("order_date", TS),
        sa.Column("raw_payload", JSONB),
        sa.Column("created_at", TS),
    )
    _loaded_table(
        "order_items",
        sa.Column("order_item_id", sa.Uuid, primary_key=True),
        sa.Column("order_id", sa.Uuid),
        sa.Column("product_id", sa.Uuid),
        sa.Column("quantity", sa.BigInteger),
        sa.Column("unit_price", sa.Numeric),
        sa.Column("line_total", sa.Numeric),
    )


def downgrade() -> None:
    for name in ("order_items", "orders", "products", "customers"):
        op.drop_table(name)
    op.drop_column("staging_rows", "data")
    op.drop_index("ix_import_jobs_tenant_dataset", "import_jobs")
    op.drop_constraint("ck_import_jobs_status", "import_jobs")
    op.create_check_constraint(
        "ck_import_jobs_status",
        "import_jobs",
        "status IN ('PENDING', 'PROCESSING', 'NEEDS_MAPPING', 'NEEDS_REVIEW', 'COMPLETED', "
        "'FAILED')",
    )
    for column in ("rows_updated", "rows_unchanged", "rows_inserted", "dataset"):
        op.drop_column("import_jobs", column)
