"""`ingestion-pipeline`: import files and inspect jobs from a terminal."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ingestion_pipeline.constants import TENANT_TAG, JobStatus
from ingestion_pipeline.db.jobs import NewJob, get_job, job_summary, register_jobs
from ingestion_pipeline.landing import (
    TENANT_PATTERN,
    InvalidKeyError,
    job_id_for,
    put_file,
    upload_key,
)
from ingestion_pipeline.settings import load_settings

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_REJECTED = 2


class UsageError(Exception):
    """A bad argument; printed without a traceback."""


def _tenant(value: str) -> str:
    if not TENANT_PATTERN.match(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a tenant id (a-z, 0-9, '-', '_'; at most 63 characters)"
        )
    return value


def run_import(path: Path, tenant: str, log_level: str = "WARNING") -> dict[str, Any]:
    """Put `path` into the landing zone for `tenant` and materialize its job in-process."""
    from dagster import materialize

    from ingestion_pipeline.assets import IMPORT_ASSETS
    from ingestion_pipeline.constants import IMPORT_JOBS_PARTITIONS
    from ingestion_pipeline.instance import get_instance
    from ingestion_pipeline.resources import build_resources, database_engine, landing_zone

    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        key = upload_key(tenant, path.name)
    except InvalidKeyError as exc:
        raise UsageError(str(exc)) from exc
    settings = load_settings()
    engine = database_engine(settings)
    info = put_file(landing_zone(settings), key, path)
    job_id = job_id_for(tenant, key, info.etag)
    with engine.begin() as conn:
        register_jobs(conn, [NewJob(job_id, tenant, key, info.etag, path.name)])
        job = get_job(conn, job_id)
    assert job is not None
    if job["status"] != JobStatus.COMPLETED.value:
        instance = get_instance(settings)
        if not instance.has_dynamic_partition(IMPORT_JOBS_PARTITIONS, job_id):
            instance.add_dynamic_partitions(IMPORT_JOBS_PARTITIONS, [job_id])
        materialize(
            IMPORT_ASSETS,
            partition_key=job_id,
            instance=instance,
            resources=build_resources(settings),
            tags={TENANT_TAG: tenant},
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
            raise_on_error=False,
        )
    with engine.connect() as conn:
        job = get_job(conn, job_id)
        assert job is not None
        return job_summary(conn, job)


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        keys = (
            "job_id",
            "tenant",
            "status",
            "total_rows",
            "processed_rows",
            "issue_count",
            "contacts_created",
            "issues",
        )
        print(json.dumps({k: summary[k] for k in keys}, ensure_ascii=False))
        return
    print(f"{summary['job_id']}  {summary['status']}  (tenant {summary['tenant']})")
    if summary["status"] == JobStatus.FAILED.value:
        return
    print(
        f"  rows: {summary['total_rows']} read, {summary['processed_rows']} processed; "
        f"contacts created: {summary['contacts_created']}; open issues: {summary['issue_count']}"
    )
    if summary["encoding"]:
        print(f"  file: {summary['file']} ({summary['encoding']}, {summary['delimiter']})")
    for issue in summary["issues"][:10]:
        rows = ", ".join(map(str, issue["rows"][:8])) + (", ..." if len(issue["rows"]) > 8 else "")
        print(f"  - {issue['kind']} [{issue['field']}] rows {rows}: {issue['message']}")
    if len(summary["issues"]) > 10:
        print(f"  ... and {len(summary['issues']) - 10} more issue(s)")


def _cmd_import(args: argparse.Namespace) -> int:
    summary = run_import(Path(args.path), args.tenant, "INFO" if args.verbose else "ERROR")
    if summary["status"] == JobStatus.FAILED.value:
        print(f"{args.path}: import rejected: {summary['error']}", file=sys.stderr)
        _print_summary(summary, args.json)
        return EXIT_REJECTED
    _print_summary(summary, args.json)
    if summary["status"] in (JobStatus.COMPLETED.value, JobStatus.NEEDS_REVIEW.value):
        return EXIT_OK
    print(f"{summary['job_id']}: the run stopped in state {summary['status']}", file=sys.stderr)
    return EXIT_ERROR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ingestion-pipeline",
        description="Import contact files into PostgreSQL through Dagster assets.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    p_import = commands.add_parser(
        "import", help="import a file for a tenant (runs the import job in-process)"
    )
    p_import.add_argument("path", help="CSV/TSV/TXT file to import")
    p_import.add_argument("--tenant", required=True, type=_tenant, help="tenant id (a slug)")
    p_import.add_argument("--json", action="store_true", help="print one JSON object")
    p_import.add_argument("-v", "--verbose", action="store_true", help="show the run's logs")
    p_import.set_defaults(handler=_cmd_import)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UsageError as exc:
        print(f"ingestion-pipeline: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
