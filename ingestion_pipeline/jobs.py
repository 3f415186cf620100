"""Jobs: the import of one partition, run in one process (its steps are few and sequential)."""

from dagster import AssetSelection, define_asset_job, in_process_executor

from ingestion_pipeline.constants import ASSET_GROUP

import_job = define_asset_job(
    name="import_job",
    selection=AssetSelection.groups(ASSET_GROUP),
    executor_def=in_process_executor,
    description="Import one uploaded file: raw upload, staging rows, issues, contacts.",
)
