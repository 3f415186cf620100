"""What every import asset does alike: find its job, route it, and record failures."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from dagster import (
    AssetExecutionContext,
    Backoff,
    Failure,
    Jitter,
    MetadataValue,
    RetryPolicy,
    asset,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError

from ingestion_pipeline.constants import ASSET_GROUP
from ingestion_pipeline.db.import_jobs import ImportJob
from ingestion_pipeline.importer import (
    Route,
    UnknownJobError,
    job_lock,
    load_job,
    mark_failed,
    reject_upload,
)
from ingestion_pipeline.landing import ObjectChangedError
from ingestion_pipeline.partitions import import_jobs_partitions_def
from ingestion_pipeline.reading import UnreadableFileError

# Transient faults (a dropped connection, S3 throttling) get retried; bad input never is.
IMPORT_RETRY_POLICY = RetryPolicy(
    max_retries=3, delay=2, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
)
PREVIEW_ISSUES = 10


def one_step_per_job(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run the step under its job's lock (see importer.job_lock)."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator_step(context: AssetExecutionContext, **resources: Any) -> Iterator[Any]:
            with job_lock(resources["database"].get_engine(), context.partition_key):
                yield from fn(context, **resources)

        return generator_step

    @functools.wraps(fn)
    def step(context: AssetExecutionContext, **resources: Any) -> Any:
        with job_lock(resources["database"].get_engine(), context.partition_key):
            return fn(context, **resources)

    return step


# The compute function of every import asset by name (job lock included), so that a batch run
# can take many jobs through exactly the steps import_job runs (see batch.py).
STEP_FUNCTIONS: dict[str, Callable[..., Any]] = {}


def import_asset(**kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
    """`@asset` with what every import asset shares: group, job partitions, retry policy, and
    one step at a time per job."""
    decorate = asset(
        group_name=ASSET_GROUP,
        partitions_def=import_jobs_partitions_def,
        retry_policy=IMPORT_RETRY_POLICY,
        **kwargs,
    )

    def register(fn: Callable[..., Any]) -> Any:
        step = one_step_per_job(fn)
        STEP_FUNCTIONS[kwargs["name"]] = step
        return decorate(step)

    return register


def job_for(context: AssetExecutionContext, engine: Engine) -> tuple[ImportJob, Route]:
    """The import job of this partition and its route; an unknown partition is bad input."""
    try:
        return load_job(engine, context.partition_key)
    except UnknownJobError as exc:
        raise Failure(str(exc), allow_retries=False) from exc


@contextmanager
def failing_job(engine: Engine, job_id: str, *, unstage: bool = False) -> Iterator[None]:
    """Bad input fails the job at once, as a Failure that is not retried; with `unstage` (the
    steps that read the upload), what the job staged before the bad record is taken back.

    Any other error is left to the retry policy; when the run fails for good,
    import_failure_sensor (or the CLI) marks the job FAILED with it.
    """
    try:
        yield
    except (UnreadableFileError, ObjectChangedError) as exc:
        if unstage:
            reject_upload(engine, job_id, str(exc))
        else:
            mark_failed(engine, job_id, str(exc))
        raise Failure(
            description=str(exc),
            metadata={"job_id": job_id, "error": str(exc)},
            allow_retries=False,
        ) from exc
    except DataError as exc:
        # A value PostgreSQL refuses is refused again on every retry: a bug to report at once.
        error = f"the database refused a value: {str(exc.orig).strip().splitlines()[0]}"
        mark_failed(engine, job_id, error)
        raise Failure(
            description=error, metadata={"job_id": job_id, "error": error}, allow_retries=False
        ) from exc


def log_json(context: AssetExecutionContext, job: ImportJob, stage: str, **fields: Any) -> None:
    """One structured log line (a JSON object) in the run's log, shown while the step runs."""
    record = {"job_id": job.job_id, "tenant": job.tenant_id, "stage": stage, **fields}
    context.log.info(json.dumps(record, default=str, ensure_ascii=False))


def job_metadata(job: ImportJob, route: Route) -> dict[str, Any]:
    """Metadata every import asset shows: which job, which tenant, which route, and the row
    count once known (a number, so the UI plots it across materializations)."""
    metadata: dict[str, Any] = {
        "job_id": job.job_id,
        "tenant": job.tenant_id,
        "source": job.source_key,
        "route": route.value,
    }
    if job.total_rows is not None:
        metadata["total_rows"] = job.total_rows
    return metadata


def issues_preview(issues: list[dict[str, Any]], total: int) -> MetadataValue:
    """A markdown table of the first issues (of `total`), for the materialization page."""
    if not issues:
        return MetadataValue.md("No open issues.")
    lines = ["| kind | field | rows | message |", "| --- | --- | --- | --- |"]
    for issue in issues[:PREVIEW_ISSUES]:
        rows = ", ".join(str(n) for n in issue["rows"][:10])
        if len(issue["rows"]) > 10:
            rows += ", ..."
        message = issue["message"].replace("|", "\\|")
        lines.append(f"| {issue['kind']} | {issue['field']} | {rows} | {message} |")
    if total > PREVIEW_ISSUES:
        lines.append(f"\n... and {total - PREVIEW_ISSUES} more.")
    return MetadataValue.md("\n".join(lines))
