"""Many small uploads in one run: each import job of the batch goes, in this process, through
the very asset and check functions import_job runs, in the same order, with the same job lock.

A run costs a process, a code location load and some seventy events whatever the file's size;
for a 20-row file that is nearly all of its cost. A batch run pays them once, and records per
job what import_job records: one materialization per asset partition and one evaluation per
check, so the UI shows each job as if it had its own run. A job's failure stays with that job.
"""

import inspect
import logging
import sys
from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    Config,
    DagsterInstance,
    Failure,
    MaterializeResult,
    OpExecutionContext,
    in_process_executor,
    job,
    op,
)

from ingestion_pipeline.assets import import_assets_of
from ingestion_pipeline.assets.common import STEP_FUNCTIONS
from ingestion_pipeline.checks import CHECK_FUNCTIONS
from ingestion_pipeline.constants import JobStatus
from ingestion_pipeline.datasets import DEFAULT_DATASET
from ingestion_pipeline.db.import_jobs import get_job
from ingestion_pipeline.importer import mark_failed, mark_processing
from ingestion_pipeline.resources import DatabaseResource, LandingZoneResource

BATCH_OP = "import_batch"
# The steps' JSON lines go to the run's captured stderr (the UI's stderr tab for the step),
# not one stored event each: events are what a batch is made to save.
STEP_LOG = logging.getLogger("ingestion_pipeline.batch")
STEP_LOG.setLevel(logging.INFO)
STEP_LOG.propagate = False
if not STEP_LOG.handlers:
    STEP_LOG.addHandler(logging.StreamHandler(sys.stderr))


class JobStepContext:
    """What an import asset or check function uses of its context, for one job of a batch."""

    def __init__(self, op_context: OpExecutionContext, job_id: str, asset_key: AssetKey) -> None:
        self._op_context = op_context
        self.partition_key = job_id
        self.asset_key = asset_key
        self.log = STEP_LOG

    def log_event(self, event: AssetObservation) -> None:
        self._op_context.log_event(event)


def _call(fn: Any, context: JobStepContext, resources: dict[str, Any]) -> Any:
    wanted = inspect.signature(fn).parameters
    return fn(context, **{k: v for k, v in resources.items() if k in wanted})


def _results(produced: Any) -> list[MaterializeResult]:
    if isinstance(produced, Iterator):
        return list(produced)
    return [] if produced is None else [produced]


def import_one(op_context: OpExecutionContext, resources: dict[str, Any], job_id: str) -> str:
    """Take one job through the import steps and their checks; returns how it ended."""
    engine = resources["database"].get_engine()
    with engine.connect() as conn:
        job = get_job(conn, job_id)
    if job is not None and job.status is JobStatus.PENDING:
        # In flight from here: if the process dies now, this is the job it was reading.
        mark_processing(engine, job_id)
    # An unknown job goes through contacts' steps, whose first one fails it clearly.
    for assets_def in import_assets_of(job.dataset if job else DEFAULT_DATASET):
        key = assets_def.key
        name = key.to_user_string()
        context = JobStepContext(op_context, job_id, key)
        try:
            results = _results(_call(STEP_FUNCTIONS[key], context, resources))
        except Failure as exc:
            return f"{name}: {exc.description}"  # bad input: the step marked the job FAILED
        except Exception as exc:
            # import_job would retry the step; here the job is marked FAILED with the error so
            # that `ingestion-pipeline retry` or a backfill of FAILED jobs picks it up.
            error = f"{name}: {type(exc).__name__}: {exc}"
            mark_failed(engine, job_id, error, only_running=True)
            op_context.log.error(f"{job_id}: {error}")
            return error
        if not results:
            return f"{name}: not materialized (the job waits)"
        op_context.log_event(
            AssetMaterialization(asset_key=key, partition=job_id, metadata=results[0].metadata)
        )
        for checked, check_name, blocking, evaluate in CHECK_FUNCTIONS:
            if checked.key != key:
                continue
            result = _call(evaluate, context, resources)
            op_context.log_event(
                AssetCheckEvaluation(
                    asset_key=key,
                    check_name=check_name,
                    passed=result.passed,
                    metadata=result.metadata,
                    severity=result.severity,
                    description=result.description,
                    blocking=blocking,
                    partition=job_id,
                )
            )
            if blocking and not result.passed:
                error = f"check {check_name} on {name} failed: {result.description}"
                mark_failed(engine, job_id, error, only_running=True)
                return error
    return "done"


def pooled_storage(instance: DagsterInstance) -> None:
    """Dagster's PostgreSQL storage opens a connection per event by default; a batch writes
    hundreds, so the instance keeps a small pool (what the webserver does). Once per instance:
    each call makes new engines and leaves the old ones' connections open (a worker running
    one run after another on one instance reached the server's 100 connections)."""
    if getattr(instance, "_ingestion_pooled", False):
        return
    instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=2)
    instance._ingestion_pooled = True  # type: ignore[attr-defined]


class BatchConfig(Config):
    """The import jobs (partition keys) a batch run takes, in order."""

    job_ids: list[str]


@op(name=BATCH_OP)
def import_batch(
    context: OpExecutionContext,
    config: BatchConfig,
    database: DatabaseResource,
    landing_zone: LandingZoneResource,
) -> None:
    """Import each job of the batch through the import assets and their checks."""
    pooled_storage(context.instance)
    resources = {"database": database, "landing_zone": landing_zone}
    outcomes = {job_id: import_one(context, resources, job_id) for job_id in config.job_ids}
    failed = {k: v for k, v in outcomes.items() if v != "done" and "waits" not in v}
    context.log.info(
        f"batch of {len(outcomes)} job(s): {len(outcomes) - len(failed)} went through, "
        f"{len(failed)} stopped" + "".join(f"\n  {k}: {v}" for k, v in failed.items())
    )


@job(
    name="import_batch_job",
    executor_def=in_process_executor,
    description="Import many small uploads in one run: each job through the import assets.",
)
def import_batch_job() -> None:
    import_batch()


def batch_job_ids(run_config: dict[str, Any]) -> list[str]:
    """The job ids of a batch run, from its run config."""
    return list(run_config.get("ops", {}).get(BATCH_OP, {}).get("config", {}).get("job_ids", []))
