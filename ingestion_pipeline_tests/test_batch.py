"""A burst of small uploads through upload_sensor's batch runs: every job once, tenants in
turn, each job materialized and checked per partition, and one bad file failing alone."""

from __future__ import annotations

from collections import Counter

from dagster import AssetKey

from ingestion_pipeline.constants import IMPORT_JOBS_PARTITIONS
from ingestion_pipeline.sensors import upload_sensor
from ingestion_pipeline_tests.helpers import csv_text, definitions, rows, sensor_tick

TENANTS = ("acme", "beta", "gamma")


def burst(zone) -> dict[str, str]:
    """30 small files over three tenants (acme sends 20); one corrupt, one whose columns need
    a person, one with a row to review. Returns the file name expected for each outcome."""
    for n in range(30):
        tenant = "acme" if n < 20 else TENANTS[1 + n % 2]
        content = csv_text(*(f"u{n}-{r}@{tenant}.io,F{r},L{r},Co" for r in range(10 + n)))
        if n == 7:
            content = csv_text(f'u{n}@acme.io,"Open,quote,Co', "x@acme.io,A,B,C")
        if n == 8:
            content = b"Kontakt;Person\nann@acme.io;Ann Lee\n"
        if n == 21:
            content = csv_text("dup@beta.io,A,B,C", "dup@beta.io,A,B,C")
        zone.write(f"uploads/{tenant}/f{n:02d}.csv", content)
    return {"FAILED": "f07.csv", "NEEDS_MAPPING": "f08.csv", "NEEDS_REVIEW": "f21.csv"}


def test_a_burst_goes_in_batch_runs_and_one_bad_file_fails_alone(
    engine, instance, resources, local_zone, monkeypatch
):
    monkeypatch.setenv("UPLOAD_BATCH_SIZE", "10")
    special = burst(local_zone)
    data = sensor_tick(upload_sensor, instance, resources)
    assert [r.job_name for r in data.run_requests] == ["import_batch_job"] * 3
    batches = [r.run_config["ops"]["import_batch"]["config"]["job_ids"] for r in data.run_requests]
    assert all(len(b) == 10 for b in batches)
    everyone = [job_id for batch in batches for job_id in batch]
    assert sorted(everyone) == sorted(instance.get_dynamic_partitions(IMPORT_JOBS_PARTITIONS))
    assert len(set(everyone)) == 30
    # Tenants in turn: the first batch already holds all three, not ten of acme's.
    assert {job_id.split("-")[0] for job_id in batches[0]} == set(TENANTS)

    job_def = definitions(resources).resolve_job_def("import_batch_job")
    results = [
        job_def.execute_in_process(
            run_config=r.run_config, instance=instance, tags=r.tags, raise_on_error=False
        )
        for r in data.run_requests
    ]
    assert all(result.success for result in results)

    statuses = dict(rows(engine, "SELECT file_name, status FROM import_jobs"))
    assert Counter(statuses.values()) == {
        "COMPLETED": 27,
        "FAILED": 1,
        "NEEDS_MAPPING": 1,
        "NEEDS_REVIEW": 1,
    }
    assert {status: name for name, status in statuses.items() if status != "COMPLETED"} == special
    [error] = rows(engine, "SELECT error FROM import_jobs WHERE status = 'FAILED'")
    assert error[0].startswith("f07.csv, record 1 (line 2): a quoted field starts here")
    completed = dict(rows(engine, "SELECT job_id, total_rows FROM import_jobs "
                                  "WHERE status = 'COMPLETED'"))  # fmt: skip
    assert rows(engine, "SELECT count(*) FROM contacts") == [(sum(completed.values()),)]

    # Each job is recorded as import_job would record it: a materialization per asset
    # partition and an evaluation per check.
    loaded = instance.get_materialized_partitions(AssetKey("contacts"))
    assert loaded == set(completed)
    evaluations = [e for result in results for e in result.get_asset_check_evaluations()]
    per_job = Counter(e.partition for e in evaluations if e.check_name == "job_status_agrees")
    assert set(per_job) == set(completed) and set(per_job.values()) == {1}
    assert all(e.passed for e in evaluations)

    # The same batches again (a re-executed run) change nothing: exactly once.
    for r in data.run_requests:
        job_def.execute_in_process(run_config=r.run_config, instance=instance, tags=r.tags)
    assert rows(engine, "SELECT count(*) FROM contacts") == [(sum(completed.values()),)]
    assert dict(rows(engine, "SELECT file_name, status FROM import_jobs")) == statuses


def test_a_few_uploads_still_get_a_run_each(engine, instance, resources, local_zone):
    for n in range(3):
        local_zone.write(f"uploads/acme/s{n}.csv", csv_text(f"s{n}@acme.io,A,B,C"))
    data = sensor_tick(upload_sensor, instance, resources)
    assert [r.job_name for r in data.run_requests] == ["import_job"] * 3
    assert all(r.partition_key for r in data.run_requests)
