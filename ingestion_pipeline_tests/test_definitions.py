"""The code location loads, and holds what the README says it holds."""

from __future__ import annotations

from itertools import pairwise

from dagster import AssetKey, DefaultSensorStatus, Definitions

from ingestion_pipeline.constants import ASSET_GROUP, IMPORT_JOBS_PARTITIONS
from ingestion_pipeline.definitions import defs


def test_definitions_load():
    Definitions.validate_loadable(defs)


def test_asset_graph_is_upload_staging_review_issues_contacts():
    graph = defs.resolve_asset_graph()
    keys = ["raw_upload", "staging_rows", "reviewed_staging", "import_issues", "contacts"]
    for upstream, downstream in pairwise(keys):
        assert AssetKey(upstream) in graph.get(AssetKey(downstream)).parent_keys
    for key in keys:
        node = graph.get(AssetKey(key))
        assert node.group_name == ASSET_GROUP
        assert node.partitions_def.name == IMPORT_JOBS_PARTITIONS
        assert node.description


def test_every_dataset_has_its_own_chain_on_its_own_partitions():
    graph = defs.resolve_asset_graph()
    for name in ("customers", "products", "orders", "order_items"):
        keys = [
            AssetKey([name, s])
            for s in ("raw_upload", "staging_rows", "reviewed_staging", "import_issues")
        ]
        keys.append(AssetKey(name))
        for upstream, downstream in pairwise(keys):
            assert upstream in graph.get(downstream).parent_keys
        for key in keys:
            node = graph.get(key)
            assert (node.group_name, node.partitions_def.name) == (
                f"{name}_import",
                f"{name}_import_jobs",
            )
            assert node.description
        job = defs.resolve_job_def(f"import_{name}_job")
        assert job.asset_layer.selected_asset_keys == set(keys)
        assert job.partitions_def.name == f"{name}_import_jobs"
    # Each check is built once per dataset, on that dataset's assets.
    checked = {(c.check_key.asset_key, c.check_key.name) for c in defs.asset_checks or []}
    assert (AssetKey(["orders", "import_issues"]), "issue_rows_linked") in checked
    assert (AssetKey("orders"), "job_status_agrees") in checked
    assert (AssetKey("orders"), "contacts_emails_valid") not in checked


def test_upload_sensor_runs_by_default_and_targets_the_import_job():
    sensor = defs.resolve_sensor_def("upload_sensor")
    assert sensor.default_status == DefaultSensorStatus.RUNNING
    # One run per upload; a burst in batch runs.
    assert {target.job_name for target in sensor.targets} == {
        "import_job",
        *(f"import_{d}_job" for d in ("customers", "products", "orders", "order_items")),
        "import_batch_job",
    }
    assert defs.resolve_job_def("import_job") is not None


def test_review_sensor_targets_the_reprocess_job_which_reads_no_file():
    sensor = defs.resolve_sensor_def("review_sensor")
    assert sensor.default_status == DefaultSensorStatus.RUNNING
    # Decisions reprocess; a mapping file continues the import from the file.
    assert {target.job_name for target in sensor.targets} == {
        f"{kind}_{d}job"
        for kind in ("import", "reprocess")
        for d in ("", "customers_", "products_", "orders_", "order_items_")
    }
    selected = defs.resolve_job_def("reprocess_job").asset_layer.selected_asset_keys
    assert selected == {
        AssetKey("reviewed_staging"),
        AssetKey("import_issues"),
        AssetKey("contacts"),
    }
