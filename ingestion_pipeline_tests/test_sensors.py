"""upload_sensor through real ticks, against moto's S3 server and a real Dagster instance."""

from __future__ import annotations

import boto3
import pytest
import sqlalchemy as sa
from dagster import SensorResult, build_sensor_context
from dagster._core.definitions.sensor_definition import SensorExecutionData

from ingestion_pipeline.constants import IMPORT_JOBS_PARTITIONS, TENANT_TAG
from ingestion_pipeline.db.service import READMIT_AFTER_SECONDS, set_import_limit
from ingestion_pipeline.landing import job_id_for
from ingestion_pipeline.sensors import upload_sensor
from ingestion_pipeline_tests.helpers import csv_text, register_upload, rows, sensor_tick


def tick(instance, resources, cursor: str | None) -> SensorExecutionData:
    return sensor_tick(upload_sensor, instance, resources, cursor)


@pytest.fixture
def s3(s3_endpoint, s3_bucket):
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")

    def put(key: str, body: bytes) -> str:
        client.put_object(Bucket=s3_bucket, Key=f"incoming/{key}", Body=body)
        head = client.head_object(Bucket=s3_bucket, Key=f"incoming/{key}")
        return head["ETag"].strip('"')

    return put


def test_new_uploads_become_partitions_jobs_and_one_run_each(instance, s3_resources, engine, s3):
    etag_a = s3("uploads/acme/a.csv", csv_text("a@acme.io,A,B,C"))
    etag_b = s3("uploads/beta/b.tsv", b"email\tfirst_name\tlast_name\tcompany\n")
    for bad in (
        "uploads/Bad Tenant/x.csv",
        "uploads/acme/x.pdf",
        "uploads/acme/sub/x.csv",
        "uploads/acme/",
    ):
        s3(bad, b"email\n")
    s3("uploads/acme/empty.csv", b"")
    s3("reviews/job/decisions.csv", b"x")

    data = tick(instance, s3_resources, None)
    job_a = job_id_for("acme", "uploads/acme/a.csv", etag_a)
    job_b = job_id_for("beta", "uploads/beta/b.tsv", etag_b)
    assert sorted((r.partition_key, r.run_key, r.tags[TENANT_TAG]) for r in data.run_requests) == [
        (job_a, f"uploads/acme/a.csv:{etag_a}", "acme"),
        (job_b, f"uploads/beta/b.tsv:{etag_b}", "beta"),
    ]
    assert sorted(instance.get_dynamic_partitions(IMPORT_JOBS_PARTITIONS)) == sorted([job_a, job_b])
    assert rows(engine, "SELECT job_id, tenant_id, status FROM import_jobs ORDER BY 1") == sorted(
        [(job_a, "acme", "PENDING"), (job_b, "beta", "PENDING")]
    )

    again = tick(instance, s3_resources, data.cursor)
    assert again.run_requests == [] and "no new uploads" in (again.skip_message or "")


def test_changed_object_is_a_new_job_and_an_identical_reupload_is_not(
    instance, s3_resources, engine, s3
):
    first_etag = s3("uploads/acme/a.csv", csv_text("a@acme.io,A,B,C"))
    first = tick(instance, s3_resources, None)
    assert len(first.run_requests) == 1

    same_etag = s3("uploads/acme/a.csv", csv_text("a@acme.io,A,B,C"))
    assert same_etag == first_etag
    assert tick(instance, s3_resources, first.cursor).run_requests == []

    new_etag = s3("uploads/acme/a.csv", csv_text("a@acme.io,A,B,Changed"))
    changed = tick(instance, s3_resources, first.cursor)
    assert [r.partition_key for r in changed.run_requests] == [
        job_id_for("acme", "uploads/acme/a.csv", new_etag)
    ]
    assert rows(engine, "SELECT count(*) FROM import_jobs") == [(2,)]


def test_requests_per_tick_are_capped_and_every_object_runs_exactly_once(
    instance, s3_resources, s3, monkeypatch
):
    monkeypatch.setenv("UPLOAD_SENSOR_MAX_RUNS", "2")
    # Written back to back: most share one LastModified second, the cursor's hard case.
    for i in range(7):
        s3(f"uploads/t{i % 3}/f{i}.csv", csv_text(f"u{i}@x.io,A,B,C"))
    launched: list[str] = []
    cursor = None
    for _ in range(6):
        data = tick(instance, s3_resources, cursor)
        assert len(data.run_requests) <= 2
        launched += [r.run_key for r in data.run_requests]
        cursor = data.cursor or cursor
    assert len(launched) == 7
    assert len(set(launched)) == 7


def test_sensor_result_shape_is_one_result_with_partitions_and_cursor(instance, s3_resources, s3):
    s3("uploads/acme/a.csv", csv_text("a@acme.io,A,B,C"))
    with build_sensor_context(instance=instance, resources=s3_resources) as context:
        result = upload_sensor(context)
    assert isinstance(result, SensorResult)
    assert result.cursor and '"since"' in result.cursor
    (request,) = result.dynamic_partitions_requests
    assert request.partitions_def_name == IMPORT_JOBS_PARTITIONS


def test_a_job_admitted_by_a_tick_whose_runs_were_lost_is_offered_again(
    instance, resources, engine, local_zone
):
    with engine.begin() as conn:
        set_import_limit(conn, "acme", 1, 3600)
    job_id = register_upload(engine, local_zone, "acme", "a.csv", csv_text("a@acme.io,A,B,C"))
    first = sensor_tick(upload_sensor, instance, resources)
    assert [r.partition_key for r in first.run_requests] == [job_id]
    # The daemon never launched that request (the tick failed after admitting the job).
    later = sensor_tick(upload_sensor, instance, resources, first.cursor)
    assert not later.run_requests  # within READMIT_AFTER_SECONDS its run may still come
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE admissions SET admitted_at = now() - make_interval(secs => :s) "
                "WHERE job_id = :j"
            ),
            {"s": READMIT_AFTER_SECONDS + 60, "j": job_id},
        )
    again = sensor_tick(upload_sensor, instance, resources, first.cursor)
    assert [r.partition_key for r in again.run_requests] == [job_id]
    # Offered again, not admitted again: the tenant's window still counts one import.
    assert rows(engine, "SELECT job_id FROM admissions") == [(job_id,)]
