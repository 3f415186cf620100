"""Partitions: one dynamic partition per import job (uploaded object version)."""

from dagster import DynamicPartitionsDefinition

from ingestion_pipeline.constants import IMPORT_JOBS_PARTITIONS

import_jobs_partitions_def = DynamicPartitionsDefinition(name=IMPORT_JOBS_PARTITIONS)
