"""The warm lane for real: `serve` and `ingestion-pipeline worker` processes on the test
database; an upload is claimed at once (NOTIFY), runs as a Dagster run on the instance with its
materializations and checks, and a worker killed with SIGKILL loses nothing."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from dagster import DagsterEventType, DagsterInstance, RunsFilter
from prometheus_client.parser import text_string_to_metric_families

from ingestion_pipeline.batch import batch_job_ids
from ingestion_pipeline.resources import DatabaseResource, LandingZoneResource
from ingestion_pipeline.sensors import upload_sensor
from ingestion_pipeline_tests.helpers import (
    Client,
    Lane,
    csv_text,
    definitions,
    free_port,
    new_key,
    rows,
    sensor_tick,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
ASSETS = {"raw_upload", "staging_rows", "reviewed_staging", "import_issues", "contacts"}


def warm_runs(lane: Lane, tenant: str) -> list:
    return list(lane.instance().get_runs(RunsFilter(tags={"lane": "warm", "tenant": tenant})))


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
    port = free_port()
    lane.start_worker("--metrics-port", str(port))
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
    # The worker's metrics, read by Prometheus' own parser.
    text = httpx.get(f"http://127.0.0.1:{port}/", timeout=10).text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("ingestion_job_seconds_count", (("lane", "warm"),))] == 1
    assert samples[("ingestion_warm_queue_jobs", (("state", "waiting"),))] == 0
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
    # The run ends a moment after the job it completed.
    runs = warm_runs(lane, "acme")
    while not all(r.is_finished for r in runs):
        assert time.monotonic() < deadline, "the run did not end"
        time.sleep(0.1)
        runs = warm_runs(lane, "acme")
    assert len(runs) == 2 and all(r.is_success for r in runs)


def jobs_of_runs(instance: DagsterInstance) -> dict[str, int]:
    """How many runs executed each job: a partition run's one job, a batch run's list."""
    counts: dict[str, int] = {}
    for run in instance.get_runs():
        ids = batch_job_ids(run.run_config)
        if "dagster/partition" in run.tags:
            ids = [run.tags["dagster/partition"]]
        for job_id in ids:
            counts[job_id] = counts.get(job_id, 0) + 1
    return counts


def test_two_workers_and_the_sensor_racing_over_200_jobs_run_each_exactly_once(
    lane, engine, database_url, monkeypatch
):
    # The sensor takes every job no worker has claimed yet (fallback after 0 s), and runs what
    # it took in this process, while two workers claim from the same queue.
    for n in range(200):
        folder = lane.landing / "uploads" / f"race{n % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"r{n:03d}.csv").write_bytes(csv_text(f"r{n}@race.io,R,N,Race"))
    monkeypatch.setenv("WARM_LANE_MAX_BYTES", str(1024 * 1024))
    monkeypatch.setenv("WARM_LANE_FALLBACK_SECONDS", "0")
    resources = {
        "database": DatabaseResource(url=database_url),
        "landing_zone": LandingZoneResource(url=str(lane.landing)),
    }
    instance = lane.instance()
    lane.start_worker("--batch", "4", "--per-tenant", "1")
    lane.start_worker("--batch", "4", "--per-tenant", "1")
    lane.wait_for_workers()
    data = sensor_tick(upload_sensor, instance, resources)
    assert not data.run_requests  # every job small: all in the warm queue
    cursor, taken = data.cursor, 0
    deadline = time.monotonic() + 600
    while rows(engine, "SELECT count(*) FROM import_jobs WHERE status = 'COMPLETED'") != [(200,)]:
        assert time.monotonic() < deadline, "the race did not finish"
        data = sensor_tick(upload_sensor, instance, resources, cursor)
        cursor = data.cursor or cursor
        for request in data.run_requests:
            taken += len(batch_job_ids(request.run_config)) or 1
            definitions(resources).resolve_job_def(request.job_name).execute_in_process(
                instance=instance,
                run_config=request.run_config,
                partition_key=request.partition_key,
                tags=request.tags,
                raise_on_error=False,
            )
    assert 0 < taken < 200, f"the sensor took {taken} jobs: no race"
    counts = jobs_of_runs(lane.instance())
    assert len(counts) == 200 and set(counts.values()) == {1}, {
        k: v for k, v in counts.items() if v != 1
    }
    assert rows(engine, "SELECT count(*), count(DISTINCT job_id) FROM contacts") == [(200, 200)]
    warm = lane.instance().get_runs(RunsFilter(tags={"lane": "warm"}))
    assert warm, "the workers ran none"


def test_a_bucket_object_takes_the_warm_lane_when_small_and_the_run_queue_when_big(
    engine, instance, s3_resources, s3_endpoint, s3_bucket, monkeypatch
):
    import boto3

    monkeypatch.setenv("WARM_LANE_MAX_BYTES", "1000")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    small = csv_text("s@acme.io,S,M,Acme")
    big = csv_text(*(f"b{n}@acme.io,B,G,Acme" for n in range(100)))
    assert len(small) < 1000 < len(big)
    s3.put_object(Bucket=s3_bucket, Key="incoming/uploads/acme/small.csv", Body=small)
    s3.put_object(Bucket=s3_bucket, Key="incoming/uploads/acme/big.csv", Body=big)
    data = sensor_tick(upload_sensor, instance, s3_resources)
    queued = rows(engine, "SELECT j.file_name FROM warm_queue q JOIN import_jobs j USING (job_id)")
    assert queued == [("small.csv",)]
    (request,) = data.run_requests
    assert request.partition_key.startswith("acme-big-")
