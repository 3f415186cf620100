"""Operating the HTTP service: /healthz, /readyz and /metrics of a real `ingestion-pipeline
serve` process, and `dg check defs` on the project."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from ingestion_pipeline.constants import JobStatus
from ingestion_pipeline.datasets import LOAD_ORDER
from ingestion_pipeline.db.metrics import migration_heads
from ingestion_pipeline.landing import LocalLandingZone
from ingestion_pipeline.resources import open_landing_zone
from ingestion_pipeline.service.routes.operations import PROBE_PREFIX, _check_landing_zone
from ingestion_pipeline_tests.helpers import (
    Client,
    ServiceProcess,
    cli_env,
    csv_text,
    new_key,
    register_upload,
)

ROOT = Path(__file__).resolve().parent.parent


def scrape(base: str) -> dict[str, dict[tuple, float]]:
    """GET /metrics, parsed: family name -> {(sample name, sorted labels): value}."""
    answer = httpx.get(f"{base}/metrics", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        family.name: {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        for family in text_string_to_metric_families(answer.text)
    }


def sample(families: dict, family: str, name: str | None = None, **labels: str) -> float:
    return families[family].get((name or family, tuple(sorted(labels.items()))), 0.0)


def test_healthz_answers(server):
    answer = httpx.get(f"{server.url}/healthz", timeout=10)
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


def test_readyz_all_checks_ok(server, service_landing):
    answer = httpx.get(f"{server.url}/readyz", timeout=30)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ok" and body["failed"] == []
    assert set(body["checks"]) == {"database", "migrations", "landing_zone"}
    assert all(check["ok"] for check in body["checks"].values())
    migrations = body["checks"]["migrations"]
    assert migrations["database"] == migrations["head"] == sorted(migration_heads())
    # The probe object is gone again; none of it is under uploads/.
    assert list((service_landing / PROBE_PREFIX).glob("*")) == []


def test_probes_and_metrics_take_no_key_and_stay_out_of_the_openapi(server):
    for path in ("/healthz", "/readyz", "/metrics"):
        answer = httpx.get(f"{server.url}{path}", headers={"Authorization": "Bearer x"})
        assert answer.status_code == 200, (path, answer.text)
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    assert not {"/healthz", "/readyz", "/metrics"} & set(paths)


def test_metrics_count_jobs_requests_and_the_webhook_backlog(server, engine, service_landing):
    before = scrape(server.url)
    acme = Client(server.url, new_key(engine, "acme"))
    jobs = []
    for n in range(3):
        answer = acme.upload(f"c{n}.csv", csv_text(f"p{n}@acme.io,P,Q,Acme"))
        assert answer.status_code == 201, answer.text
        jobs.append(answer.json()["job_id"])
    assert acme.upload("bad.exe", b"x").status_code == 422
    register_upload(
        engine, LocalLandingZone(service_landing), "globex", "c.csv", b"id\n", "customers"
    )
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE import_jobs SET status = 'FAILED' WHERE job_id = :j"), {"j": jobs[0]}
        )
        for state, due in (("pending", "1 hour"), ("pending", "2 hours"), ("delivered", "0")):
            conn.execute(
                sa.text(
                    "INSERT INTO webhook_deliveries (tenant_id, job_id, event, url, payload, "
                    "state, next_attempt_at, created_at) VALUES ('acme', :j, 'job.failed', "
                    "'http://127.0.0.1:9/hook', '{}', :s, now() + CAST(:due AS interval), "
                    "now() - interval '30 seconds')"
                ),
                {"j": jobs[0], "s": state, "due": due},
            )

    after = scrape(server.url)
    assert sample(after, "ingestion_metrics_database_up") == 1
    jobs_gauge = {
        (dict(labels)["status"], dict(labels)["dataset"]): value
        for (_, labels), value in after["ingestion_import_jobs"].items()
    }
    expected = {(s.value, d): 0.0 for s in JobStatus for d in LOAD_ORDER}
    expected |= {("PENDING", "contacts"): 2, ("FAILED", "contacts"): 1}
    expected |= {("PENDING", "customers"): 1}
    assert jobs_gauge == expected
    assert sample(after, "ingestion_webhook_deliveries_pending") == 2
    assert sample(after, "ingestion_webhook_oldest_pending_seconds") >= 29

    def grew(family: str, name: str, **labels: str) -> float:
        return sample(after, family, name, **labels) - sample(before, family, name, **labels)

    uploads = "ingestion_upload_requests"
    assert grew(uploads, f"{uploads}_total", route="/v1/uploads", code="201") == 3
    assert grew(uploads, f"{uploads}_total", route="/v1/uploads", code="422") == 1
    latency = "ingestion_http_request_duration_seconds"
    assert grew(latency, f"{latency}_count", method="POST", route="/v1/uploads") == 4
    assert grew(latency, f"{latency}_count", method="GET", route="/metrics") == 1
    assert grew(latency, f"{latency}_bucket", method="POST", route="/v1/uploads", le="+Inf") == 4
    # The lanes' histogram is declared in the service too (its workers observe it).
    assert after["ingestion_job_seconds"] == {}


def test_observe_job_records_claim_to_finish_seconds_by_lane():
    from ingestion_pipeline.metrics import REGISTRY, observe_job

    def count(lane: str) -> float:
        return REGISTRY.get_sample_value("ingestion_job_seconds_count", {"lane": lane}) or 0.0

    warm, queue = count("warm"), count("queue")
    observe_job("warm", 1.5)
    observe_job("warm", 0.2)
    observe_job("queue", 42.0)
    assert (count("warm") - warm, count("queue") - queue) == (2, 1)
    bucket = REGISTRY.get_sample_value(
        "ingestion_job_seconds_bucket", {"lane": "queue", "le": "60.0"}
    )
    assert bucket is not None and bucket >= 1


def test_landing_zone_probe_on_s3_writes_and_deletes(s3_endpoint, s3_bucket):
    zone = open_landing_zone(f"s3://{s3_bucket}/incoming", s3_endpoint, "us-east-1")
    assert _check_landing_zone(SimpleNamespace(zone=zone)) == {"landing_zone": {"ok": True}}
    assert list(zone.list(PROBE_PREFIX)) == []
    missing = open_landing_zone(f"s3://nope-{uuid.uuid4().hex[:8]}", s3_endpoint, "us-east-1")
    check = _check_landing_zone(SimpleNamespace(zone=missing))["landing_zone"]
    assert check["ok"] is False and "not writable" in check["error"]


@pytest.fixture
def own_database(database_url: str):
    """A database of its own on the test server (the test drops it); dropped at the end."""
    server = make_url(database_url)
    name = f"ingestion_ready_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    try:
        yield server.set(database=name).render_as_string(hide_password=False), drop
    finally:
        drop()
        admin.dispose()


def ready(base: str) -> tuple[int, dict]:
    answer = httpx.get(f"{base}/readyz", timeout=30)
    return answer.status_code, answer.json()


@pytest.mark.slow  # a second serve process, migrating a database of its own (~15 s)
def test_readyz_is_503_naming_the_failed_check(own_database, tmp_path):
    """A second `serve` on a database of its own: ready; not with its landing folder gone
    (a file in its place); not with its database dropped, while /healthz still answers."""
    url, drop_database = own_database
    landing = tmp_path / "landing"
    landing.mkdir()
    process = ServiceProcess(cli_env(url, landing, tmp_path / "home"), tmp_path / "serve.log")
    try:
        assert ready(process.url)[0] == 200

        shutil.rmtree(landing)
        landing.write_bytes(b"not a folder")
        status, body = ready(process.url)
        assert status == 503 and body["failed"] == ["landing_zone"], body
        assert body["status"] == "unavailable" and body["checks"]["database"]["ok"] is True
        landing.unlink()
        landing.mkdir()
        assert ready(process.url)[0] == 200

        drop_database()
        status, body = ready(process.url)
        assert status == 503, body
        assert body["failed"] == ["database", "migrations"], body
        assert "unreachable" in body["checks"]["database"]["error"]
        assert body["checks"]["landing_zone"]["ok"] is True

        assert httpx.get(f"{process.url}/healthz").json() == {"status": "ok"}
        metrics = scrape(process.url)
        assert sample(metrics, "ingestion_metrics_database_up") == 0
        assert "ingestion_import_jobs" not in metrics
    finally:
        process.stop()


@pytest.mark.slow
def test_dg_check_defs_passes(tmp_path):
    """`dg check defs` loads the code location of [tool.dg] (the instance: a temporary one)."""
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dg"), "check", "defs"],
        cwd=ROOT,
        env=cli_env("postgresql://127.0.0.1:1/unused", tmp_path / "landing", tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "All definitions loaded successfully" in proc.stdout + proc.stderr
