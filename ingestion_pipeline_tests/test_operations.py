"""Operations: the instance config, failures and retries, structured logs, the sensor at scale."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa
from dagster import (
    DagsterEventType,
    DagsterInstance,
    Failure,
)
from dagster._core.instance.ref import InstanceRef
from sqlalchemy.engine import make_url

from ingestion_pipeline import importer
from ingestion_pipeline.assets import staging as staging_module
from ingestion_pipeline.constants import IMPORT_JOBS_PARTITIONS
from ingestion_pipeline_tests.helpers import (
    contact_emails,
    csv_text,
    job,
    register_upload,
    rows,
    run_failure_sensor,
    run_job,
)
from ingestion_pipeline_tests.test_sensors import tick

ROOT = Path(__file__).resolve().parents[1]


def test_dagster_yaml_gives_postgres_storage_and_a_per_tenant_limit(database_url, tmp_path):
    server = make_url(database_url)
    name = f"dagster_test_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    shutil.copyfile(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    url = server.set(database=name).render_as_string(hide_password=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_POSTGRES_URL", url)
        instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path)))
        try:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
            assert limits == [
                {"key": "tenant", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
            ]
            assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        finally:
            instance.dispose()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def broken_staging(*args, **kwargs):
    raise Failure("object store unreachable", allow_retries=False)


def test_failure_sensor_marks_the_job_failed_unless_a_retry_is_pending(
    engine, instance, resources, local_zone, monkeypatch, database_url
):
    job_id = register_upload(engine, local_zone, "acme", "a.csv", csv_text("a@b.io,A,B,C"))
    monkeypatch.setattr(staging_module, "stage_upload", broken_staging)
    result = run_job(instance, resources, job_id, "acme")
    assert not result.success
    assert job(engine, job_id).status == "PROCESSING"

    retrying = result.dagster_run.with_tags(
        {**result.dagster_run.tags, "dagster/will_retry": "true"}
    )
    run_failure_sensor(instance, result, database_url, retrying)
    assert job(engine, job_id).status == "PROCESSING"
    run_failure_sensor(instance, result, database_url)
    failed = job(engine, job_id)
    assert failed.status == "FAILED"
    assert failed.error == "staging_rows: object store unreachable"


def test_a_transient_database_error_is_retried_and_the_import_succeeds(
    engine, instance, resources, local_zone, monkeypatch
):
    job_id = register_upload(engine, local_zone, "acme", "a.csv", csv_text("a@b.io,A,B,C"))
    real_validate_job = importer.validate_job
    calls = []

    def validate_once_cut_off(conn, *args):
        calls.append(1)
        if len(calls) == 1:
            # A real fault: the server ends this session mid-transaction.
            conn.execute(sa.text("SELECT pg_terminate_backend(pg_backend_pid())"))
        return real_validate_job(conn, *args)

    monkeypatch.setattr(importer, "validate_job", validate_once_cut_off)
    result = run_job(instance, resources, job_id, "acme")
    assert result.success
    assert len(calls) == 2
    restarts = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_RESTARTED]
    assert [e.step_key for e in restarts] == ["import_issues"]
    assert job(engine, job_id).status == "COMPLETED"
    assert contact_emails(engine, "acme") == ["a@b.io"]


def test_failed_jobs_are_listed_and_retried_from_the_cli(cli, monkeypatch, tmp_path):
    path = tmp_path / "people.csv"
    path.write_bytes(csv_text("a@b.io,A,B,C", "c@d.io,C,D,E"))
    with monkeypatch.context() as patched:
        patched.setattr(staging_module, "stage_upload", broken_staging)
        code, out, err = cli("import", str(path), "--tenant", "acme", "--json")
    assert code == 1
    assert "the run failed: staging_rows: object store unreachable" in err
    failed = json.loads(out)
    assert failed["status"] == "FAILED"

    code, out, _ = cli("jobs", "--status", "failed", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [(j["job_id"], j["error"]) for j in listed] == [
        (failed["job_id"], "staging_rows: object store unreachable")
    ]
    code, out, _ = cli("retry", failed["job_id"], "--json")
    assert code == 0
    retried = json.loads(out)
    assert (retried["status"], retried["contacts_created"]) == ("COMPLETED", 2)


def test_progress_and_outcomes_are_json_log_lines(engine, instance, resources, local_zone):
    body = [f"u{i}@acme.io,F,L,C" for i in range(1, 101)]
    job_id = register_upload(engine, local_zone, "acme", "a.csv", csv_text(*body))
    result = run_job(instance, resources, job_id, "acme")
    records = []
    for event in result.all_events:
        if event.event_type == DagsterEventType.ENGINE_EVENT:
            continue
    logs = instance.all_logs(result.run_id)
    for entry in logs:
        if entry.user_message.startswith("{"):
            records.append(json.loads(entry.user_message))
    stages = [(r["stage"], r["event"]) for r in records]
    assert ("staging_rows", "progress") in stages
    assert ("contacts", "loaded") in stages
    progress = next(r for r in records if r["event"] == "progress")
    assert progress["job_id"] == job_id and progress["tenant"] == "acme"
    assert progress["percent"] == 100.0 and progress["rows_read"] == 100


def test_ten_thousand_objects_over_fifty_tenants_are_each_launched_once(
    instance, s3_resources, s3_endpoint, s3_bucket, engine, monkeypatch
):
    monkeypatch.setenv("UPLOAD_SENSOR_MAX_RUNS", "2500")
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    body = csv_text("a@b.io,A,B,C")
    keys = [f"incoming/uploads/t{i % 50:02d}/file{i:05d}.csv" for i in range(10_000)]
    # The objects are written straight into the S3 server's store (10,000 PUTs over HTTP cost
    # moto ~100 s here); the sensor under test still lists them over HTTP.
    store = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for key in keys:
        store.put_object(s3_bucket, key, body)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    assert client.list_objects_v2(Bucket=s3_bucket, Prefix="incoming/")["KeyCount"] == 1000

    launched: list[str] = []
    cursor = None
    ticks: list[float] = []
    for _ in range(8):
        started = time.perf_counter()
        data = tick(instance, s3_resources, cursor)
        ticks.append(time.perf_counter() - started)
        # A tick this full sends batch runs: each names the jobs it takes.
        launched += [
            job_id
            for r in data.run_requests
            for job_id in r.run_config["ops"]["import_batch"]["config"]["job_ids"]
        ]
        cursor = data.cursor or cursor
        if not data.run_requests:
            break
    assert len(launched) == 10_000
    assert len(set(launched)) == 10_000
    assert len(instance.get_dynamic_partitions(IMPORT_JOBS_PARTITIONS)) == 10_000
    assert rows(engine, "SELECT count(DISTINCT tenant_id), count(*) FROM import_jobs") == [
        (50, 10_000)
    ]
    print(f"ticks (s): {[round(t, 2) for t in ticks]}; cursor {len(cursor)} bytes")
