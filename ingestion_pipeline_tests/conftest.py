"""Shared fixtures: a real PostgreSQL database, a real S3 API (moto server), Dagster instances."""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa
from dagster import DagsterInstance, instance_for_test
from sqlalchemy.engine import Engine, make_url

from ingestion_pipeline.db.engine import dispose_engines, embedded_url, get_engine, normalize_url
from ingestion_pipeline.landing import LocalLandingZone
from ingestion_pipeline.resources import DatabaseResource, LandingZoneResource
from ingestion_pipeline.settings import load_settings
from ingestion_pipeline_tests.helpers import (
    SERVICE_MAX_UPLOAD,
    SERVICE_PART,
    Lane,
    ServiceProcess,
    cli_env,
    empty_database,
    scratch_database,
)

# The tests drive the sensors and runs by hand; the warm lane's own tests start workers and
# set WARM_LANE_MAX_BYTES for the processes they start.
os.environ.setdefault("WARM_LANE_MAX_BYTES", "0")


def _server_url() -> str:
    """TEST_DATABASE_URL, else DATABASE_URL, else the embedded PostgreSQL of the project."""
    url = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if url:
        return normalize_url(url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return embedded_url(load_settings().data_dir, database="postgres")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh database for this test session on the chosen server, dropped at the end."""
    server = make_url(_server_url())
    name = f"ingestion_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        dispose_engines()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def engine(database_url: str) -> Engine:
    """The migrated test database, emptied before each test."""
    engine = get_engine(database_url)
    empty_database(engine)
    return engine


@pytest.fixture
def landing_dir(tmp_path: Path) -> Path:
    path = tmp_path / "landing"
    path.mkdir()
    return path


@pytest.fixture
def local_zone(landing_dir: Path) -> LocalLandingZone:
    return LocalLandingZone(landing_dir)


@pytest.fixture
def resources(database_url: str, engine: Engine, landing_dir: Path) -> dict[str, object]:
    """Dagster resources on the test database and a local landing folder."""
    return {
        "database": DatabaseResource(url=database_url),
        "landing_zone": LandingZoneResource(url=str(landing_dir)),
    }


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    """A real, temporary Dagster instance (SQLite storage in a temp dir)."""
    with instance_for_test() as inst:
        yield inst


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, spoken to over HTTP like any S3 API."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A new, empty bucket on the S3 server."""
    name = f"landing-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_resources(
    database_url: str, engine: Engine, s3_endpoint: str, s3_bucket: str
) -> dict[str, object]:
    """Dagster resources on the test database and an S3 landing zone."""
    return {
        "database": DatabaseResource(url=database_url),
        "landing_zone": LandingZoneResource(
            url=f"s3://{s3_bucket}/incoming", endpoint_url=s3_endpoint, region_name="us-east-1"
        ),
    }


@pytest.fixture
def cli(monkeypatch, database_url, engine, landing_dir, tmp_path, capsys):
    """`ingestion-pipeline` run in-process on the test database and landing folder.

    Calling it returns (exit code, stdout, stderr).
    """
    from ingestion_pipeline.cli import main

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("LANDING_ZONE", str(landing_dir))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir(exist_ok=True)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture(scope="session")
def service_landing(tmp_path_factory) -> Path:
    """The landing folder of the HTTP service the tests start."""
    return tmp_path_factory.mktemp("api-landing")


@pytest.fixture(scope="session")
def service_env(database_url: str, service_landing: Path, tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("api-home")
    return cli_env(
        database_url,
        service_landing,
        home,
        API_MAX_UPLOAD_BYTES=str(SERVICE_MAX_UPLOAD),
        API_PART_SIZE=str(SERVICE_PART),
        WEBHOOK_RETRY_SECONDS="0.3",
        WEBHOOK_MAX_ATTEMPTS="4",
    )


@pytest.fixture(scope="session")
def server(service_env: dict[str, str], tmp_path_factory) -> Iterator[ServiceProcess]:
    """`ingestion-pipeline serve` on the test database and service_landing."""
    process = ServiceProcess(service_env, tmp_path_factory.mktemp("api-log") / "serve.log")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def api_resources(database_url: str, engine: Engine, service_landing: Path) -> dict[str, object]:
    """Dagster resources on the service's database and landing folder, emptied per test."""
    for path in sorted(service_landing.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    return {
        "database": DatabaseResource(url=database_url),
        "landing_zone": LandingZoneResource(url=str(service_landing)),
    }


@pytest.fixture
def lake(monkeypatch, tmp_path, database_url):
    """A lake on a warehouse folder (LAKE_WAREHOUSE set, so the lake assets are in the graph),
    its catalog in the test database, every dataset's table dropped first."""
    from ingestion_pipeline.lake import LAKE_TABLES, catalog

    warehouse = tmp_path / "warehouse"
    monkeypatch.setenv("LAKE_WAREHOUSE", str(warehouse))
    monkeypatch.setenv("IMPORT_CHUNK_SIZE", "1")  # one Arrow batch per row: many blocks
    lake_catalog = catalog(None, database_url, str(warehouse))
    for table in LAKE_TABLES.values():
        if lake_catalog.table_exists(table.name):
            lake_catalog.purge_table(table.name)
    return lake_catalog


@pytest.fixture
def lane(database_url, engine, tmp_path, monkeypatch) -> Iterator[Lane]:
    empty_database(engine)
    with scratch_database(database_url, "warm") as storage_url:
        monkeypatch.setenv("DAGSTER_POSTGRES_URL", storage_url)
        started = Lane(database_url, storage_url, tmp_path)
        try:
            yield started
        finally:
            started.stop()
