"""The import's assets, built per declared dataset from the same stages: raw upload -> staging
-> reviewed staging -> issues -> the dataset's table (contacts, customers, products, orders,
order_items) -> with a lake, its Iceberg table (`<table>_lake`), each dataset on its own job
partitions."""

from typing import Any

# The stage modules register their steps (STEPS) when imported.
from ingestion_pipeline.assets import issues as _issues  # noqa: F401
from ingestion_pipeline.assets import raw_upload as _raw_upload  # noqa: F401
from ingestion_pipeline.assets import reviewed_staging as _reviewed_staging  # noqa: F401
from ingestion_pipeline.assets import staging as _staging  # noqa: F401
from ingestion_pipeline.assets.common import STEPS, import_asset, step_key_prefix
from ingestion_pipeline.assets.lake import lake_asset
from ingestion_pipeline.assets.tables import table_asset
from ingestion_pipeline.datasets import DATASETS, DEFAULT_DATASET, LOAD_ORDER, Dataset

# The stages in pipeline order, each depending on the one before it.
STAGES = ("raw_upload", "staging_rows", "reviewed_staging", "import_issues")


def dataset_assets(dataset: Dataset, parents: list[Any]) -> dict[str, Any]:
    """The dataset's import assets by stage name, its table (named after it) last; `parents`
    are the tables of the datasets it references."""
    built: dict[str, Any] = {}
    previous: list[Any] = []
    for name in STAGES:
        step = STEPS[name]
        built[name] = import_asset(
            dataset.name,
            name=name,
            key_prefix=step_key_prefix(dataset.name),
            deps=previous,
            **step.options,
        )(step.compute)
        previous = [built[name]]
    built[dataset.table] = table_asset(dataset, built["import_issues"], parents)
    return built


def _all_dataset_assets() -> dict[str, dict[str, Any]]:
    built: dict[str, dict[str, Any]] = {}
    for name in LOAD_ORDER:
        dataset = DATASETS[name]
        parents = [built[p][DATASETS[p].table] for p in dataset.parents if p != name]
        built[name] = dataset_assets(dataset, parents)
    return built


DATASET_ASSETS: dict[str, dict[str, Any]] = _all_dataset_assets()
TABLE_ASSETS: dict[str, Any] = {n: a[DATASETS[n].table] for n, a in DATASET_ASSETS.items()}
# Each dataset's lake table, after its table: built always, in the graph only with a lake.
LAKE_ASSETS: dict[str, Any] = {
    n: lake_asset(DATASETS[n], table) for n, table in TABLE_ASSETS.items()
}

# Contacts' assets by name (their keys have no prefix).
raw_upload = DATASET_ASSETS[DEFAULT_DATASET]["raw_upload"]
staging_rows = DATASET_ASSETS[DEFAULT_DATASET]["staging_rows"]
reviewed_staging = DATASET_ASSETS[DEFAULT_DATASET]["reviewed_staging"]
import_issues = DATASET_ASSETS[DEFAULT_DATASET]["import_issues"]
contacts = TABLE_ASSETS[DEFAULT_DATASET]


def lake_enabled() -> bool:
    from ingestion_pipeline.settings import load_settings

    return bool(load_settings().lake_warehouse)


def import_assets_of(dataset: str) -> list[Any]:
    """The dataset's import assets in pipeline order, its lake table's last when a lake is
    configured (LAKE_WAREHOUSE)."""
    built = list(DATASET_ASSETS[dataset].values())
    if lake_enabled():
        built.append(LAKE_ASSETS[dataset])
    return built


def import_assets() -> list[Any]:
    """Every dataset's import assets (see import_assets_of)."""
    return [a for name in LOAD_ORDER for a in import_assets_of(name)]


__all__ = [
    "DATASET_ASSETS",
    "LAKE_ASSETS",
    "STAGES",
    "TABLE_ASSETS",
    "contacts",
    "dataset_assets",
    "import_assets",
    "import_assets_of",
    "import_issues",
    "raw_upload",
    "reviewed_staging",
    "staging_rows",
]
