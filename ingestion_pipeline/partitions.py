"""Partitions: one dynamic partition per import job, in a partitions definition per dataset.

Each dataset's assets list only its own jobs: the contacts asset never shows an orders upload
as a partition it has not materialized, and "materialize missing" on it never starts one.
Contacts keep the name import_jobs.
"""

from dagster import DynamicPartitionsDefinition

from ingestion_pipeline.constants import IMPORT_JOBS_PARTITIONS
from ingestion_pipeline.datasets import DEFAULT_DATASET, LOAD_ORDER


def partitions_name(dataset: str) -> str:
    """`import_jobs` for contacts, `orders_import_jobs` and so on for the others."""
    return IMPORT_JOBS_PARTITIONS if dataset == DEFAULT_DATASET else f"{dataset}_import_jobs"


PARTITIONS: dict[str, DynamicPartitionsDefinition] = {
    name: DynamicPartitionsDefinition(name=partitions_name(name)) for name in LOAD_ORDER
}
import_jobs_partitions_def = PARTITIONS[DEFAULT_DATASET]


def partitions_of(dataset: str) -> DynamicPartitionsDefinition:
    """The partitions definition of the dataset's import jobs."""
    return PARTITIONS[dataset]
