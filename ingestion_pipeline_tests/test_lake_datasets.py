"""Every dataset in the lake: the shop's four tables current after every upsert, each equal to
its PostgreSQL table for each tenant when read by pyiceberg and by DuckDB, written once per job
whatever reruns, backfills or crashes; declared types as Iceberg types, and schema evolution."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from dagster import AssetKey
from pyiceberg.expressions import EqualTo
from pyiceberg.table import Transaction

from ingestion_pipeline.datasets import DATASETS
from ingestion_pipeline.db.tables import LOADED_TABLES
from ingestion_pipeline.lake import (
    JOB_PROPERTY,
    LAKE_TABLES,
    LakeSchemaError,
    LakeTable,
    ensure_table,
    write_job,
)
from ingestion_pipeline_tests.helpers import (
    definitions,
    duckdb_rows,
    import_bytes,
    rows,
    run_job,
    run_sensors,
)

SHOP_FILES = Path(__file__).resolve().parents[1] / "samples" / "shop"
SHOP = ("customers", "products", "orders", "order_items")
RENAMED = "2722a056-935e-504f-a656-888224aeb005"  # Jonas Becker in the sample
ADDED = str(uuid.uuid5(uuid.NAMESPACE_DNS, "lena.park"))


def shop_file(dataset: str) -> bytes:
    return (SHOP_FILES / dataset / f"{dataset}_2025.ndjson").read_bytes()


def customers_v2() -> bytes:
    """The customers file again: one customer renamed, one added."""
    records = [json.loads(line) for line in shop_file("customers").decode().splitlines()]
    for record in records:
        if record["customer_id"] == RENAMED:
            record["name"] = "Jonas Becker-Schmidt"
    records.append(
        {"customer_id": ADDED, "name": "Lena Park", "email": "lena@example.kr", "metadata": None}
    )
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def canonical(value: Any) -> Any:
    """A value as both sides can compare it: UUIDs as text, instants in UTC."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc)
    return value


def postgres_rows(engine, dataset: str, tenant: str) -> list[tuple]:
    """The dataset's PostgreSQL table for a tenant, JSON as its text, in key order."""
    table = LOADED_TABLES[dataset]
    columns = [
        sa.cast(c, sa.Text).label(c.name) if c.type.__class__.__name__ == "JSONB" else c
        for c in table.columns
    ]
    query = sa.select(*columns).where(table.c.tenant_id == tenant)
    with engine.connect() as conn:
        found = [tuple(canonical(v) for v in row) for row in conn.execute(query)]
    return sorted(found, key=lambda r: str(r[1]))


def iceberg_rows(catalog, dataset: str, tenant: str) -> list[tuple]:
    """The lake table's rows of a tenant read by pyiceberg, in the PostgreSQL table's columns."""
    table = catalog.load_table(LAKE_TABLES[dataset].name)
    names = [c.name for c in LOADED_TABLES[dataset].columns]
    data = table.scan(row_filter=EqualTo("tenant_id", tenant), selected_fields=tuple(names))
    found = [tuple(canonical(r[n]) for n in names) for r in data.to_arrow().to_pylist()]
    return sorted(found, key=lambda r: str(r[1]))


def duckdb_table_rows(catalog, dataset: str, tenant: str) -> list[tuple]:
    """The same read by DuckDB's iceberg_scan."""
    table = catalog.load_table(LAKE_TABLES[dataset].name)
    names = ", ".join(c.name for c in LOADED_TABLES[dataset].columns)
    found = duckdb_rows(
        table.metadata_location,
        f"SELECT {names} FROM CONTACTS WHERE tenant_id = '{tenant}'",
    )
    return sorted((tuple(canonical(v) for v in r) for r in found), key=lambda r: str(r[1]))


def assert_lake_reads_as_postgres(engine, catalog, tenants: tuple[str, ...]) -> None:
    for dataset in SHOP:
        for tenant in tenants:
            expected = postgres_rows(engine, dataset, tenant)
            assert expected, (dataset, tenant)
            assert iceberg_rows(catalog, dataset, tenant) == expected, (dataset, tenant)
            assert duckdb_table_rows(catalog, dataset, tenant) == expected, (dataset, tenant)


def import_shop_through_the_sensors(engine, instance, resources, local_zone, tenants) -> None:
    for tenant in tenants:
        for dataset in reversed(SHOP):  # children first: each waits for its parents
            local_zone.write(
                f"uploads/{tenant}/{dataset}/{dataset}_2025.ndjson", shop_file(dataset)
            )
    for _ in range(10):
        run_sensors(instance, resources)
        statuses = rows(engine, "SELECT status FROM import_jobs")
        if len(statuses) == 4 * len(tenants) and {s for (s,) in statuses} == {"COMPLETED"}:
            break
    assert rows(engine, "SELECT DISTINCT status FROM import_jobs") == [("COMPLETED",)]


def snapshot_counts(catalog) -> dict[str, int]:
    return {d: len(catalog.load_table(LAKE_TABLES[d].name).snapshots()) for d in SHOP}


def test_the_shop_in_the_lake_reads_as_its_postgresql_tables_after_an_upsert(
    engine, instance, resources, local_zone, lake
):
    tenants = ("shop", "other")  # the same files: the same keys under two tenants
    import_shop_through_the_sensors(engine, instance, resources, local_zone, tenants)
    assert_lake_reads_as_postgres(engine, lake, tenants)

    result, v2 = import_bytes(
        engine, instance, resources, local_zone, "shop", "v2.ndjson", customers_v2(), "customers"
    )
    assert (v2.status, v2.rows_inserted, v2.rows_updated) == ("COMPLETED", 1, 1)
    [event] = [
        e for e in result.get_asset_materialization_events()
        if e.asset_key == AssetKey("customers_lake")
    ]  # fmt: skip
    written = {k: v.value for k, v in event.materialization.metadata.items()}
    assert (written["rows_written"], written["rows_replaced"]) == (2, 1)
    assert_lake_reads_as_postgres(engine, lake, tenants)

    customers = lake.load_table(LAKE_TABLES["customers"].name)
    names = customers.scan(row_filter=EqualTo("tenant_id", "shop")).to_arrow()["name"]
    assert names.to_pylist().count("Jonas Becker-Schmidt") == 1
    assert "Jonas Becker" not in names.to_pylist() and "Lena Park" in names.to_pylist()
    other = customers.scan(row_filter=EqualTo("tenant_id", "other")).to_arrow()
    assert "Jonas Becker" in other["name"].to_pylist() and other.num_rows == 4
    # The upsert is one snapshot marked with its job, replacing the files that held the key.
    last = customers.current_snapshot()
    assert last.summary[JOB_PROPERTY] == v2.job_id
    assert last.summary.operation.value == "overwrite"
    assert int(last.summary["deleted-data-files"]) >= 1
    assert len(customers.snapshots()) == 3  # one per customers job: shop, other, v2


def test_rerun_and_backfill_of_the_lake_assets_add_no_snapshot(
    engine, instance, resources, local_zone, lake
):
    import_shop_through_the_sensors(engine, instance, resources, local_zone, ("shop",))
    before = snapshot_counts(lake)
    assert before == dict.fromkeys(SHOP, 1)
    defs = definitions(resources)
    for dataset, job_id in rows(engine, "SELECT dataset, job_id FROM import_jobs"):
        assert run_job(instance, resources, job_id, "shop").success  # the whole job again
        lake_only = defs.resolve_job_def(f"import_{dataset}_job").get_subset(
            asset_selection={AssetKey(f"{DATASETS[dataset].table}_lake")}
        )
        again = lake_only.execute_in_process(partition_key=job_id, instance=instance)
        [event] = again.get_asset_materialization_events()
        assert event.materialization.metadata["already_in_lake"].value is True
    assert snapshot_counts(lake) == before
    assert_lake_reads_as_postgres(engine, lake, ("shop",))


def test_a_crash_before_the_commit_leaves_the_table_as_it_was_and_the_rerun_writes_once(
    engine, instance, resources, local_zone, lake, monkeypatch, tmp_path
):
    _, v1 = import_bytes(
        engine, instance, resources, local_zone, "shop", "c.ndjson", shop_file("customers"),
        "customers",
    )  # fmt: skip
    monkeypatch.delenv("LAKE_WAREHOUSE")  # the upsert without a lake; its lake write by hand
    _, v2 = import_bytes(
        engine, instance, resources, local_zone, "shop", "v2.ndjson", customers_v2(), "customers"
    )
    target = LAKE_TABLES["customers"]
    table = ensure_table(lake, target)
    as_it_was = (table.current_snapshot().snapshot_id, table.scan().to_arrow().sort_by("name"))
    files_before = set((tmp_path / "warehouse").rglob("*.parquet"))

    def crash(self):
        raise OSError("killed after the data files were written")

    real_commit = Transaction.commit_transaction
    monkeypatch.setattr(Transaction, "commit_transaction", crash)
    with pytest.raises(OSError):
        write_job(engine, target, table, "shop", v2.job_id, chunk_size=1)
    assert set((tmp_path / "warehouse").rglob("*.parquet")) > files_before  # written, unused
    table = lake.load_table(target.name)
    assert table.current_snapshot().snapshot_id == as_it_was[0]
    assert table.scan().to_arrow().sort_by("name").equals(as_it_was[1])

    monkeypatch.setattr(Transaction, "commit_transaction", real_commit)
    result = write_job(engine, target, table, "shop", v2.job_id, chunk_size=1)
    assert (result.rows, result.replaced, result.already) == (2, 1, False)
    assert write_job(engine, target, table, "shop", v2.job_id, chunk_size=1).already
    table = lake.load_table(target.name)
    assert [s.summary[JOB_PROPERTY] for s in table.snapshots()] == [v1.job_id, v2.job_id]
    assert iceberg_rows(lake, "customers", "shop") == postgres_rows(engine, "customers", "shop")


def test_declared_types_are_iceberg_types_partitioned_by_tenant_keyed_by_the_natural_key(
    engine, instance, resources, local_zone, lake
):
    import_shop_through_the_sensors(engine, instance, resources, local_zone, ("shop",))
    orders = lake.load_table(LAKE_TABLES["orders"].name)
    types = {f.name: str(f.field_type) for f in orders.schema().fields}
    assert types["order_id"] == "uuid" and types["customer_id"] == "uuid"
    assert types["total_amount"] == "decimal(38, 2)"
    assert types["order_date"] == "timestamptz" and types["loaded_at"] == "timestamptz"
    assert types["raw_payload"] == "string" and types["job_id"] == "string"
    products = lake.load_table(LAKE_TABLES["products"].name)
    assert str(products.schema().find_field("active").field_type) == "boolean"
    assert [f.name for f in orders.spec().fields] == ["tenant_id"]
    assert orders.schema().identifier_field_names() == {"tenant_id", "order_id"}
    first = orders.scan(row_filter=EqualTo("external_order_id", "SHOP-1001")).to_arrow()
    assert first["total_amount"].to_pylist() == [Decimal("54.80")]
    assert json.loads(first["raw_payload"][0].as_py()) == {"channel": "web", "items": 2}
    assert first["job_id"][0].as_py() and first["loaded_at"][0].as_py()


def evolved(dataset: str, **changes: Any) -> LakeTable:
    """The dataset's lake table as if its declaration had changed (a field added or retyped)."""
    declared = DATASETS[dataset]
    metadata = sa.MetaData()
    source = LOADED_TABLES[dataset].to_metadata(metadata)
    fields = list(declared.fields)
    for name, field in changes.items():
        if name not in source.c:
            source.append_column(sa.Column(name, sa.Text))
        fields = [f for f in fields if f.name != name] + [field]
    return LakeTable(dataclasses.replace(declared, fields=tuple(fields)), source)


def test_a_field_the_declaration_gains_evolves_the_table_by_name(lake):
    from ingestion_pipeline.datasets import Field

    created = ensure_table(lake, LAKE_TABLES["customers"])
    grown = ensure_table(lake, evolved("customers", loyalty_tier=Field("loyalty_tier")))
    assert grown.metadata.table_uuid == created.metadata.table_uuid
    assert "loyalty_tier" in {f.name for f in grown.schema().fields}
    assert grown.schema().identifier_field_names() == {"tenant_id", "customer_id"}


def test_a_type_the_lake_cannot_evolve_is_refused_naming_the_field(lake):
    from ingestion_pipeline.datasets import Field, FieldType

    ensure_table(lake, LAKE_TABLES["order_items"])
    narrowed = evolved(
        "order_items", unit_price=Field("unit_price", FieldType.DECIMAL, required=True, scale=1)
    )
    with pytest.raises(LakeSchemaError, match="'unit_price' is decimal\\(38, 2\\) in the lake"):
        ensure_table(lake, narrowed)
    table = lake.load_table(LAKE_TABLES["order_items"].name)
    assert str(table.schema().find_field("unit_price").field_type) == "decimal(38, 2)"
