"""The code location: assembles assets, checks, jobs, sensors and resources; defines nothing."""

from collections.abc import Mapping

from dagster import Definitions, in_process_executor

from ingestion_pipeline.asset_jobs import ALL_JOBS
from ingestion_pipeline.assets import import_assets
from ingestion_pipeline.batch import import_batch_job
from ingestion_pipeline.checks import IMPORT_CHECKS
from ingestion_pipeline.resources import build_resources
from ingestion_pipeline.sensors import (
    import_failure_sensor,
    request_sensor,
    review_sensor,
    upload_sensor,
)


def build_definitions(resources: Mapping[str, object]) -> Definitions:
    """Everything on the given resources (the CLI and the tests bring their own)."""
    return Definitions(
        assets=import_assets(),
        asset_checks=IMPORT_CHECKS,
        jobs=[*ALL_JOBS, import_batch_job],
        sensors=[upload_sensor, review_sensor, request_sensor, import_failure_sensor],
        resources=resources,
        # Import steps are few and sequential: one process per run, not one per step.
        executor=in_process_executor,
    )


defs = build_definitions(build_resources())
