"""End to end: files land, the sensor launches runs, contacts appear; a killed run resumes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance
from dagster._core.instance.ref import InstanceRef

from ingestion_pipeline.db.engine import embedded_url, stop_embedded
from ingestion_pipeline.sensors import upload_sensor
from ingestion_pipeline_tests.helpers import (
    cli_env,
    cli_import_command,
    contact_emails,
    csv_text,
    launch,
    rows,
    scalar,
    sensor_tick,
)

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def sensor_tick_and_runs(instance, resources, cursor=None):
    """One tick of upload_sensor, then each requested run executed on the instance."""
    data = sensor_tick(upload_sensor, instance, resources, cursor)
    return data, launch(data, "import_job", instance, resources)


def test_dropped_files_are_imported_through_sensor_and_runs(
    engine, instance, resources, landing_dir
):
    for sample in sorted(SAMPLES.glob("*/*.*")):
        target = landing_dir / "uploads" / sample.parent.name / sample.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(sample.read_bytes())
    (landing_dir / "uploads" / "acme" / "notes.pdf").write_bytes(b"%PDF-1.4")

    data, results = sensor_tick_and_runs(instance, resources)
    assert len(results) == 3 and all(r.success for r in results)
    assert all(r.dagster_run.tags["tenant"] in {"acme", "globex", "initech"} for r in results)
    statuses = dict(rows(engine, "SELECT tenant_id, status FROM import_jobs"))
    assert statuses == {"acme": "COMPLETED", "globex": "NEEDS_REVIEW", "initech": "COMPLETED"}
    assert len(contact_emails(engine, "acme")) == 5
    assert len(contact_emails(engine, "initech")) == 4
    assert contact_emails(engine, "globex") == []
    assert (
        scalar(
            engine,
            "SELECT count(*) FROM contacts WHERE tenant_id = 'initech' "
            "AND company = :company AND last_name = :last",
            company="Chotchkie\u2019s",
            last="Núñez",
        )
        == 1
    )

    _, results = sensor_tick_and_runs(instance, resources, data.cursor)
    assert results == []


def test_import_killed_mid_staging_resumes_to_exact_counts(database_url, engine, tmp_path):
    total = 200_000
    data = csv_text(*(f"user{i}@acme.io,First{i},Last{i},Acme" for i in range(1, total + 1)))
    path = tmp_path / "big.csv"
    path.write_bytes(data)
    env = cli_env(database_url, tmp_path / "landing", tmp_path / "home", IMPORT_CHUNK_SIZE="1000")
    command = cli_import_command(path, "acme")
    victim = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    staged = 0
    while time.monotonic() < deadline and victim.poll() is None:
        staged = scalar(engine, "SELECT count(*) FROM staging_rows")
        if staged >= 5_000:
            victim.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL, "the import finished before it could be killed"
    ((status, processed),) = rows(engine, "SELECT status, processed_rows FROM import_jobs")
    staged = scalar(engine, "SELECT count(*) FROM staging_rows")
    assert status == "PROCESSING"
    assert 0 < staged < total
    assert processed == staged  # progress commits with each chunk

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    (row,) = rows(
        engine, "SELECT status, total_rows, processed_rows, contacts_created FROM import_jobs"
    )
    assert row == ("COMPLETED", total, total, total)
    assert scalar(engine, "SELECT count(*) FROM staging_rows") == total
    assert scalar(engine, "SELECT count(DISTINCT email_normalized) FROM contacts") == total


def test_newcomer_demo_on_a_fresh_machine(tmp_path):
    """What `make demo` does, with no settings at all: a new embedded PostgreSQL, the project's
    dagster.yaml (Dagster storage on that server), the bundled samples."""
    data_dir = tmp_path / "data"
    home = data_dir / "dagster_home"
    home.mkdir(parents=True)
    shutil.copyfile(SAMPLES.parent / "dagster.yaml", home / "dagster.yaml")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "DAGSTER_POSTGRES_URL", "LANDING_ZONE", "TEST_DATABASE_URL")
    }
    env.update(
        INGESTION_DATA_DIR=str(data_dir),
        DAGSTER_HOME=str(home),
        LANDING_ZONE=str(tmp_path / "landing"),
    )
    expected = {"acme": "COMPLETED", "globex": "NEEDS_REVIEW", "initech": "COMPLETED"}
    try:
        for sample in sorted(SAMPLES.glob("*/*.*")):
            tenant = sample.parent.name
            done = subprocess.run(
                cli_import_command(sample, tenant),
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["status"] == expected[tenant]
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DAGSTER_POSTGRES_URL", embedded_url(data_dir, database="dagster"))
            runs = DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
            assert type(runs.run_storage).__name__ == "PostgresRunStorage"
            assert len(runs.get_runs()) == 3
            runs.dispose()
    finally:
        stop_embedded(data_dir)
