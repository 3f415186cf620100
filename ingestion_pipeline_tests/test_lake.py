"""The lake: completed imports in an Iceberg table, once per job, read by pyiceberg and by
DuckDB; the PostgreSQL load untouched when the lake fails or is off."""

from __future__ import annotations

import pytest
from dagster import AssetKey
from pyiceberg.table import Transaction

from ingestion_pipeline import lake as lake_module
from ingestion_pipeline.lake import CONTACTS_TABLE, LAKE_TABLES, ensure_table, write_job
from ingestion_pipeline_tests.helpers import (
    csv_text,
    definitions,
    duckdb_rows,
    import_bytes,
    job,
    rows,
    run_job,
)

ACME = csv_text("ann@acme.io,Ann,Lee,Acme", "bob@acme.io,Bob,Ray,Acme")
BETA = csv_text("cy@beta.io,Cy,Day,Beta")


def contacts_table(lake):
    return ensure_table(lake, LAKE_TABLES["contacts"])


def append_job(engine, table, job_id: str, chunk_size: int, tenant: str = "acme"):
    return write_job(engine, LAKE_TABLES["contacts"], table, tenant, job_id, chunk_size)


def test_completed_imports_land_once_readable_by_pyiceberg_and_duckdb(
    engine, instance, resources, local_zone, lake
):
    for tenant, content in (("acme", ACME), ("beta", BETA)):
        result, row = import_bytes(
            engine, instance, resources, local_zone, tenant, "c.csv", content
        )
        assert result.success and row.status == "COMPLETED"
        [event] = [
            e for e in result.get_asset_materialization_events()
            if e.asset_key == AssetKey("contacts_lake")
        ]  # fmt: skip
        assert event.materialization.metadata["rows_written"].value == row.contacts_created
    table = lake.load_table(CONTACTS_TABLE)
    data = table.scan().to_arrow()
    assert sorted(data["email"].to_pylist()) == ["ann@acme.io", "bob@acme.io", "cy@beta.io"]
    assert str(data.schema.field("created_at").type) == "timestamp[us, tz=UTC]"
    assert data.schema.field("email").nullable is False
    assert [f.name for f in table.spec().fields] == ["tenant_id"]
    assert sorted(rows(engine, "SELECT job_id, email FROM contacts")) == sorted(
        zip(data["job_id"].to_pylist(), data["email"].to_pylist(), strict=True)
    )
    assert duckdb_rows(
        table.metadata_location,
        "SELECT tenant_id, count(*), min(source_row) FROM CONTACTS GROUP BY 1 ORDER BY 1",
    ) == [("acme", 2, 1), ("beta", 1, 1)]


def test_a_job_written_in_many_blocks_is_one_snapshot(
    engine, instance, resources, local_zone, lake, monkeypatch
):
    monkeypatch.setattr(lake_module, "MIN_BLOCK_BYTES", 256)  # a few rows per block
    content = csv_text(*(f"u{i}@acme.io,U{i},L{i},Acme" for i in range(6)))
    result, row = import_bytes(engine, instance, resources, local_zone, "acme", "c.csv", content)
    assert result.success and row.status == "COMPLETED"
    table = lake.load_table(CONTACTS_TABLE)
    [snapshot] = table.snapshots()
    assert snapshot.summary["ingestion.job_id"] == row.job_id
    assert int(snapshot.summary["added-records"]) == 6
    assert int(snapshot.summary["added-data-files"]) >= 2  # the blocks, all in the one snapshot
    assert sorted(table.scan().to_arrow()["source_row"].to_pylist()) == [1, 2, 3, 4, 5, 6]


def test_a_rerun_or_backfill_of_the_lake_asset_adds_nothing(
    engine, instance, resources, local_zone, lake
):
    _, row = import_bytes(engine, instance, resources, local_zone, "acme", "c.csv", ACME)
    for _ in range(2):  # the whole job again, then the lake asset alone
        assert run_job(instance, resources, row.job_id, "acme").success
    lake_only = (
        definitions(resources)
        .resolve_job_def("import_job")
        .get_subset(asset_selection={AssetKey("contacts_lake")})
    )
    again = lake_only.execute_in_process(partition_key=row.job_id, instance=instance)
    [event] = again.get_asset_materialization_events()
    assert event.materialization.metadata["already_in_lake"].value is True
    assert lake.load_table(CONTACTS_TABLE).scan().to_arrow().num_rows == 2


def test_a_crash_between_data_files_and_commit_leaves_the_job_once_after_a_rerun(
    engine, instance, resources, local_zone, lake, monkeypatch, tmp_path
):
    monkeypatch.delenv("LAKE_WAREHOUSE")  # the import without a lake; the lake by hand below
    _, row = import_bytes(engine, instance, resources, local_zone, "acme", "c.csv", ACME)
    table = contacts_table(lake)
    real_commit = Transaction.commit_transaction

    def crash(self):
        raise OSError("killed after the data files were written")

    monkeypatch.setattr(Transaction, "commit_transaction", crash)
    with pytest.raises(OSError):
        append_job(engine, table, row.job_id, chunk_size=1)
    written = list((tmp_path / "warehouse").rglob("*.parquet"))
    assert written  # data files exist, committed nowhere
    assert lake.load_table(CONTACTS_TABLE).scan().to_arrow().num_rows == 0

    monkeypatch.setattr(Transaction, "commit_transaction", real_commit)
    result = append_job(engine, lake.load_table(CONTACTS_TABLE), row.job_id, chunk_size=1)
    assert (result.rows, result.already) == (2, False)
    assert append_job(engine, lake.load_table(CONTACTS_TABLE), row.job_id, 1).already
    assert lake.load_table(CONTACTS_TABLE).scan().to_arrow().num_rows == 2


def test_a_failing_lake_leaves_the_job_completed_and_its_contacts_loaded(
    engine, instance, resources, local_zone, lake, monkeypatch
):
    monkeypatch.setenv("LAKE_CATALOG_URI", "http://127.0.0.1:9/catalog")  # nothing listens
    result, row = import_bytes(engine, instance, resources, local_zone, "acme", "c.csv", ACME)
    assert not result.success
    failed = {e.step_key for e in result.get_step_failure_events()}
    assert failed == {"contacts_lake"}
    assert (row.status, row.contacts_created, row.error) == ("COMPLETED", 2, None)
    assert job(engine, row.job_id).status == "COMPLETED"


def test_without_a_lake_the_asset_is_not_in_the_graph(resources, monkeypatch):
    monkeypatch.delenv("LAKE_WAREHOUSE", raising=False)
    keys = {key.to_user_string() for key in definitions(resources).resolve_all_asset_keys()}
    assert "contacts_lake" not in keys and "contacts" in keys


def test_a_field_the_dataset_gains_is_a_schema_evolution_not_a_new_table(lake):
    from ingestion_pipeline.db.tables import contacts
    from ingestion_pipeline.lake import arrow_schema

    older = arrow_schema(contacts)
    older = older.remove(older.get_field_index("extra"))
    lake.create_namespace_if_not_exists("ingestion")
    created = lake.create_table(CONTACTS_TABLE, schema=older)
    evolved = contacts_table(lake)
    assert evolved.metadata.table_uuid == created.metadata.table_uuid
    assert "extra" in {field.name for field in evolved.schema().fields}
    assert "extra" not in {field.name for field in created.schema().fields}
