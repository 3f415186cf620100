"""Asset jobs: import and reprocess one partition, each run in one process (few sequential
steps).

Each dataset has its pair, over its own assets and partitions: a run of an orders job never
meets the customers table it depends on (whose step would be skipped, and with it every table
downstream of it). Contacts keep the names import_job and reprocess_job.
"""

from typing import Any

from dagster import AssetSelection, define_asset_job, in_process_executor

from ingestion_pipeline.assets import DATASET_ASSETS
from ingestion_pipeline.assets.common import asset_group
from ingestion_pipeline.datasets import DEFAULT_DATASET, LOAD_ORDER

IMPORT = "import"
REPROCESS = "reprocess"


def job_name(kind: str, dataset: str) -> str:
    """`import_job` / `reprocess_job` for contacts, `import_orders_job` and so on for others."""
    return f"{kind}_job" if dataset == DEFAULT_DATASET else f"{kind}_{dataset}_job"


def _jobs(dataset: str) -> tuple[Any, Any]:
    own = AssetSelection.groups(asset_group(dataset))
    imports = define_asset_job(
        name=job_name(IMPORT, dataset),
        selection=own,
        executor_def=in_process_executor,
        description=(
            f"Import one uploaded {dataset} file: raw upload, staging, review, issues, {dataset}."
        ),
    )
    reviewed = DATASET_ASSETS[dataset]["reviewed_staging"]
    reprocess = define_asset_job(
        name=job_name(REPROCESS, dataset),
        selection=AssetSelection.assets(reviewed).downstream() & own,
        executor_def=in_process_executor,
        description=(
            f"Apply review decisions to a {dataset} job, revalidate it and load it if it is clean."
        ),
    )
    return imports, reprocess


DATASET_JOBS = {name: _jobs(name) for name in LOAD_ORDER}
import_job, reprocess_job = DATASET_JOBS[DEFAULT_DATASET]
IMPORT_JOBS = [pair[0] for pair in DATASET_JOBS.values()]
ALL_JOBS = [job for pair in DATASET_JOBS.values() for job in pair]
ALL_JOB_NAMES = frozenset(job.name for job in ALL_JOBS)


def dataset_job_name(generic: str, dataset: str) -> str:
    """The dataset's job for a generic name (`import_job` or `reprocess_job`)."""
    kind = REPROCESS if generic == reprocess_job.name else IMPORT
    return job_name(kind, dataset)
