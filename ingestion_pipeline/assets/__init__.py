"""The import's assets by stage: raw upload -> staging -> reviewed staging -> issues -> the
dataset's table (contacts, customers, products, orders, order_items)."""

from ingestion_pipeline.assets.issues import import_issues
from ingestion_pipeline.assets.raw_upload import raw_upload
from ingestion_pipeline.assets.reviewed_staging import reviewed_staging
from ingestion_pipeline.assets.staging import staging_rows
from ingestion_pipeline.assets.tables import TABLE_ASSETS, contacts

IMPORT_ASSETS = [raw_upload, staging_rows, reviewed_staging, import_issues, *TABLE_ASSETS.values()]
# What reprocessing a job after review re-materializes: no file is read.
REPROCESS_ASSETS = [reviewed_staging, import_issues, *TABLE_ASSETS.values()]


def import_assets() -> list:
    """The import's assets, with the lake's when a lake is configured (LAKE_WAREHOUSE)."""
    from ingestion_pipeline.assets.lake import contacts_lake
    from ingestion_pipeline.settings import load_settings

    return [*IMPORT_ASSETS, contacts_lake] if load_settings().lake_warehouse else IMPORT_ASSETS


__all__ = [
    "IMPORT_ASSETS",
    "REPROCESS_ASSETS",
    "TABLE_ASSETS",
    "contacts",
    "import_assets",
    "import_issues",
    "raw_upload",
    "reviewed_staging",
    "staging_rows",
]
