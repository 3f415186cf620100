"""Jobs: import and reprocess one partition, each run in one process (few sequential steps)."""

from dagster import AssetSelection, define_asset_job, in_process_executor

from ingestion_pipeline.constants import ASSET_GROUP

import_job = define_asset_job(
    name="import_job",
    selection=AssetSelection.groups(ASSET_GROUP),
    executor_def=in_process_executor,
    description="Import one uploaded file: raw upload, staging, review, issues, contacts.",
)

reprocess_job = define_asset_job(
    name="reprocess_job",
    selection=AssetSelection.assets("reviewed_staging").downstream(),
    executor_def=in_process_executor,
    description="Apply review decisions to a job, revalidate it and load it if it is clean.",
)
