"""`ingestion-pipeline`: import files and inspect jobs from a terminal."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError

from ingestion_pipeline.constants import CANONICAL_FIELDS, TAKES_DECISIONS, TENANT_TAG, JobStatus
from ingestion_pipeline.datasets import DEFAULT_DATASET, LOAD_ORDER, dataset_named
from ingestion_pipeline.db.import_jobs import (
    ImportJob,
    NewJob,
    get_job,
    iter_issues,
    job_summary,
    list_jobs,
    public_issue,
    register_jobs,
)
from ingestion_pipeline.landing import (
    TENANT_PATTERN,
    InvalidKeyError,
    job_id_for,
    put_file,
    upload_key,
)
from ingestion_pipeline.reading.mapping import MAPPABLE_FIELDS, ColumnMapping, mappable_fields
from ingestion_pipeline.settings import StorageSettingsError, load_settings

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_REJECTED = 2
# A folder's import: every job ended COMPLETED (0), some wait for a person and none failed (3),
# some failed (EXIT_REJECTED), a run broke (EXIT_ERROR).
EXIT_WAITING = 3


class UsageError(Exception):
    """A bad argument; printed without a traceback."""


class DatabaseUnavailableError(Exception):
    """The database went away; printed without a traceback, with what to do next."""


def _tenant(value: str) -> str:
    if not TENANT_PATTERN.match(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a tenant id (a-z, 0-9, '-', '_'; at most 63 characters)"
        )
    return value


def run_import(
    path: Path, tenant: str, log_level: str = "WARNING", dataset: str = DEFAULT_DATASET
) -> dict[str, Any]:
    """Put `path` into the landing zone for `tenant` and materialize its job in-process; jobs
    that waited for this one's rows (references) are then validated again, in-process too."""
    from ingestion_pipeline.instance import ensure_dagster_home
    from ingestion_pipeline.resources import database_engine, landing_zone

    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        key = upload_key(tenant, path.name, dataset)
    except InvalidKeyError as exc:
        raise UsageError(str(exc)) from exc
    settings = load_settings()
    ensure_dagster_home(settings)  # a missing setting is said before anything is written
    engine = database_engine(settings)
    info = put_file(landing_zone(settings), key, path)
    job_id = job_id_for(tenant, key, info.etag)
    with engine.begin() as conn:
        register_jobs(conn, [NewJob(job_id, tenant, key, info.etag, path.name, dataset, info.size)])
        job = get_job(conn, job_id)
    assert job is not None
    run_error = None
    if job.status is not JobStatus.COMPLETED:
        run_error = _materialize(job, "import_job", log_level)
    released = _revalidate_woken(job_id, log_level)
    with engine.connect() as conn:
        job = get_job(conn, job_id)
        assert job is not None
        summary = {**job_summary(job), "run_error": run_error}
    if released:
        summary["revalidated"] = released
    return summary


def _materialize(job: ImportJob, job_name: str, log_level: str) -> str | None:
    """Run `job_name` (its assets and their checks) for the job's partition in-process on the
    shared instance, as the daemon would.

    A job the run left half-done is marked FAILED with the run's error, as
    import_failure_sensor does for runs the daemon launched, and that error is returned; a job
    the run itself failed (a rejected file) or sent back to review speaks through its status.
    """
    from ingestion_pipeline.asset_jobs import dataset_job_name
    from ingestion_pipeline.batch import pooled_storage
    from ingestion_pipeline.definitions import build_definitions
    from ingestion_pipeline.importer import mark_failed
    from ingestion_pipeline.instance import get_instance
    from ingestion_pipeline.partitions import partitions_name
    from ingestion_pipeline.resources import build_resources
    from ingestion_pipeline.sensors import first_step_error

    settings = load_settings()
    instance = get_instance(settings)
    # Dagster's PostgreSQL storage opens a connection per event by default (seventy-odd for
    # one import); a small pool for this process, as the webserver and batch runs keep.
    pooled_storage(instance)
    partitions = partitions_name(job.dataset)
    if not instance.has_dynamic_partition(partitions, job.job_id):
        instance.add_dynamic_partitions(partitions, [job.job_id])
    job_def = build_definitions(build_resources(settings)).resolve_job_def(
        dataset_job_name(job_name, job.dataset)
    )
    if log_level != "INFO":
        # A job waiting for its mapping leaves raw_upload unmaterialized: its checks and every
        # later step are skipped, and Dagster says of each blocking check that it "emitted no
        # result" although nothing downstream runs. The job's status says what happened.
        logging.getLogger("dagster._core.execution.plan.active").setLevel(logging.ERROR)
    result = job_def.execute_in_process(
        partition_key=job.job_id,
        instance=instance,
        tags={TENANT_TAG: job.tenant_id},
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        raise_on_error=False,
    )
    if result.success:
        return None
    error = first_step_error(result.get_step_failure_events(), result.get_asset_check_evaluations())
    try:
        marked = mark_failed(_engine(), job.job_id, error, only_running=True)
    except DBAPIError as exc:
        raise DatabaseUnavailableError(
            f"{job.job_id}: the run failed: {error}\nthe job could not be marked FAILED: "
            f"{_first_line(exc.orig)}\nrun `ingestion-pipeline retry {job.job_id}` once the "
            "database is back: the import resumes where it stopped"
        ) from exc
    return error if marked else None


def _revalidate_woken(job_id: str, log_level: str) -> dict[str, str]:
    """Run reprocess_job for the jobs a completed job woke (those waiting for its keys), and
    for the jobs those wake in turn, as request_sensor does when a daemon runs; the status
    each ended in."""
    from ingestion_pipeline.db.service import woken_by

    released: dict[str, str] = {}
    pending = [job_id]
    while pending:
        with _engine().connect() as conn:
            woken = woken_by(conn, pending.pop(0))
        for waiting in woken:
            with _engine().connect() as conn:
                job = get_job(conn, waiting)
            if job is not None and job.status is JobStatus.WAITING_FOR_REFERENCES:
                _materialize(job, "reprocess_job", log_level)
                pending.append(waiting)
                with _engine().connect() as conn:
                    released[waiting] = (get_job(conn, waiting) or job).status.value
    return released


def _first_line(error: BaseException | None) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


LAYOUT_NOTES = (
    ("skipped_before_header", "line(s) above the header"),
    ("footer", "line(s) after the data"),
)
# Jobs of datasets other than contacts also say which, and what their merge policy did.
DATASET_SUMMARY_KEYS = ("dataset", "rows_inserted", "rows_updated", "rows_unchanged")
SUMMARY_KEYS = (
    "job_id",
    "tenant",
    "status",
    "total_rows",
    "processed_rows",
    "issue_count",
    "contacts_created",
)


def _print_json(head: dict[str, Any], job_id: str) -> None:
    """One JSON object whose last key, `issues`, is streamed: memory does not grow with it."""
    out = sys.stdout
    out.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "issues": [')
    with _engine().connect() as conn:
        for n, issue in enumerate(iter_issues(conn, job_id)):
            out.write((", " if n else "") + json.dumps(public_issue(issue), ensure_ascii=False))
    out.write("]}\n")
    out.flush()


def mapping_request(summary: dict[str, Any]) -> dict[str, Any]:
    """What a job waiting in NEEDS_MAPPING asks of a person: its header, sample values per
    column, the suggested mapping and the required fields it could not map."""
    mapping = summary.get("mapping") or {}
    layout = summary.get("layout") or {}
    suggestion = ColumnMapping.from_json(mapping)
    return {
        "header": layout.get("header", []),
        "samples": layout.get("samples", {}),
        "suggested_mapping": suggestion.fields,
        "decided_by": suggestion.methods,
        "unmapped": suggestion.unmapped,
    }


def _print_mapping_request(summary: dict[str, Any]) -> None:
    request = mapping_request(summary)
    print(f"  the columns could not all be mapped: {', '.join(request['unmapped'])} unmapped")
    print("  columns (sample values):")
    for column in request["header"]:
        values = ", ".join(repr(v) for v in request["samples"].get(column, [])[:3])
        print(f"    {column!r}: {values}")
    print("  suggested:")
    for line in ColumnMapping.from_json(summary["mapping"]).describe().splitlines():
        print(f"    {line}")
    print(
        f"  confirm with: ingestion-pipeline map {summary['job_id']} FIELD=COLUMN ... "
        f"(fields: {', '.join(mappable_fields(dataset_named(summary['dataset'])))}; "
        "FIELD= leaves it empty)"
    )


def _print_summary(summary: dict[str, Any], as_json: bool, limit: int | None = 10) -> None:
    waiting = summary["status"] == JobStatus.NEEDS_MAPPING.value
    if as_json:
        head = {k: summary[k] for k in SUMMARY_KEYS}
        if summary["dataset"] != DEFAULT_DATASET:
            head.update({k: summary[k] for k in DATASET_SUMMARY_KEYS})
            head["revalidated"] = summary.get("revalidated", {})
        if waiting:
            head.update(mapping_request(summary))
        _print_json(head, summary["job_id"])
        return
    print(f"{summary['job_id']}  {summary['status']}  (tenant {summary['tenant']})")
    if summary["status"] == JobStatus.FAILED.value:
        return
    if waiting:
        _print_mapping_request(summary)
        return
    if summary["dataset"] == DEFAULT_DATASET:
        loaded = f"contacts created: {summary['contacts_created']}"
    else:
        loaded = (
            f"{summary['dataset']} inserted: {summary['rows_inserted']}, updated: "
            f"{summary['rows_updated']}, unchanged: {summary['rows_unchanged']}"
        )
    print(
        f"  rows: {summary['total_rows']} read, {summary['processed_rows']} processed; "
        f"{loaded}; open issues: {summary['issue_count']}"
    )
    for released, status in summary.get("revalidated", {}).items():
        print(f"  revalidated, as it waited for these rows: {released}  {status}")
    if summary["status"] == JobStatus.WAITING_FOR_REFERENCES.value:
        print(
            "  waiting for rows of another dataset: it is validated again when a job of that "
            "dataset completes for this tenant"
        )
    if summary["encoding"]:
        print(f"  file: {summary['file']} ({summary['encoding']}, {summary['delimiter']})")
    if summary.get("mapping"):
        mapping = summary["mapping"]
        fields = ", ".join(
            f"{k} <- {' | '.join(mapping['fields'][k])}"
            for k in mappable_fields(dataset_named(summary["dataset"]))
            if k in mapping["fields"]
        )
        how = mapping.get("source", "")
        how += f", profile {mapping['profile']}" if mapping.get("profile") else ""
        print(f"  columns ({how}): {fields}")
    layout = summary.get("layout") or {}
    skipped = [f"{len(layout[k])} {label}" for k, label in LAYOUT_NOTES if layout.get(k)]
    if skipped:
        print(f"  not records: {'; '.join(skipped)}")
    shown = 0
    with _engine().connect() as conn:
        for issue in iter_issues(conn, summary["job_id"], limit=limit):
            rows = ", ".join(map(str, issue["rows"][:8]))
            rows += ", ..." if len(issue["rows"]) > 8 else ""
            print(f"  - {issue['kind']} [{issue['field']}] rows {rows}: {issue['message']}")
            shown += 1
    if shown < summary["issue_count"]:
        print(f"  ... and {summary['issue_count'] - shown} more issue(s)")


def _cmd_import(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.is_dir() or args.dry_run:
        return _import_folder(path, args)
    summary = run_import(path, args.tenant, _log_level(args), args.dataset or DEFAULT_DATASET)
    return _finish(summary, args.json)


def _import_folder(root: Path, args: argparse.Namespace) -> int:
    """Every file under `root` (or the one file `root`, with --dry-run): each file's dataset
    from its folder or name (see folder_import), then, unless --dry-run, all of them imported
    together in one run; the exit code says how the jobs ended (see EXIT_WAITING)."""
    from ingestion_pipeline import folder_import
    from ingestion_pipeline.instance import ensure_dagster_home
    from ingestion_pipeline.resources import database_engine, landing_zone

    if root.is_dir():
        files = folder_import.folder_files(root, args.tenant, args.dataset)
    elif root.is_file():
        how = "--dataset" if args.dataset else "default"
        files = [folder_import.FolderFile(root, root.name, args.dataset or DEFAULT_DATASET, how)]
    else:
        raise UsageError(f"{root}: no such file or folder")
    for file in files:
        if file.skipped:
            print(f"skipped {file.relative}: {file.skipped}", file=sys.stderr)
    wanted = folder_import.in_load_order(files)
    if not wanted:
        raise UsageError(f"{root}: no file to import")
    settings = load_settings()
    ensure_dagster_home(settings)  # a missing setting is said before anything is written
    engine = database_engine(settings)
    if args.dry_run:
        for file in wanted:
            _print_plan(folder_import.plan(engine, args.tenant, file), args.json)
        if not args.json:
            print(f"{len(wanted)} file(s) would be imported; nothing was (--dry-run)")
        return EXIT_OK
    jobs = folder_import.register(engine, landing_zone(settings), args.tenant, wanted)
    if not folder_import.run_batch(settings, args.tenant, jobs, _log_level(args)):
        print("ingestion-pipeline: the import run failed; see each job's error", file=sys.stderr)
    from ingestion_pipeline.importer import mark_failed

    statuses = []
    for job in jobs:
        # A job the run left half-done fails with a message, as after a single import.
        mark_failed(engine, job.job_id, "the import run stopped", only_running=True)
        released = _revalidate_woken(job.job_id, _log_level(args))
        with engine.connect() as conn:
            done = get_job(conn, job.job_id)
            assert done is not None
            summary = {**job_summary(done), "run_error": None}
        if released:
            summary["revalidated"] = released
        _print_summary(summary, args.json)
        statuses.append(done.status)
    if any(status is JobStatus.FAILED for status in statuses):
        return EXIT_REJECTED
    if any(status is not JobStatus.COMPLETED for status in statuses):
        return EXIT_WAITING
    return EXIT_OK


def _print_plan(planned: dict[str, Any], as_json: bool) -> None:
    """One file of a --dry-run: its dataset, format and the mapping it would get."""
    if as_json:
        print(json.dumps({k: v for k, v in planned.items() if k != "described"}))
        return
    print(f"{planned['file']}  {planned['dataset']} ({planned['decided_by']})")
    if "error" in planned:
        print(f"  would be rejected: {planned['error']}")
        return
    where = ", ".join(
        str(planned[k]) for k in ("format", "encoding", "delimiter", "sheet") if planned.get(k)
    )
    print(f"  format: {where}")
    print(f"  mapping ({planned['mapping_source']}):")
    for line in planned["described"].splitlines():
        print(f"    {line}")
    if planned["needs_mapping"]:
        print(f"  would wait for a person to map: {', '.join(planned['unmapped'])}")


def _log_level(args: argparse.Namespace) -> str:
    return "INFO" if getattr(args, "verbose", False) else "ERROR"


def _finish(summary: dict[str, Any], as_json: bool) -> int:
    """Print a job summary and turn its status into the exit code."""
    if summary.get("run_error"):
        print(f"{summary['job_id']}: the run failed: {summary['run_error']}", file=sys.stderr)
        _print_summary(summary, as_json)
        return EXIT_ERROR
    if summary["status"] == JobStatus.FAILED.value:
        print(f"{summary['file']}: import rejected: {summary['error']}", file=sys.stderr)
        _print_summary(summary, as_json)
        return EXIT_REJECTED
    _print_summary(summary, as_json)
    settled = (
        JobStatus.COMPLETED.value,
        JobStatus.NEEDS_REVIEW.value,
        JobStatus.NEEDS_MAPPING.value,
        JobStatus.WAITING_FOR_REFERENCES.value,
    )
    if summary["status"] in settled:
        if summary["error"]:
            print(f"{summary['job_id']}: {summary['error']}", file=sys.stderr)
            return EXIT_ERROR
        return EXIT_OK
    print(f"{summary['job_id']}: the run stopped in state {summary['status']}", file=sys.stderr)
    return EXIT_ERROR


def _engine():
    from ingestion_pipeline.resources import database_engine

    return database_engine(load_settings())


def _job(conn, job_id: str, tenant: str | None) -> ImportJob:
    """The job, if it exists and (with --tenant) belongs to that tenant; else a usage error."""
    job = get_job(conn, job_id)
    if job is None or (tenant is not None and job.tenant_id != tenant):
        scope = f" for tenant {tenant}" if tenant is not None else ""
        raise UsageError(f"no import job {job_id!r}{scope}")
    return job


def _open_job(job_id: str, tenant: str | None) -> ImportJob:
    with _engine().connect() as conn:
        return _job(conn, job_id, tenant)


def _editable_job(job_id: str, tenant: str | None) -> ImportJob:
    job = _open_job(job_id, tenant)
    if job.status is JobStatus.COMPLETED:
        raise UsageError(f"job {job_id} is already COMPLETED; its {job.dataset} are loaded")
    if job.status not in TAKES_DECISIONS:
        raise UsageError(
            f"job {job_id} is {job.status.value}; only jobs under review take decisions"
        )
    return job


def _record(job: ImportJob, decisions: list, source: str) -> int:
    from ingestion_pipeline.db.decisions import ReviewError, record_decisions

    try:
        with _engine().begin() as conn:
            return record_decisions(conn, job, decisions, source)
    except ReviewError as exc:
        raise UsageError(str(exc)) from exc


def _row_number(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise UsageError(f"ROW must be a record number, got {value!r}") from None
    if number < 1:
        raise UsageError(f"ROW must be 1 or more, got {number}")
    return number


def _cmd_jobs(args: argparse.Namespace) -> int:
    with _engine().connect() as conn:
        jobs = list_jobs(conn, tenant_id=args.tenant, status=args.status)
    keys = (
        "job_id",
        "tenant_id",
        "dataset",
        "status",
        "source_key",
        "total_rows",
        "processed_rows",
        "issue_count",
        "contacts_created",
        "rows_inserted",
        "rows_updated",
        "rows_unchanged",
        "error",
    )
    if args.ids:
        print(",".join(j.job_id for j in jobs))
        return EXIT_OK
    if args.json:
        out = [
            {**{k: getattr(j, k) for k in keys}, "status": j.status.value}
            | {"created_at": j.created_at.isoformat()}
            for j in jobs
        ]
        print(json.dumps(out, ensure_ascii=False))
        return EXIT_OK
    if not jobs:
        print("no import jobs")
    for j in jobs:
        loaded = (
            f"contacts {j.contacts_created}"
            if j.dataset == DEFAULT_DATASET
            else f"{j.dataset} +{j.rows_inserted} ~{j.rows_updated}"
        )
        print(
            f"{j.job_id:<48} {j.status.value:<12} {j.tenant_id:<16} {j.dataset:<12} "
            f"rows {j.processed_rows}/{j.total_rows or 0}  issues {j.issue_count}  "
            f"{loaded}"
        )
    return EXIT_OK


def _cmd_issues(args: argparse.Namespace) -> int:
    with _engine().connect() as conn:
        summary = job_summary(_job(conn, args.job, args.tenant))
    if args.json:
        keys = ("job_id", "tenant", "status", "issue_count")
        _print_json({k: summary[k] for k in keys}, summary["job_id"])
    else:
        _print_summary(summary, False, limit=None)
    return EXIT_OK


def _cmd_fix(args: argparse.Namespace) -> int:
    from ingestion_pipeline.review_files import Decision

    job = _editable_job(args.job, args.tenant)
    changes: dict[str, str | None] = {}
    for assignment in args.assignments:
        name, sep, value = assignment.partition("=")
        name = name.strip().lower()
        if not sep:
            raise UsageError(f"expected FIELD=VALUE, got {assignment!r}")
        fields = job.declaration.field_names
        if name not in fields:
            raise UsageError(f"unknown field {name!r}; fields: {', '.join(fields)}")
        changes[name] = value.strip() or None
    row = _row_number(args.row)
    _record(job, [Decision(row, "fix", changes)], "cli")
    fields = ", ".join(f"{k}={v!r}" for k, v in changes.items())
    print(
        f"{job.job_id}: record {row} will be fixed ({fields}); "
        f"run `ingestion-pipeline reprocess {job.job_id}` to apply"
    )
    return EXIT_OK


def _cmd_discard(args: argparse.Namespace) -> int:
    from ingestion_pipeline.review_files import Decision

    job = _editable_job(args.job, args.tenant)
    rows = [_row_number(r) for r in args.rows]
    _record(job, [Decision(n, "discard") for n in rows], "cli")
    print(
        f"{job.job_id}: record(s) {', '.join(map(str, rows))} will be discarded; "
        f"run `ingestion-pipeline reprocess {job.job_id}` to apply"
    )
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from ingestion_pipeline.db.decisions import rows_for_review
    from ingestion_pipeline.review_files import write_issues_csv

    with _engine().connect() as conn:
        job = _job(conn, args.job, args.tenant)
        if args.out:
            with Path(args.out).open("wb") as out:
                write_issues_csv(rows_for_review(conn, job.job_id), out)
            print(f"{job.job_id}: rows to review written to {args.out}", file=sys.stderr)
        else:
            write_issues_csv(rows_for_review(conn, job.job_id), sys.stdout.buffer)
            sys.stdout.flush()
    return EXIT_OK


def _cmd_apply(args: argparse.Namespace) -> int:
    from ingestion_pipeline.review_files import DecisionFileError, parse_decisions

    job = _editable_job(args.job, args.tenant)
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        with path.open("rb") as stream:
            decisions = parse_decisions(stream, path.name)
    except DecisionFileError as exc:
        raise UsageError(str(exc)) from exc
    count = _record(job, decisions, f"cli:{path.name}")
    print(
        f"{job.job_id}: {count} decision(s) recorded from {path}; "
        f"run `ingestion-pipeline reprocess {job.job_id}` to apply"
    )
    return EXIT_OK


def _cmd_reprocess(args: argparse.Namespace) -> int:
    return _rerun(args, "reprocess_job")


def _cmd_retry(args: argparse.Namespace) -> int:
    return _rerun(args, "import_job")


def _rerun(args: argparse.Namespace, job_name: str) -> int:
    """Run `job_name` for a job unless it is COMPLETED; print the import summary."""
    job = _open_job(args.job, args.tenant)
    run_error = None
    if job.status is not JobStatus.COMPLETED:
        run_error = _materialize(job, job_name, _log_level(args))
        _revalidate_woken(job.job_id, _log_level(args))
    with _engine().connect() as conn:
        summary = job_summary(_job(conn, args.job, args.tenant))
    return _finish({**summary, "run_error": run_error}, args.json)


def _cmd_map(args: argparse.Namespace) -> int:
    from ingestion_pipeline.importer import confirm_mapping
    from ingestion_pipeline.reading.mapping import MappingError
    from ingestion_pipeline.resources import landing_zone

    job = _open_job(args.job, args.tenant)
    if job.status not in (JobStatus.NEEDS_MAPPING, JobStatus.PENDING):
        raise UsageError(
            f"job {job.job_id} is {job.status.value}; only a job waiting in NEEDS_MAPPING "
            "(or not started yet) takes a mapping"
        )
    assignments: dict[str, list[str]] = {}
    for assignment in args.assignments:
        name, sep, column = assignment.partition("=")
        if not sep:
            raise UsageError(f"expected FIELD=COLUMN, got {assignment!r}")
        assignments.setdefault(name.strip().lower(), []).append(column)
    try:
        mapping = confirm_mapping(_engine(), landing_zone(load_settings()), job, assignments)
    except MappingError as exc:
        raise UsageError(f"{job.job_id}: {exc}") from exc
    if not args.json:
        print(f"{job.job_id}: mapping confirmed and remembered for tenant {job.tenant_id}:")
        for line in mapping.describe().splitlines():
            print(f"  {line}")
    return _rerun(args, "import_job")


def _cmd_dagster_storage_url(args: argparse.Namespace) -> int:
    from ingestion_pipeline.instance import dagster_storage_url

    try:
        print(dagster_storage_url(load_settings()))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    uvicorn.run(
        "ingestion_pipeline.service.app:app_from_environment",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning" if not args.verbose else "info",
        proxy_headers=False,
    )
    return EXIT_OK


def _cmd_worker(args: argparse.Namespace) -> int:
    import signal

    from ingestion_pipeline.worker import Worker

    settings = load_settings()
    if not settings.warm_max_bytes:
        raise UsageError("the warm lane is off (WARM_LANE_MAX_BYTES=0): no worker needed")
    worker = Worker(settings, batch=args.batch, per_tenant=args.per_tenant)
    if args.metrics_port:
        from prometheus_client import start_http_server

        from ingestion_pipeline.metrics import REGISTRY, DatabaseCollector

        # The worker's own histogram, and the queue's gauges read from the database.
        REGISTRY.register(DatabaseCollector(worker.engine))
        start_http_server(args.metrics_port, addr="127.0.0.1", registry=REGISTRY)
    # SIGTERM finishes the run in hand, then stops; SIGKILL loses nothing (leases run out).
    signal.signal(signal.SIGTERM, lambda *_: worker.stop.set())
    try:
        worker.run(once=args.once)
    except KeyboardInterrupt:
        worker.stop.set()
    return EXIT_OK


def _cmd_api_key(args: argparse.Namespace) -> int:
    from ingestion_pipeline.db.service import create_api_key, list_api_keys, revoke_api_key

    with _engine().begin() as conn:
        if args.action == "create":
            if not args.tenant:
                raise UsageError("api-key create needs --tenant")
            key_id, key = create_api_key(conn, args.tenant, args.name or "")
            print(key)
            print(
                f"key {key_id} for tenant {args.tenant}: shown once, stored hashed",
                file=sys.stderr,
            )
        elif args.action == "revoke":
            if not args.key_id:
                raise UsageError("api-key revoke needs KEY_ID (see `api-key list`)")
            if revoke_api_key(conn, args.key_id) is None:
                raise UsageError(f"no active key {args.key_id!r}")
            print(f"key {args.key_id} revoked")
        else:
            for key in list_api_keys(conn, args.tenant):
                state = f"revoked {key['revoked_at']:%Y-%m-%d}" if key["revoked_at"] else "active"
                print(f"{key['key_id']}  {key['tenant_id']:<16} {state:<18} {key['name']}")
    return EXIT_OK


def _cmd_tenant(args: argparse.Namespace) -> int:
    from ingestion_pipeline.db.service import (
        set_embed_origins,
        set_import_limit,
        set_webhook,
        tenant_config,
    )

    with _engine().begin() as conn:
        if args.no_limit:
            set_import_limit(conn, args.tenant, None, None)
        elif args.import_limit is not None:
            set_import_limit(conn, args.tenant, args.import_limit, args.window)
        if args.no_webhook:
            set_webhook(conn, args.tenant, None)
        elif args.webhook:
            if not args.webhook.startswith(("http://", "https://")):
                raise UsageError(f"--webhook must be an http(s) URL, got {args.webhook!r}")
            set_webhook(conn, args.tenant, args.webhook)
        if args.no_embed:
            set_embed_origins(conn, args.tenant, None)
        elif args.embed_origin:
            set_embed_origins(conn, args.tenant, [_origin(o) for o in args.embed_origin])
        config = tenant_config(conn, args.tenant)
    limit = config.get("import_limit")
    print(f"tenant {args.tenant}")
    print(
        f"  import limit: {limit} per {config['window_seconds']} s"
        if limit is not None
        else "  import limit: none"
    )
    print(f"  webhook: {config.get('webhook_url') or 'none'}")
    if config.get("webhook_url") and (args.webhook or args.show_secret):
        print(f"  webhook secret: {config['webhook_secret']}")
    print(f"  embed origins: {' '.join(config.get('embed_origins') or []) or 'none'}")
    return EXIT_OK


def _origin(value: str) -> str:
    """An origin as browsers send it: scheme://host[:port], nothing after."""
    from urllib.parse import urlsplit

    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise UsageError(
            f"--embed-origin takes an origin such as https://app.example.com, got {value!r}"
        )
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise UsageError(f"--embed-origin takes an origin only, got {value!r}")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _cmd_import_link(args: argparse.Namespace) -> int:
    from ingestion_pipeline.service.links import import_link

    try:
        link = import_link(
            _engine(),
            args.base_url,
            args.tenant,
            dataset=args.dataset,
            hours=args.hours,
            user=args.user,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(link))
    else:
        print(link["url"])
    return EXIT_OK


def _cmd_webhooks(args: argparse.Namespace) -> int:
    from ingestion_pipeline.db.service import list_deliveries
    from ingestion_pipeline.service.webhooks import deliver_until_stopped, retry_policy

    if args.action == "deliver":
        try:
            sent = deliver_until_stopped(_engine(), retry_policy(load_settings()), once=args.once)
        except KeyboardInterrupt:
            return EXIT_OK
        print(f"{sent} delivery attempt(s)")
        return EXIT_OK
    if not args.tenant:
        raise UsageError("webhooks log needs --tenant")
    with _engine().connect() as conn:
        deliveries = list_deliveries(conn, args.tenant, job_id=args.job, limit=args.limit)
    for d in deliveries:
        status = d["last_status"] if d["last_status"] is not None else "-"
        print(
            f"{d['created_at']:%Y-%m-%d %H:%M:%S}  {d['event']:<18} {d['state']:<9} "
            f"attempts {d['attempts']}  last {status}  {d['job_id']}  {d['last_error'] or ''}"
        )
    return EXIT_OK


def _cmd_review_link(args: argparse.Namespace) -> int:
    from ingestion_pipeline.db.service import service_secret
    from ingestion_pipeline.service.links import review_link_token

    job = _open_job(args.job, args.tenant)
    with _engine().begin() as conn:
        secret = service_secret(conn, "session")
    token = review_link_token(secret, job.tenant_id, job.job_id, args.hours)
    print(f"{args.base_url.rstrip('/')}/review/{job.job_id}?token={token}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ingestion-pipeline",
        description="Import contact files into PostgreSQL through Dagster assets, and review them.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, help_text: str, handler, *, job: bool = False
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        if job:
            sub.add_argument("job", metavar="JOB", help="import job id (see `jobs`)")
            sub.add_argument("--tenant", type=_tenant, help="act only on this tenant's jobs")
        return sub

    p = command(
        "import",
        "import a file, or every file under a folder, for a tenant (runs in-process)",
        _cmd_import,
    )
    p.add_argument(
        "path",
        metavar="PATH",
        help="file to import (CSV/TSV/TXT, an Excel or OpenDocument workbook, JSON or NDJSON), "
        "or a folder: each file's dataset from its folder (DIR/orders/...) or a name that "
        "starts with one (orders_2025.ndjson); a file naming none is skipped, or --dataset",
    )
    p.add_argument("--tenant", required=True, type=_tenant, help="tenant id (a slug)")
    p.add_argument(
        "--dataset",
        default=None,
        choices=LOAD_ORDER,
        help=f"what the file holds (default {DEFAULT_DATASET}); in a folder, what a file that "
        "names no dataset holds",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print each file with its dataset, format and the mapping it would get; import "
        "nothing",
    )
    p.add_argument(
        "--json", action="store_true", help="print one JSON object (a folder: one per job)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="show the run's logs")

    p = command("jobs", "list import jobs, newest first", _cmd_jobs)
    p.add_argument("--tenant", type=_tenant, help="only this tenant's jobs")
    p.add_argument("--status", type=str.upper, choices=[s.value for s in JobStatus])
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument(
        "--ids",
        action="store_true",
        help="print only the job ids, comma-separated (for `dagster job backfill --partitions`)",
    )

    p = command("issues", "show a job's open issues", _cmd_issues, job=True)
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = command("fix", "correct fields of a record (applied by `reprocess`)", _cmd_fix, job=True)
    p.add_argument("row", metavar="ROW", help="record number, as in `issues`")
    p.add_argument(
        "assignments",
        metavar="FIELD=VALUE",
        nargs="+",
        help=f"new values; fields: {', '.join(CANONICAL_FIELDS)}",
    )

    p = command("discard", "set records aside (applied by `reprocess`)", _cmd_discard, job=True)
    p.add_argument("rows", metavar="ROW", nargs="+", help="record numbers, as in `issues`")

    p = command("export", "write the rows to review as CSV", _cmd_export, job=True)
    p.add_argument("--out", metavar="FILE", help="write here instead of to stdout")

    p = command("apply", "record the decisions of a review CSV", _cmd_apply, job=True)
    p.add_argument("file", metavar="FILE", help="the exported CSV with the action column filled")

    p = command("reprocess", "apply decisions, revalidate, load if clean", _cmd_reprocess, job=True)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("-v", "--verbose", action="store_true", help="show the run's logs")

    p = command(
        "map",
        "confirm which columns hold which field; the import then continues",
        _cmd_map,
        job=True,
    )
    p.add_argument(
        "assignments",
        metavar="FIELD=COLUMN",
        nargs="+",
        help=f"fields: {', '.join(MAPPABLE_FIELDS)}; repeat a field for fallback columns "
        "(the first non-blank per row wins); FIELD= leaves a field empty",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("-v", "--verbose", action="store_true", help="show the run's logs")

    command(
        "dagster-storage-url",
        "print the database URL for Dagster's storage (DAGSTER_POSTGRES_URL)",
        _cmd_dagster_storage_url,
    )

    p = command("serve", "start the HTTP API and review page (uvicorn)", _cmd_serve)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")

    p = command("worker", "run small jobs the moment they arrive (the warm lane)", _cmd_worker)
    p.add_argument("--batch", type=int, default=32, help="jobs claimed at a time (default 32)")
    p.add_argument(
        "--per-tenant", type=int, default=8, help="of which per tenant, in turn (default 8)"
    )
    p.add_argument("--once", action="store_true", help="stop when no job is waiting")
    p.add_argument(
        "--metrics-port", type=int, help="serve Prometheus metrics at http://127.0.0.1:PORT/"
    )

    p = command("api-key", "create, list or revoke a tenant's API keys", _cmd_api_key)
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("key_id", metavar="KEY_ID", nargs="?", help="the key to revoke")
    p.add_argument("--tenant", type=_tenant, help="the tenant (create: required)")
    p.add_argument("--name", help="a label for the key (create)")

    p = command("tenant", "show or set a tenant's import limit and webhook", _cmd_tenant)
    p.add_argument("tenant", metavar="TENANT", type=_tenant)
    p.add_argument("--import-limit", type=int, metavar="N", help="at most N imports per window")
    p.add_argument("--window", type=int, default=3600, metavar="SECONDS", help="(default 3600)")
    p.add_argument("--no-limit", action="store_true", help="lift the import limit")
    p.add_argument("--webhook", metavar="URL", help="send job events here, signed")
    p.add_argument("--no-webhook", action="store_true", help="stop sending job events")
    p.add_argument("--show-secret", action="store_true", help="print the webhook secret")
    p.add_argument(
        "--embed-origin",
        action="append",
        metavar="ORIGIN",
        help="an origin whose pages may embed the import flow and hear its events "
        "(repeat for several; replaces the list)",
    )
    p.add_argument("--no-embed", action="store_true", help="no origin may embed the flow")

    p = command("webhooks", "send due webhook deliveries, or show the delivery log", _cmd_webhooks)
    p.add_argument("action", choices=["deliver", "log"])
    p.add_argument("--once", action="store_true", help="deliver: stop when nothing is due")
    p.add_argument("--tenant", type=_tenant, help="log: the tenant (required)")
    p.add_argument("--job", help="log: only this job's events")
    p.add_argument("--limit", type=int, default=50, help="log: at most this many (default 50)")

    p = command(
        "review-link", "print a signed link to a job's review page", _cmd_review_link, job=True
    )
    p.add_argument("--hours", type=float, default=24, help="valid for (default 24)")
    p.add_argument("--base-url", default="http://127.0.0.1:8000", help="where `serve` listens")

    p = command(
        "import-link",
        "print a signed link that opens the import flow for a tenant (a page or an iframe)",
        _cmd_import_link,
    )
    p.add_argument("--tenant", type=_tenant, required=True, help="the tenant it imports for")
    p.add_argument("--dataset", choices=LOAD_ORDER, help="take files of this dataset only")
    p.add_argument("--hours", type=float, default=24, help="valid for (default 24)")
    p.add_argument("--user", help="a label of the person, recorded on their jobs")
    p.add_argument("--base-url", default="http://127.0.0.1:8000", help="where `serve` listens")
    p.add_argument("--json", action="store_true", help="print the link and what it carries")

    p = command("retry", "run a failed or interrupted import again (resumes)", _cmd_retry, job=True)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("-v", "--verbose", action="store_true", help="show the run's logs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (UsageError, DatabaseUnavailableError, StorageSettingsError) as exc:
        print(f"ingestion-pipeline: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except DBAPIError as exc:
        if not exc.connection_invalidated and not isinstance(exc, OperationalError):
            raise
        print(f"ingestion-pipeline: database unavailable: {_first_line(exc.orig)}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
