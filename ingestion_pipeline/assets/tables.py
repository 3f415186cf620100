"""The loaded tables, one asset per declared dataset, each materialized by its own jobs only.

Every table depends on the issues step and on the tables of the datasets it references, so the
graph shows the load order (customers and products before orders, orders before order_items).
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
from ingestion_pipeline.assets.issues import import_issues
from ingestion_pipeline.constants import JobStatus
from ingestion_pipeline.datasets import DATASETS, LOAD_ORDER, Dataset
from ingestion_pipeline.importer import Route, consolidate
from ingestion_pipeline.resources import DatabaseResource


def table_asset(dataset: Dataset, parents: list) -> object:
    """The asset that loads `dataset`'s jobs into its table."""

    @import_asset(
        name=dataset.table,
        deps=[
            import_issues,
            # A job's rows reference rows of any job of the parent dataset.
            *(AssetDep(p, partition_mapping=AllPartitionMapping()) for p in parents),
        ],
        output_required=False,
        kinds={"postgres"},
        description=(
            f"{dataset.description} The job's rows, loaded in one transaction "
            f"(merge policy {dataset.merge.value}); left unmaterialized while the job waits "
            "or is under review, and for jobs of other datasets."
        ),
    )
    def load(
        context: AssetExecutionContext, database: DatabaseResource
    ) -> Iterator[MaterializeResult]:
        engine = database.get_engine()
        job, route = job_for(context, engine)
        if job.dataset != dataset.name:
            return
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


def _table_assets() -> dict[str, object]:
    built: dict[str, object] = {}
    for name in LOAD_ORDER:
        dataset = DATASETS[name]
        built[name] = table_asset(dataset, [built[p] for p in dataset.parents if p != name])
    return built


TABLE_ASSETS: dict[str, object] = _table_assets()
contacts = TABLE_ASSETS["contacts"]
