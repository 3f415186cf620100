"""The warm lane: a long-lived process with the code location loaded that runs small jobs the
moment they arrive, as Dagster runs on the instance (in-process), so the UI shows them as any
other run, tagged with the tenant and `lane=warm`.

A worker LISTENs for NOTIFY on the queue's channel, claims jobs with SKIP LOCKED under a lease
(tenants in turn), and runs each tenant's claimed jobs together in one run of
import_batch_job. Its heartbeat extends the lease while it works; if it dies, the lease runs
out and another worker claims the jobs: one it never started runs as if new, one in flight
resumes through the job's routing (its staged rows kept) alone, and a job that killed two
processes is FAILED (import_jobs.after_crash). All state lives in PostgreSQL, so any number of
workers on any number of machines share the work.
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable

from ingestion_pipeline.batch import BATCH_OP, import_batch_job, pooled_storage
from ingestion_pipeline.constants import TENANT_TAG, JobStatus
from ingestion_pipeline.db.import_jobs import after_crash, datasets_of
from ingestion_pipeline.db.warm_queue import (
    CHANNEL,
    Claim,
    claim,
    extend_lease,
    finish,
    set_run,
)
from ingestion_pipeline.metrics import observe_job
from ingestion_pipeline.settings import Settings

LANE_TAG = "lane"
LOG = logging.getLogger("ingestion_pipeline.worker")


def _log(event: str, **fields: object) -> None:
    """One JSON line per event, with the job id(s) it concerns."""
    print(json.dumps({"event": event, **fields}, default=str), file=sys.stderr, flush=True)


class Worker:
    """One worker process's loop; `stop` ends it between runs."""

    def __init__(
        self,
        settings: Settings,
        *,
        batch: int = 32,
        per_tenant: int = 8,
        name: str | None = None,
    ) -> None:
        from ingestion_pipeline.definitions import build_definitions
        from ingestion_pipeline.instance import get_instance
        from ingestion_pipeline.resources import build_resources, database_engine

        self.settings = settings
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.batch = batch
        self.per_tenant = per_tenant
        self.lease = settings.warm_lease_seconds
        self.engine = database_engine(settings)
        self.instance = get_instance(settings)
        pooled_storage(self.instance)
        self.job_def = build_definitions(build_resources(settings)).resolve_job_def(
            import_batch_job.name
        )
        self.stop = threading.Event()
        self.jobs_done = 0
        self._claimed = time.monotonic()

    def run(self, *, once: bool = False, on_claim: Callable[[list[Claim]], None] | None = None):
        """Claim and run jobs until stopped (`once`: until the queue has none free)."""
        listener = self._listen()
        beat = threading.Thread(target=self._heartbeat, daemon=True)
        beat.start()
        _log("worker.started", worker=self.name, lease_seconds=self.lease)
        try:
            while not self.stop.is_set():
                with self.engine.begin() as conn:
                    claims = claim(
                        conn,
                        self.name,
                        limit=self.batch,
                        per_tenant=self.per_tenant,
                        lease_seconds=self.lease,
                    )
                if not claims:
                    if once:
                        return
                    self._wait(listener, timeout=min(5.0, self.lease / 3))
                    continue
                if on_claim is not None:
                    on_claim(claims)
                self._claimed = time.monotonic()
                self._run_claims(claims)
        finally:
            self.stop.set()
            listener.close()
            _log("worker.stopped", worker=self.name, jobs=self.jobs_done)

    def _listen(self):
        raw = self.engine.raw_connection()
        connection = raw.driver_connection
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"LISTEN {CHANNEL}")
        return raw

    @staticmethod
    def _wait(listener, timeout: float) -> None:
        connection = listener.driver_connection
        if not connection.notifies:
            select.select([connection], [], [], timeout)
        connection.poll()
        connection.notifies.clear()

    def _run_claims(self, claims: list[Claim]) -> None:
        retried = [c for c in claims if c.claims > 1]
        fresh = [c for c in claims if c.claims == 1]
        groups: list[list[Claim]] = []
        if retried:
            self._fail_dead_runs(retried)
            with self.engine.begin() as conn:
                outcome = after_crash(conn, [c.job_id for c in retried], "a worker died")
                over = [c.job_id for c in retried if outcome.get(c.job_id) is JobStatus.FAILED]
                finish(conn, over, self.name)
            for job_id in over:
                _log("job.failed_after_crash", job_id=job_id, worker=self.name)
            # A job a dead worker had in hand runs alone: it may be what killed it.
            groups += [[c] for c in retried if c.job_id not in over]
        by_tenant: dict[str, list[Claim]] = defaultdict(list)
        for c in fresh:
            by_tenant[c.tenant_id].append(c)
        # The smallest groups first: a tenant's single upload is not queued behind a burst.
        groups += sorted(by_tenant.values(), key=len)
        for group in groups:
            if self.stop.is_set():
                break
            try:
                self._run_group(group)
            except Exception as exc:
                # The claims stay until their lease runs out; then they are taken again.
                ids = [c.job_id for c in group]
                _log("run.error", worker=self.name, job_ids=ids, error=repr(exc))

    def _fail_dead_runs(self, claims: list[Claim]) -> None:
        """Runs of a dead worker stay STARTED in Dagster's storage: record them as failed."""
        for run_id in {c.previous_run for c in claims if c.previous_run}:
            run = self.instance.get_run_by_id(run_id)
            if run is not None and not run.is_finished:
                self.instance.report_run_failed(run, "the worker running it died")

    def _run_group(self, group: list[Claim]) -> None:
        from dagster._core.utils import make_new_run_id

        from ingestion_pipeline.partitions import partitions_name

        ids = [c.job_id for c in group]
        tenant = group[0].tenant_id
        run_id = make_new_run_id()
        started = time.monotonic()
        with self.engine.begin() as conn:
            # Only what this worker still holds: a claim whose lease ran out (a stall) may
            # have been taken by another worker, which runs it instead.
            held = set_run(conn, ids, self.name, run_id)
            datasets = datasets_of(conn, held)
        lost = [job_id for job_id in ids if job_id not in held]
        if lost:
            _log("claims.lost", worker=self.name, job_ids=lost)
        ids = [job_id for job_id in ids if job_id in held]
        if not ids:
            return
        by_dataset: dict[str, list[str]] = defaultdict(list)
        for job_id, dataset in datasets.items():
            by_dataset[dataset].append(job_id)
        for dataset, keys in by_dataset.items():
            # One look-up per dataset; partitions that exist already are left as they are.
            self.instance.add_dynamic_partitions(partitions_name(dataset), keys)
        result = self.job_def.execute_in_process(
            run_config={
                "ops": {BATCH_OP: {"config": {"job_ids": ids}}},
                # Every event is in the run's log in the UI; the console keeps warnings.
                "loggers": {"console": {"config": {"log_level": "WARNING"}}},
            },
            instance=self.instance,
            run_id=run_id,
            tags={TENANT_TAG: tenant, LANE_TAG: "warm", "batch_size": str(len(ids))},
            raise_on_error=False,
        )
        success = result.success
        with self.engine.begin() as conn:
            finish(conn, ids, self.name)
        self.jobs_done += len(ids)
        seconds = time.monotonic() - started
        for _ in ids:
            observe_job("warm", time.monotonic() - self._claimed)
        _log(
            "run.finished",
            worker=self.name,
            run_id=run_id,
            tenant=tenant,
            job_ids=ids,
            success=success,
            seconds=round(seconds, 3),
        )

    def _heartbeat(self) -> None:
        """Extend the leases of everything this worker holds, from its claim to its finish."""
        while not self.stop.wait(self.lease / 3):
            try:
                with self.engine.begin() as conn:
                    extend_lease(conn, self.name, self.lease)
            except Exception as exc:  # the next beat tries again; the lease is the limit
                _log("heartbeat.error", worker=self.name, error=repr(exc))
