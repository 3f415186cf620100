"""The loaded tables, one asset per declared dataset, on that dataset's job partitions.

Every table depends on its dataset's issues step and on the tables of the datasets it
references, so the graph shows the load order (customers and products before orders, orders
before order_items).
"""

import time
from collections.abc import Iterator

from dagster import AllPartitionMapping, AssetDep, AssetExecutionContext, MaterializeResult

from ingestion_pipeline.assets.common import (
    failing_job,
    import_asset,
    job_for,
    job_metadata,
    log_json,
)
from ingestion_pipeline.constants import JobStatus
from ingestion_pipeline.datasets import Dataset
from ingestion_pipeline.importer import Route, consolidate
from ingestion_pipeline.resources import DatabaseResource


def table_asset(dataset: Dataset, issues: object, parents: list) -> object:
    """The asset that loads `dataset`'s jobs into its table, after its `issues` step."""

    @import_asset(
        dataset.name,
        name=dataset.table,
        deps=[
            issues,
            # A job's rows reference rows of any job of the parent dataset.
            *(AssetDep(p, partition_mapping=AllPartitionMapping()) for p in parents),
        ],
        output_required=False,
        kinds={"postgres"},
        description=(
            f"{dataset.description} The job's rows, loaded in one transaction "
            f"(merge policy {dataset.merge.value}); left unmaterialized while the job waits "
            "or is under review."
        ),
    )
    def load(
        context: AssetExecutionContext, database: DatabaseResource
    ) -> Iterator[MaterializeResult]:
        engine = database.get_engine()
        job, route = job_for(context, engine)
        stage = dataset.table
        if route is Route.AWAIT_MAPPING:
            log_json(context, job, stage, event="needs_mapping", status=job.status.value)
            return
        started = time.perf_counter()
        with failing_job(engine, job.job_id):
            result = consolidate(engine, job)
        if result.status is not JobStatus.COMPLETED:
            log_json(context, job, stage, event="not_loaded", status=result.status.value)
            return
        seconds = time.perf_counter() - started
        inserted = 0 if result.already_completed else result.inserted
        if dataset.staged_in_columns:
            counts = {"contacts_created": inserted}
        else:
            counts = {
                "rows_inserted": inserted,
                "rows_updated": result.updated,
                "rows_unchanged": result.unchanged,
            }
        log_json(
            context,
            job,
            stage,
            event="already_completed" if result.already_completed else "loaded",
            **counts,
            revalidating=list(result.woken),
            seconds=round(seconds, 3),
        )
        yield MaterializeResult(
            metadata={
                **job_metadata(job, route),
                "status": result.status.value,
                **counts,
                "seconds": round(seconds, 3),
                "rows_per_second": round(inserted / seconds, 1) if seconds else 0.0,
            }
        )

    return load
