"""The warm lane for real: `serve` and `ingestion-pipeline worker` processes on the test
database; an upload is claimed at once (NOTIFY), runs as a Dagster run on the instance with its
materializations and checks, and a worker killed with SIGKILL loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, RunsFilter
from dagster._core.instance.ref import InstanceRef

from ingestion_pipeline_tests.helpers import (
    Client,
    ServiceProcess,
    cli_command,
    cli_env,
    csv_text,
    empty_database,
    new_key,
    rows,
)

pytestmark = pytest.mark.slow

ASSETS = {"raw_upload", "staging_rows", "reviewed_staging", "import_issues", "contacts"}


class Lane:
    """`serve` and workers with the warm lane on, sharing a database and an instance."""

    def __init__(self, database_url: str, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.env = cli_env(
            database_url,
            root / "landing",
            self.home,
            WARM_LANE_MAX_BYTES=str(1024 * 1024),
            WARM_LANE_LEASE_SECONDS="4",
        )
        self.service = ServiceProcess(self.env, root / "serve.log")
        self.workers: list[subprocess.Popen] = []

    def start_worker(self, *args: str) -> subprocess.Popen:
        log = (self.root / f"worker{len(self.workers)}.log").open("wb")
        proc = subprocess.Popen(
            cli_command("worker", *args),
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.workers.append(proc)
        return proc

    def instance(self) -> DagsterInstance:
        return DagsterInstance.from_ref(InstanceRef.from_dir(str(self.home)))

    def stop(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        self.service.stop()


@pytest.fixture
def lane(database_url, engine, tmp_path) -> Iterator[Lane]:
    empty_database(engine)
    started = Lane(database_url, tmp_path)
    try:
        yield started
    finally:
        started.stop()


def wait_for(engine, job_ids: list[str], timeout: float = 120) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    statuses: dict[str, str] = {}
    while time.monotonic() < deadline:
        statuses = dict(
            rows(
                engine,
                "SELECT job_id, status FROM import_jobs WHERE job_id = ANY(:ids)",
                ids=job_ids,
            )
        )
        if len(statuses) == len(job_ids) and all(
            s in ("COMPLETED", "FAILED", "NEEDS_REVIEW", "NEEDS_MAPPING") for s in statuses.values()
        ):
            return statuses
        time.sleep(0.1)
    raise AssertionError(f"not finished in {timeout} s: {statuses}")


def test_an_api_upload_completes_through_the_warm_lane_as_a_dagster_run(lane, engine):
    lane.start_worker()
    client = Client(lane.service.url, new_key(engine, "acme"))
    response = client.upload(
        "c.csv", csv_text("ann@acme.io,Ann,Lee,Acme", "bob@acme.io,Bob,Ray,Acme")
    )
    assert response.status_code in (200, 201, 202), response.text
    job_id = response.json()["job_id"]
    assert wait_for(engine, [job_id]) == {job_id: "COMPLETED"}
    assert rows(engine, "SELECT count(*) FROM contacts WHERE tenant_id = 'acme'") == [(2,)]
    # The worker takes the job off the queue when its run has ended.
    deadline = time.monotonic() + 30
    while rows(engine, "SELECT count(*) FROM warm_queue") != [(0,)]:
        assert time.monotonic() < deadline, "the job stayed in the queue"
        time.sleep(0.1)
    instance = lane.instance()
    runs = instance.get_runs(RunsFilter(tags={"lane": "warm", "tenant": "acme"}))
    assert len(runs) == 1 and runs[0].is_success
    materialized = instance.get_records_for_run(
        runs[0].run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
    ).records
    mine = {
        r.event_log_entry.dagster_event.asset_key.to_user_string()
        for r in materialized
        if r.event_log_entry.dagster_event.partition == job_id
    }
    assert mine == ASSETS
    checks = instance.get_records_for_run(
        runs[0].run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    assert checks and all(
        c.event_log_entry.dagster_event.event_specific_data.passed for c in checks
    )


def test_a_tenants_burst_does_not_hold_back_another_tenants_single_file(lane, engine):
    burst_key, single_key = new_key(engine, "bursty"), new_key(engine, "quiet")
    burst = Client(lane.service.url, burst_key)
    ids = [
        burst.upload(f"b{n}.csv", csv_text(f"b{n}@acme.io,B,R,Acme")).json()["job_id"]
        for n in range(40)
    ]
    single = (
        Client(lane.service.url, single_key)
        .upload("s.csv", csv_text("s@quiet.io,S,Q,Quiet"))
        .json()["job_id"]
    )
    lane.start_worker("--batch", "20", "--per-tenant", "10")
    wait_for(engine, [*ids, single], timeout=300)
    finished = dict(
        rows(engine, "SELECT job_id, finished_at FROM import_jobs WHERE status = 'COMPLETED'")
    )
    assert len(finished) == 41
    # The single file of the other tenant ran in the first claim, before the burst's rest.
    later = [job for job in ids if finished[job] > finished[single]]
    assert len(later) >= 30, (len(later), "of the burst finished after the single file")


def test_a_worker_killed_mid_job_loses_nothing(lane, engine):
    # A 3,000-row file; the first worker is killed with SIGKILL while it has it in hand, the
    # second takes it over when the lease runs out, and the contacts equal a clean import.
    lines = [f"k{n}@acme.io,F{n},L{n},Acme" for n in range(3000)]
    client = Client(lane.service.url, new_key(engine, "acme"))
    job_id = client.upload("k.csv", csv_text(*lines)).json()["job_id"]
    first = lane.start_worker()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if rows(engine, "SELECT status FROM import_jobs WHERE job_id = :j", j=job_id) == [
            ("PROCESSING",)
        ]:
            break
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert rows(engine, "SELECT claimed_by IS NOT NULL FROM warm_queue") == [(True,)]
    lane.start_worker()
    assert wait_for(engine, [job_id]) == {job_id: "COMPLETED"}
    assert rows(
        engine, "SELECT count(*), count(DISTINCT email) FROM contacts WHERE job_id = :j", j=job_id
    ) == [(3000, 3000)]
    assert rows(engine, "SELECT crash_count FROM import_jobs WHERE job_id = :j", j=job_id) == [(1,)]


def test_review_and_reprocess_go_through_the_warm_lane(lane, engine):
    lane.start_worker()
    acme = Client(lane.service.url, new_key(engine, "acme"))
    flawed = csv_text("dup@acme.io,Dup,One,Acme", "dup@acme.io,Dup,Two,Acme", "x,No,Mail,Acme")
    job_id = acme.upload("f.csv", flawed).json()["job_id"]
    assert wait_for(engine, [job_id]) == {job_id: "NEEDS_REVIEW"}
    decisions = {
        "decisions": [
            {"row": 2, "action": "discard"},
            {"row": 3, "action": "fix", "values": {"email": "x@acme.io"}},
        ]
    }
    assert acme.post(f"/v1/jobs/{job_id}/decisions", json=decisions).status_code == 200
    answer = acme.post(f"/v1/jobs/{job_id}/reprocess")
    assert answer.status_code == 202 and answer.json()["lane"] == "warm", answer.text
    deadline = time.monotonic() + 60
    while acme.get(f"/v1/jobs/{job_id}").json()["status"] != "COMPLETED":
        assert time.monotonic() < deadline, "reprocess did not complete"
        time.sleep(0.1)
    assert rows(engine, "SELECT count(*) FROM run_requests") == [(0,)]
    runs = lane.instance().get_runs(RunsFilter(tags={"lane": "warm", "tenant": "acme"}))
    assert len(runs) == 2 and all(r.is_success for r in runs)
