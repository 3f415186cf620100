"""A shop's data, one file per entity: customers and products, their orders, the orders' items.

Orders reference customers, order items reference orders and products; the files may arrive in
any order (see README, "Datasets").
"""

from ingestion_pipeline.datasets.declaration import (
    Dataset,
    Field,
    FieldType,
    MergePolicy,
    Normalization,
    Reference,
)

UUID = FieldType.UUID
LOWER = Normalization.LOWER

CUSTOMERS = Dataset(
    name="customers",
    description="A shop's customers.",
    fields=(
        Field("customer_id", UUID, required=True, normalization=LOWER, aliases=("id",)),
        Field("name", required=True, max_length=255, aliases=("customer_name", "full_name")),
        Field("email", FieldType.EMAIL, required=True, normalization=LOWER),
        Field("metadata", FieldType.JSON),
        Field("created_at", FieldType.TIMESTAMP),
    ),
    key="customer_id",
    table="customers",
    merge=MergePolicy.UPSERT,
)

PRODUCTS = Dataset(
    name="products",
    description="The shop's catalogue.",
    fields=(
        Field("product_id", UUID, required=True, normalization=LOWER, aliases=("id",)),
        Field("sku", required=True, max_length=64, aliases=("article_number", "item_number")),
        Field("name", required=True, max_length=255, aliases=("product_name", "title")),
        Field("price", FieldType.DECIMAL, required=True, aliases=("unit_price",), scale=2),
        Field("category_id", UUID, normalization=LOWER),
        Field("active", FieldType.BOOLEAN, aliases=("is_active", "enabled")),
        Field("created_at", FieldType.TIMESTAMP),
    ),
    key="product_id",
    table="products",
    merge=MergePolicy.UPSERT,
)

ORDERS = Dataset(
    name="orders",
    description="Orders, each of one customer.",
    fields=(
        Field("order_id", UUID, required=True, normalization=LOWER, aliases=("id",)),
        Field("external_order_id", max_length=128, aliases=("order_number", "external_id")),
        Field("customer_id", UUID, required=True, normalization=LOWER),
        Field("customer_name", max_length=255),
        Field("customer_email", FieldType.EMAIL, normalization=LOWER),
        Field("total_amount", FieldType.DECIMAL, required=True, aliases=("total",), scale=2),
        Field("currency", required=True, max_length=3, normalization=Normalization.UPPER),
        Field(
            "order_status",
            required=True,
            allowed=("pending", "paid", "shipped", "delivered", "cancelled", "refunded"),
            normalization=LOWER,
            aliases=("status",),
        ),
        Field("order_date", FieldType.TIMESTAMP, required=True, aliases=("ordered_at",)),
        Field("raw_payload", FieldType.JSON),
        Field("created_at", FieldType.TIMESTAMP),
    ),
    key="order_id",
    table="orders",
    references=(Reference("customer_id", "customers"),),
    merge=MergePolicy.UPSERT,
)

ORDER_ITEMS = Dataset(
    name="order_items",
    description="The lines of each order.",
    fields=(
        Field("order_item_id", UUID, required=True, normalization=LOWER, aliases=("id",)),
        Field("order_id", UUID, required=True, normalization=LOWER),
        Field("product_id", UUID, required=True, normalization=LOWER),
        Field("quantity", FieldType.INTEGER, required=True, aliases=("qty",)),
        Field("unit_price", FieldType.DECIMAL, required=True, scale=2),
        Field("line_total", FieldType.DECIMAL, required=True, scale=2),
    ),
    key="order_item_id",
    table="order_items",
    references=(Reference("order_id", "orders"), Reference("product_id", "products")),
    merge=MergePolicy.UPSERT,
)

SHOP = (CUSTOMERS, PRODUCTS, ORDERS, ORDER_ITEMS)
