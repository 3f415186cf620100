"""A folder in one command: `ingestion-pipeline import DIR --tenant T` takes each file's dataset
from its folder or name (never a guess), shows what it would do with --dry-run, imports every
file together whatever their order, and says by its exit code how the jobs ended."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import pytest

from ingestion_pipeline.cli import EXIT_OK, EXIT_WAITING
from ingestion_pipeline.folder_import import dataset_of
from ingestion_pipeline_tests.helpers import rows, scalar
from ingestion_pipeline_tests.test_lake_datasets import SHOP, iceberg_rows, postgres_rows

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "shop"
NOTES = "notes.txt"


def shop_folder(root: Path, datasets=SHOP) -> Path:
    """The shop's files side by side, written in reverse alphabetical order, and a file that
    names no dataset."""
    root.mkdir()
    names = sorted((f"{d}_2025.ndjson" for d in datasets), reverse=True)
    for name in names:
        dataset = name.removesuffix("_2025.ndjson")
        (root / name).write_bytes((SAMPLES / dataset / name).read_bytes())
    (root / NOTES).write_text("exported on Monday\n")
    return root


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("orders/export.csv", "orders"),
        ("2025/customers/a.csv", "customers"),
        ("customers/orders_2025.csv", "customers"),  # the folder before the name
        ("orders_2025.ndjson", "orders"),
        ("order_items_2025.ndjson", "order_items"),  # the longest name, not orders
        ("products.csv", "products"),
        ("Contacts-May.csv", "contacts"),
        ("ordersheet.csv", None),
        ("my_orders.csv", None),
        ("notes.txt", None),
    ],
)
def test_the_dataset_of_a_file_is_its_folder_or_the_start_of_its_name(path, expected):
    assert dataset_of(PurePosixPath(path))[0] == expected


def test_a_dry_run_shows_each_file_its_dataset_format_and_mapping_and_imports_nothing(
    cli, engine, tmp_path, landing_dir
):
    folder = shop_folder(tmp_path / "shop")
    code, out, err = cli("import", str(folder), "--tenant", "shop", "--dry-run")
    assert code == EXIT_OK, err
    for dataset in SHOP:
        assert f"{dataset}_2025.ndjson  {dataset} (file name)" in out
    assert "format: ndjson, utf-8" in out
    assert 'customer_id <- "customer_id" (alias)' in out
    assert "4 file(s) would be imported; nothing was (--dry-run)" in out
    assert f"skipped {NOTES}: names no dataset" in err
    assert scalar(engine, "SELECT count(*) FROM import_jobs") == 0
    assert not list(landing_dir.rglob("*.ndjson"))

    code, out, _ = cli("import", str(folder), "--tenant", "shop", "--dry-run", "--json")
    planned = json_lines(out)
    # Parents before children, as they will be imported.
    assert [p["dataset"] for p in planned] == ["customers", "products", "orders", "order_items"]
    orders = planned[2]
    assert (orders["format"], orders["mapping_source"], orders["needs_mapping"]) == (
        "ndjson",
        "automatic",
        False,
    )
    assert orders["mapping"]["total_amount"] == ["total_amount"]


def test_a_folder_in_reverse_order_becomes_four_completed_jobs_in_one_command(
    cli, engine, tmp_path
):
    folder = shop_folder(tmp_path / "shop")
    code, out, err = cli("import", str(folder), "--tenant", "shop", "--json")
    assert code == EXIT_OK, err
    jobs = json_lines(out)
    assert [(j["dataset"], j["status"]) for j in jobs] == [
        (d, "COMPLETED") for d in ("customers", "products", "orders", "order_items")
    ]
    assert f"skipped {NOTES}" in err
    counts = {t: scalar(engine, f"SELECT count(*) FROM {t} WHERE tenant_id = 'shop'") for t in SHOP}
    assert counts == {"customers": 4, "products": 4, "orders": 5, "order_items": 8}
    # All in one run; the same folder again finds the same jobs, already done.
    code, out, _ = cli("import", str(folder), "--tenant", "shop", "--json")
    assert code == EXIT_OK
    assert [j["job_id"] for j in json_lines(out)] == [j["job_id"] for j in jobs]
    assert scalar(engine, "SELECT count(*) FROM import_jobs") == 4


def test_a_file_that_names_no_dataset_is_taken_as_the_given_dataset(cli, engine, tmp_path):
    folder = tmp_path / "mixed"
    (folder / "customers").mkdir(parents=True)
    (folder / "customers" / "export.ndjson").write_bytes(
        (SAMPLES / "customers" / "customers_2025.ndjson").read_bytes()
    )
    (folder / "people.csv").write_text("email,first_name,last_name,company\nan@x.io,An,Li,X\n")
    code, _, err = cli("import", str(folder), "--tenant", "t1", "--dataset", "contacts")
    assert code == EXIT_OK, err
    assert rows(engine, "SELECT dataset, status FROM import_jobs ORDER BY dataset") == [
        ("contacts", "COMPLETED"),
        ("customers", "COMPLETED"),
    ]


def test_the_exit_code_says_a_job_waits(cli, engine, tmp_path):
    folder = shop_folder(tmp_path / "orders-only", datasets=("orders",))
    code, out, _ = cli("import", str(folder), "--tenant", "shop", "--json")
    assert code == EXIT_WAITING
    assert [j["status"] for j in json_lines(out)] == ["WAITING_FOR_REFERENCES"]


def test_a_folder_imported_with_a_lake_lands_every_table_once(cli, engine, tmp_path, lake):
    folder = shop_folder(tmp_path / "shop")
    code, _, err = cli("import", str(folder), "--tenant", "shop")
    assert code == EXIT_OK, err
    for dataset in SHOP:
        assert iceberg_rows(lake, dataset, "shop") == postgres_rows(engine, dataset, "shop")
        assert len(lake.load_table(f"ingestion.{dataset}").snapshots()) == 1
