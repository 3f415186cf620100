"""Which lane runs a job: the warm lane's workers (small jobs, at once) or the sensors and the
run queue (big ones, in processes that Dagster's run launchers place). Decided here only."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from ingestion_pipeline.db.import_jobs import ImportJob
from ingestion_pipeline.db.service import request_run
from ingestion_pipeline.db.warm_queue import enqueue
from ingestion_pipeline.settings import Settings

WARM = "warm"
QUEUE = "queue"


def warm_by_size(settings: Settings, size: int) -> bool:
    """An upload of `size` bytes is small enough for the warm lane."""
    return 0 < size <= settings.warm_max_bytes


def warm_job(settings: Settings, job: ImportJob) -> bool:
    """A job run again (a reprocess, a mapping confirmed) is small enough: by its rows once
    read, else by its file's size; a job of unknown size goes through the run queue."""
    if not settings.warm_max_bytes:
        return False
    if job.total_rows is not None:
        return job.total_rows <= settings.warm_max_rows
    return job.source_size is not None and warm_by_size(settings, job.source_size)


def request_job_run(
    conn: Connection, settings: Settings, job: ImportJob, job_name: str, source: str
) -> dict[str, Any]:
    """Run `job_name` on the job in the lane it belongs to: the warm queue (a worker is woken
    at commit) or a run request for the sensors."""
    if warm_job(settings, job):
        enqueue(conn, [(job.job_id, job.tenant_id)], source)
        return {"lane": WARM, "request_id": None}
    request_id = request_run(conn, job.tenant_id, job.job_id, job_name, source)
    return {"lane": QUEUE, "request_id": request_id}
