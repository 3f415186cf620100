"""What every import asset does alike: find its job, route it, and record failures."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    Backoff,
    Failure,
    Jitter,
    MetadataValue,
    RetryPolicy,
    asset,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError

from ingestion_pipeline.datasets import DEFAULT_DATASET
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
from ingestion_pipeline.partitions import partitions_of
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


# The compute function of every import asset by its key (job lock included), so that a batch
# run can take many jobs through exactly the steps an import run takes (see batch.py).
STEP_FUNCTIONS: dict[AssetKey, Callable[..., Any]] = {}


def asset_group(dataset: str) -> str:
    """The group of a dataset's import assets: `contacts_import`, `orders_import`, ..."""
    return f"{dataset}_import"


def step_key_prefix(dataset: str) -> list[str]:
    """Contacts' steps keep their plain keys (`raw_upload`); another dataset's are prefixed
    with its name (`orders/raw_upload`). Tables are named after themselves."""
    return [] if dataset == DEFAULT_DATASET else [dataset]


def import_asset(dataset: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
    """`@asset` with what every import asset shares: its dataset's group and job partitions,
    retry policy, and one step at a time per job."""
    decorate = asset(
        group_name=asset_group(dataset),
        partitions_def=partitions_of(dataset),
        retry_policy=IMPORT_RETRY_POLICY,
        **kwargs,
    )

    def register(fn: Callable[..., Any]) -> Any:
        step = one_step_per_job(fn)
        built = decorate(step)
        STEP_FUNCTIONS[built.key] = step
        return built

    return register


@dataclass(frozen=True)
class Step:
    """One stage every dataset's import goes through, built into an asset per dataset."""

    name: str
    compute: Callable[..., Any]
    options: dict[str, Any]


# The stages by name; assets/__init__.py (STAGES) puts them in pipeline order.
STEPS: dict[str, Step] = {}


def import_step(name: str, **options: Any) -> Callable[[Callable[..., Any]], Any]:
    """Register `fn` as the stage `name` of every dataset's import; `options` go to `@asset`."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        STEPS[name] = Step(name, fn, options)
        return fn

    return register


def job_for(context: AssetExecutionContext, engine: Engine) -> tuple[ImportJob, Route]:
    """The import job of this partition and its route; an unknown partition, or a job of
    another dataset than the asset's, is bad input."""
    try:
        job, route = load_job(engine, context.partition_key)
    except UnknownJobError as exc:
        raise Failure(str(exc), allow_retries=False) from exc
    # A batch run's context has no assets_def: it builds each job's steps from its dataset.
    assets_def = getattr(context, "assets_def", None)
    expected = partitions_of(job.dataset).name
    if assets_def is not None and assets_def.partitions_def.name != expected:
        raise Failure(
            f"job {job.job_id} imports {job.dataset}: it is a partition of {expected}, "
            f"not of {assets_def.partitions_def.name}",
            allow_retries=False,
        )
    return job, route


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
