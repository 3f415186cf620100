"""Small helpers the tests share: put a file in the landing zone, import it, read results."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from dagster import DagsterInstance, ExecuteInProcessResult, materialize
from sqlalchemy.engine import Engine

from ingestion_pipeline.assets import IMPORT_ASSETS
from ingestion_pipeline.constants import IMPORT_JOBS_PARTITIONS, TENANT_TAG
from ingestion_pipeline.db.jobs import NewJob, get_job, register_jobs
from ingestion_pipeline.landing import LandingZone, job_id_for, upload_key

HEADER = "email,first_name,last_name,company\n"


def csv_text(*rows: str, header: str = HEADER) -> bytes:
    return (header + "".join(f"{row}\n" for row in rows)).encode()


def register_upload(
    engine: Engine, zone: LandingZone, tenant: str, name: str, content: bytes
) -> str:
    """Write `content` to uploads/<tenant>/<name> and register its import job."""
    key = upload_key(tenant, name)
    info = zone.write(key, content)
    job_id = job_id_for(tenant, key, info.etag)
    with engine.begin() as conn:
        register_jobs(conn, [NewJob(job_id, tenant, key, info.etag, name)])
    return job_id


def run_job(
    instance: DagsterInstance, resources: dict[str, object], job_id: str, tenant: str
) -> ExecuteInProcessResult:
    """Materialize the import assets for one job partition on a real instance."""
    if not instance.has_dynamic_partition(IMPORT_JOBS_PARTITIONS, job_id):
        instance.add_dynamic_partitions(IMPORT_JOBS_PARTITIONS, [job_id])
    return materialize(
        IMPORT_ASSETS,
        partition_key=job_id,
        instance=instance,
        resources=resources,
        tags={TENANT_TAG: tenant},
        raise_on_error=False,
    )


def import_bytes(
    engine: Engine,
    instance: DagsterInstance,
    resources: dict[str, object],
    zone: LandingZone,
    tenant: str,
    name: str,
    content: bytes,
) -> tuple[ExecuteInProcessResult, dict[str, Any]]:
    """Upload, register and run one file; returns the run result and the job row."""
    job_id = register_upload(engine, zone, tenant, name, content)
    result = run_job(instance, resources, job_id, tenant)
    return result, job(engine, job_id)


def job(engine: Engine, job_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = get_job(conn, job_id)
    assert row is not None
    return row


def scalar(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.scalar(sa.text(sql), params)


def rows(engine: Engine, sql: str, **params: Any) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params)]


def contact_emails(engine: Engine, tenant: str) -> list[str]:
    return [
        r[0]
        for r in rows(
            engine,
            "SELECT email_normalized FROM contacts WHERE tenant_id = :t ORDER BY 1",
            t=tenant,
        )
    ]
