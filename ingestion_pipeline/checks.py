"""Asset checks on every import job partition, built for each dataset's assets.

Blocking checks guard the table against structural breakage (an unreadable upload, counts that
do not add up): when one fails, the run stops before anything is loaded. Row problems are not
check failures: they are issues for a reviewer. The checks on a table are data checks on what
was loaded; they do not block.
"""

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    MetadataValue,
    PreviewWarning,
    asset_check,
)
from sqlalchemy.engine import Connection, Engine

from ingestion_pipeline.assets import DATASET_ASSETS
from ingestion_pipeline.datasets import DATASETS, DEFAULT_DATASET, LOAD_ORDER
from ingestion_pipeline.db import checks as sql
from ingestion_pipeline.db.import_jobs import ImportJob
from ingestion_pipeline.emails import is_valid_email
from ingestion_pipeline.importer import inspect_upload, job_lock, load_job
from ingestion_pipeline.landing import ObjectChangedError
from ingestion_pipeline.partitions import partitions_of
from ingestion_pipeline.reading import UnreadableFileError
from ingestion_pipeline.resources import DatabaseResource, LandingZoneResource

EMAIL_CHUNK = 50_000

# Per-partition check results are what the UI shows per import job; Dagster 1.13 calls a
# partitions_def on a check "preview" and warns on every import of this module.
warnings.filterwarnings("ignore", category=PreviewWarning, message=".*partitions_def.*")


# Every check's function with its asset and whether it blocks, in definition order, so that a
# batch run evaluates exactly the checks an import run does (see batch.py).
CHECK_FUNCTIONS: list[tuple[Any, str, bool, Callable[..., AssetCheckResult]]] = []


@dataclass(frozen=True)
class Check:
    """A check function, the stage it checks (`table`: the dataset's table) and whether it
    blocks; `only` limits it to one dataset."""

    fn: Callable[..., AssetCheckResult]
    stage: str
    blocking: bool
    name: str
    only: str | None = None


CHECKS: list[Check] = []


def job_check(
    stage: str, *, blocking: bool, name: str | None = None, only: str | None = None
) -> Callable[[Callable[..., AssetCheckResult]], Callable[..., AssetCheckResult]]:
    """Register `fn` as a check on one import job partition of every dataset's `stage`."""

    def register(fn: Callable[..., AssetCheckResult]) -> Callable[..., AssetCheckResult]:
        CHECKS.append(Check(fn, stage, blocking, name or fn.__name__, only))
        return fn

    return register


def checked_job(context: AssetCheckExecutionContext, engine: Engine) -> ImportJob:
    """The partition's job; checks run only after their asset, so the job exists."""
    return load_job(engine, context.partition_key)[0]


def locked_finding(
    context: AssetCheckExecutionContext,
    database: DatabaseResource,
    query: Callable[[Connection, str], sql.Finding],
) -> sql.Finding:
    """`query` on the partition's job, under the job's lock: a check sees the job between
    steps of a concurrent run, never halfway through one."""
    engine = database.get_engine()
    with job_lock(engine, context.partition_key), engine.connect() as conn:
        return query(conn, context.partition_key)


def finding_result(finding: sql.Finding, description: str, **metadata: Any) -> AssetCheckResult:
    """A check result from a SQL finding: its figures, and the offenders when it failed."""
    values: dict[str, Any] = {"offending": finding.count, **finding.figures, **metadata}
    if finding.sample:
        values["sample"] = MetadataValue.json(finding.sample)
    return AssetCheckResult(
        passed=finding.passed,
        severity=AssetCheckSeverity.ERROR,
        description=description,
        metadata=values,
    )


@job_check("raw_upload", blocking=True)
def upload_readable(
    context: AssetCheckExecutionContext,
    database: DatabaseResource,
    landing_zone: LandingZoneResource,
) -> AssetCheckResult:
    """The job's object version, if this run still has to read it, opens and has a header
    (or records) the dataset's fields can be read from."""
    engine = database.get_engine()
    job, route = load_job(engine, context.partition_key)
    zone = landing_zone.get_zone()
    location = zone.describe(job.source_key)
    if not route.reads_upload:
        # A staged job is revalidated from staging; its file may be gone, and that is fine.
        return AssetCheckResult(
            passed=True,
            description=f"not read: {route.value}",
            metadata={"location": location, "file_needed": False},
        )
    try:
        fmt = inspect_upload(zone, job)
    except (UnreadableFileError, ObjectChangedError, FileNotFoundError) as exc:
        return AssetCheckResult(
            passed=False,
            description=str(exc),
            metadata={"location": location, "file_needed": True, "etag": job.source_etag},
        )
    kind = "JSON records with" if fmt.delimiter in ("json", "ndjson") else "a header of"
    shape = f"{kind} {len(fmt.header)} columns" + (f" on sheet {fmt.sheet}" if fmt.sheet else "")
    return AssetCheckResult(
        passed=True,
        description=f"readable: {fmt.encoding}, {shape}",
        metadata={
            "location": location,
            "file_needed": True,
            "encoding": fmt.encoding,
            "delimiter": fmt.delimiter_name,
            "columns": len(fmt.header),
        },
    )


@job_check("staging_rows", blocking=True)
def staging_matches_file(
    context: AssetCheckExecutionContext, database: DatabaseResource
) -> AssetCheckResult:
    """Staging holds exactly the file's records: rows 1..total_rows, none missing or extra."""
    finding = locked_finding(context, database, sql.staging_row_count)
    figures = finding.figures
    return finding_result(
        finding,
        f"{figures['staged_rows']} staged of {figures['total_rows']} records "
        f"({figures['missing_rows']} missing, {figures['extra_rows']} out of range)",
    )


@job_check("import_issues", blocking=True)
def issue_rows_linked(
    context: AssetCheckExecutionContext, database: DatabaseResource
) -> AssetCheckResult:
    """Every staging row in ISSUE state is linked to an unresolved issue a reviewer can see."""
    finding = locked_finding(context, database, sql.unlinked_issue_rows)
    return finding_result(finding, f"{finding.count} ISSUE row(s) with no unresolved issue")


@job_check("import_issues", blocking=True)
def issue_count_matches(
    context: AssetCheckExecutionContext, database: DatabaseResource
) -> AssetCheckResult:
    """The job's issue_count equals its unresolved issues (what routes it to review)."""
    finding = locked_finding(context, database, sql.issue_count_mismatch)
    figures = finding.figures
    return finding_result(
        finding,
        f"issue_count {figures['issue_count']}, unresolved issues {figures['unresolved_issues']}",
    )


@job_check("table", blocking=False, only=DEFAULT_DATASET)
def contacts_unique_per_tenant(
    context: AssetCheckExecutionContext, database: DatabaseResource
) -> AssetCheckResult:
    """No contact the job loaded shares its normalized email with another of its tenant."""
    engine = database.get_engine()
    job = checked_job(context, engine)
    with engine.connect() as conn:
        finding = sql.duplicate_contacts(conn, job.tenant_id, job.job_id)
    return finding_result(
        finding,
        f"{finding.count} email(s) held by several contacts of tenant {job.tenant_id}",
        tenant=job.tenant_id,
    )


@job_check("table", blocking=False, only=DEFAULT_DATASET)
def contacts_emails_valid(
    context: AssetCheckExecutionContext, database: DatabaseResource
) -> AssetCheckResult:
    """Every contact the job loaded has an email that email-validator accepts."""
    engine = database.get_engine()
    checked = 0
    invalid: list[dict[str, Any]] = []
    invalid_count = 0
    for frame in sql.job_contact_emails(engine, context.partition_key, EMAIL_CHUNK):
        bad = frame[~is_valid_email(frame["email"])]
        invalid_count += len(bad)
        checked += len(frame)
        room = sql.SAMPLE - len(invalid)
        if room > 0:
            invalid.extend(
                {"row": int(r), "email": e}
                for r, e in bad.head(room).itertuples(index=False, name=None)
            )
    return finding_result(
        sql.Finding(invalid_count, invalid),
        f"{invalid_count} of {checked} loaded contact(s) with an invalid email",
        contacts_checked=checked,
    )


def status_agreement(
    context: AssetCheckExecutionContext,
    database: DatabaseResource,
    figures_of: Callable[[Connection, str], dict[str, Any]],
    disagreements: Callable[[dict[str, Any]], list[str]],
) -> AssetCheckResult:
    """The job's counts (read under its lock) against its status."""
    engine = database.get_engine()
    with job_lock(engine, context.partition_key), engine.connect() as conn:
        figures = figures_of(conn, context.partition_key)
    found = disagreements(figures)
    status = figures.pop("status")
    return AssetCheckResult(
        passed=not found,
        description="; ".join(found) or f"{status}: counts agree",
        metadata={"status": status, **figures},
    )


@job_check("table", blocking=False, only=DEFAULT_DATASET)
def job_status_agrees(
    context: AssetCheckExecutionContext, database: DatabaseResource
) -> AssetCheckResult:
    """The job's status agrees with its counts: a COMPLETED job has no open issue, every row
    processed and loaded or discarded, and as many contacts as it says it created."""
    return status_agreement(context, database, sql.status_figures, sql.status_disagreements)


def dataset_status_agrees(
    context: AssetCheckExecutionContext, database: DatabaseResource
) -> AssetCheckResult:
    """The job's status agrees with its counts: a COMPLETED job has no open issue, every row
    loaded or discarded, and inserted + updated + unchanged add up to the rows loaded."""
    table = checked_job(context, database.get_engine()).declaration.table
    return status_agreement(
        context,
        database,
        lambda conn, job_id: sql.dataset_status_figures(conn, job_id, table),
        sql.dataset_status_disagreements,
    )


for _name in LOAD_ORDER:
    if _name != DEFAULT_DATASET:
        job_check("table", blocking=False, name="job_status_agrees", only=_name)(
            dataset_status_agrees
        )


def dataset_checks(dataset: str) -> list[AssetChecksDefinition]:
    """The checks of one dataset's assets, on its job partitions."""
    assets = DATASET_ASSETS[dataset]
    built = []
    for check in CHECKS:
        if check.only not in (None, dataset):
            continue
        asset = assets[DATASETS[dataset].table if check.stage == "table" else check.stage]
        CHECK_FUNCTIONS.append((asset, check.name, check.blocking, check.fn))
        built.append(
            asset_check(
                asset=asset,
                name=check.name,
                blocking=check.blocking,
                partitions_def=partitions_of(dataset),
                description=inspect.getdoc(check.fn),
            )(check.fn)
        )
    return built


DATASET_CHECKS: dict[str, list[AssetChecksDefinition]] = {n: dataset_checks(n) for n in LOAD_ORDER}
IMPORT_CHECKS: list[AssetChecksDefinition] = [c for n in LOAD_ORDER for c in DATASET_CHECKS[n]]


def check_named(name: str, dataset: str = DEFAULT_DATASET) -> AssetChecksDefinition:
    """The check called `name` on `dataset`'s assets."""
    return next(c for c in DATASET_CHECKS[dataset] if c.check_key.name == name)
