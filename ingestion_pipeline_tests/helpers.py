"""Small helpers the tests share: put a file in the landing zone, import it, read results."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from dagster import (
    AssetCheckEvaluation,
    AssetChecksDefinition,
    DagsterInstance,
    DagsterRun,
    Definitions,
    ExecuteInProcessResult,
    SensorDefinition,
    build_run_status_sensor_context,
    build_sensor_context,
)
from dagster._core.definitions.sensor_definition import SensorExecutionData
from dagster._core.instance.ref import InstanceRef
from sqlalchemy.engine import Engine

from ingestion_pipeline.asset_jobs import dataset_job_name
from ingestion_pipeline.constants import IMPORT_JOBS_PARTITIONS, TENANT_TAG
from ingestion_pipeline.db.import_jobs import ImportJob, NewJob, get_job, register_jobs
from ingestion_pipeline.db.service import create_api_key
from ingestion_pipeline.definitions import build_definitions
from ingestion_pipeline.landing import LandingZone, job_id_for, upload_key
from ingestion_pipeline.partitions import partitions_name
from ingestion_pipeline.resources import DatabaseResource
from ingestion_pipeline.sensors import import_failure_sensor, request_sensor, upload_sensor

HEADER = "email,first_name,last_name,company\n"


def csv_text(*rows: str, header: str = HEADER) -> bytes:
    return (header + "".join(f"{row}\n" for row in rows)).encode()


TABLES = (
    "issue_items",
    "issues",
    "contacts",
    "customers",
    "products",
    "orders",
    "order_items",
    "staging_rows",
    "import_jobs",
    "column_mappings",
    "api_keys",
    "tenant_settings",
    "admissions",
    "idempotency_keys",
    "upload_sessions",
    "run_requests",
    "webhook_deliveries",
)


def empty_database(engine: Engine) -> None:
    """Remove every job and what hangs off it (review tables go by CASCADE)."""
    for attempt in range(3):
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
            return
        except sa.exc.OperationalError as exc:
            # The session's `serve` reads these tables in its own order (its webhook loop);
            # PostgreSQL breaks the deadlock by failing the TRUNCATE, which is then retried.
            if getattr(exc.orig, "pgcode", None) != "40P01" or attempt == 2:
                raise


def register_upload(
    engine: Engine,
    zone: LandingZone,
    tenant: str,
    name: str,
    content: bytes,
    dataset: str = "contacts",
) -> str:
    """Write `content` to uploads/<tenant>/[<dataset>/]<name> and register its import job."""
    key = upload_key(tenant, name, dataset)
    info = zone.write(key, content)
    job_id = job_id_for(tenant, key, info.etag)
    with engine.begin() as conn:
        register_jobs(conn, [NewJob(job_id, tenant, key, info.etag, name, dataset)])
    return job_id


def run_job(
    instance: DagsterInstance,
    resources: dict[str, object],
    job_id: str,
    tenant: str,
    job_name: str = "import_job",
) -> ExecuteInProcessResult:
    """Run import_job (assets and their checks), or the job's dataset's counterpart of
    `job_name`, for one job partition on a real instance."""
    with resources["database"].get_engine().connect() as conn:  # type: ignore[attr-defined]
        found = get_job(conn, job_id)
    dataset = found.dataset if found else "contacts"
    if not instance.has_dynamic_partition(partitions_name(dataset), job_id):
        instance.add_dynamic_partitions(partitions_name(dataset), [job_id])
    return (
        definitions(resources)
        .resolve_job_def(dataset_job_name(job_name, dataset))
        .execute_in_process(
            partition_key=job_id,
            instance=instance,
            tags={TENANT_TAG: tenant},
            raise_on_error=False,
        )
    )


def run_checks(
    instance: DagsterInstance,
    resources: dict[str, object],
    job_id: str,
    *checks: AssetChecksDefinition,
) -> ExecuteInProcessResult:
    """Run only `checks` (of contacts' assets) on one job partition, leaving the assets as
    they are."""
    if not instance.has_dynamic_partition(IMPORT_JOBS_PARTITIONS, job_id):
        instance.add_dynamic_partitions(IMPORT_JOBS_PARTITIONS, [job_id])
    job_def = definitions(resources).resolve_job_def("import_job")
    subset = job_def.get_subset(
        asset_selection=set(), asset_check_selection={c.check_key for c in checks}
    )
    return subset.execute_in_process(partition_key=job_id, instance=instance, raise_on_error=False)


def check_evaluations(result: ExecuteInProcessResult) -> dict[str, AssetCheckEvaluation]:
    """The run's check evaluations by check name."""
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def import_bytes(
    engine: Engine,
    instance: DagsterInstance,
    resources: dict[str, object],
    zone: LandingZone,
    tenant: str,
    name: str,
    content: bytes,
    dataset: str = "contacts",
) -> tuple[ExecuteInProcessResult, ImportJob]:
    """Upload, register and run one file; returns the run result and the job row."""
    job_id = register_upload(engine, zone, tenant, name, content, dataset)
    result = run_job(instance, resources, job_id, tenant)
    return result, job(engine, job_id)


def job(engine: Engine, job_id: str) -> ImportJob:
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


def definitions(resources: dict[str, object]) -> Definitions:
    """The code location's assets, checks, jobs and sensors on the test resources."""
    return build_definitions(resources)


def sensor_tick(
    sensor: SensorDefinition,
    instance: DagsterInstance,
    resources: dict[str, object],
    cursor: str | None = None,
) -> SensorExecutionData:
    """One tick of `sensor`, with its partition requests applied as the daemon would."""
    with build_sensor_context(
        instance_ref=instance.get_ref(),
        cursor=cursor,
        resources=resources,
        definitions=definitions(resources),
    ) as context:
        data = sensor.evaluate_tick(context)
    for request in data.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return data


def launch(
    data: SensorExecutionData,
    job_name: str,
    instance: DagsterInstance,
    resources: dict[str, object],
) -> list[ExecuteInProcessResult]:
    """Execute a tick's run requests in-process on the instance, as the daemon would launch them."""
    job_def = definitions(resources).resolve_job_def(job_name)
    return [
        job_def.execute_in_process(
            instance=instance, partition_key=r.partition_key, tags=r.tags, raise_on_error=False
        )
        for r in data.run_requests
    ]


def cli_command(*args: str) -> list[str]:
    """`ingestion-pipeline ARGS...` as a separate process."""
    return [sys.executable, "-m", "ingestion_pipeline.cli", *args]


def cli_import_command(path: Path, tenant: str) -> list[str]:
    """`ingestion-pipeline import PATH --tenant TENANT --json` as a separate process."""
    return cli_command("import", str(path), "--tenant", tenant, "--json")


def run_failure_sensor(
    instance: DagsterInstance,
    result: ExecuteInProcessResult,
    database_url: str,
    run: DagsterRun | None = None,
) -> None:
    """Evaluate import_failure_sensor on the failed run of `result` (or `run`, its variant)."""
    context = build_run_status_sensor_context(
        sensor_name="import_failure_sensor",
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=run or result.dagster_run,
        resources={"database": DatabaseResource(url=database_url)},
    ).for_run_failure()
    import_failure_sensor(context)


def cli_env(database_url: str, landing: Path, home: Path, **extra: str) -> dict[str, str]:
    """The environment of a CLI process on the test database, landing folder and instance."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "LANDING_ZONE": str(landing),
        "DAGSTER_HOME": str(home),
        **extra,
    }


PEAK_RSS = Path(__file__).resolve().parent.parent / "benchmarks" / "peak_rss.py"


def import_with_peak_rss(
    path: Path, database_url: str, work: Path, tenant: str = "acme"
) -> tuple[int, str, str, float]:
    """`ingestion-pipeline import PATH --json` as a process: exit code, stdout, stderr and its
    peak RSS in MiB."""
    env = cli_env(database_url, work / "landing", work / "home")
    proc = subprocess.run(
        [sys.executable, str(PEAK_RSS), *cli_import_command(path, tenant)],
        env=env,
        capture_output=True,
        text=True,
    )
    peak = int(proc.stderr.strip().splitlines()[-1].removeprefix("peak_rss_kib=")) / 1024
    return proc.returncode, proc.stdout, proc.stderr, peak


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServiceProcess:
    """`ingestion-pipeline serve` as a process of its own on a free loopback port."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_path.open("wb")
        self.proc = subprocess.Popen(
            cli_command("serve", "--port", str(self.port)),
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/openapi.json", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"serve did not answer: {log_path.read_text()[-2000:]}")

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The process stopped (SIGSTOP) meanwhile: it delivers no webhook of its own."""
        os.killpg(self.proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def chromium():
    """Debian's Chromium, headless, driven by its chromedriver (`make browser` installs them)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        raise AssertionError("chromium/chromedriver missing: run `make browser`")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--window-size=1600,1000",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    return driver


def wait_for_text(driver, *texts: str, timeout: float = 90) -> str:
    """The page's visible text once it shows every one of `texts`."""
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
        WebDriverException,
    )
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    body = ""
    while time.monotonic() < deadline:
        try:
            body = driver.find_element(By.TAG_NAME, "body").text
        except (StaleElementReferenceException, NoSuchElementException):
            body = ""  # the page is being replaced (a reload as the job settles)
        except WebDriverException as exc:
            # Chromium's own word for the same: the body it found was replaced mid-read.
            if "does not belong to the document" not in str(exc):
                raise
            body = ""
        if all(t in body for t in texts):
            return body
        time.sleep(0.5)
    missing = [t for t in texts if t not in body]
    raise AssertionError(f"page {driver.current_url} never showed {missing}")


def save_screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    return path


# The HTTP service the tests start (see conftest's `server`): small limits to test them.
SERVICE_MAX_UPLOAD = 256 * 1024
SERVICE_PART = 64 * 1024


def new_key(engine: Engine, tenant: str) -> str:
    with engine.begin() as conn:
        return create_api_key(conn, tenant, "test")[1]


class Client:
    """One tenant's view of the API."""

    def __init__(self, base: str, key: str | None) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=base, headers=headers, timeout=30)

    def upload(self, name: str, content: bytes, key: str | None = None) -> httpx.Response:
        headers = {"Idempotency-Key": key} if key else {}
        return self.http.post(
            "/v1/uploads", params={"file_name": name}, content=content, headers=headers
        )

    def __getattr__(self, name: str):
        return getattr(self.http, name)


def run_sensors(instance: DagsterInstance, resources: dict[str, object]) -> None:
    """One tick of upload_sensor and request_sensor, their runs executed as the daemon would."""
    for sensor in (upload_sensor, request_sensor):
        data = sensor_tick(sensor, instance, resources)
        for request in data.run_requests:
            launch(type(data)(run_requests=[request]), request.job_name, instance, resources)


def duckdb_rows(metadata_location: str, query: str) -> list[tuple]:
    """`query` over an Iceberg table read by DuckDB's reader (the extension wheels' files, no
    download), the table named CONTACTS in the query."""
    import duckdb
    import duckdb_extension_avro
    import duckdb_extension_iceberg

    connection = duckdb.connect(
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )
    for module in (duckdb_extension_avro, duckdb_extension_iceberg):
        path = next(Path(module.__file__).parent.glob("extensions/*/*.duckdb_extension"))
        connection.execute(f"LOAD '{path}'")
    return connection.execute(
        query.replace("CONTACTS", f"iceberg_scan('{metadata_location}')")
    ).fetchall()


ROOT = Path(__file__).resolve().parent.parent


class Lane:
    """`serve` and workers with the warm lane on, sharing a database and a Dagster instance
    with the project's dagster.yaml (PostgreSQL storage), as a deployment has them."""

    def __init__(self, database_url: str, storage_url: str, root: Path, **env: str) -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir()
        shutil.copyfile(ROOT / "dagster.yaml", self.home / "dagster.yaml")
        self.landing = root / "landing"
        self.env = cli_env(
            database_url,
            self.landing,
            self.home,
            DAGSTER_POSTGRES_URL=storage_url,
            WARM_LANE_MAX_BYTES=str(1024 * 1024),
            WARM_LANE_LEASE_SECONDS="6",
            **env,
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

    def wait_for_workers(self, timeout: float = 120) -> None:
        """Until every worker started has loaded the code location and listens."""
        deadline = time.monotonic() + timeout
        logs = [self.root / f"worker{n}.log" for n in range(len(self.workers))]
        while not all('"worker.started"' in log.read_text() for log in logs):
            assert time.monotonic() < deadline, "a worker did not start"
            time.sleep(0.2)

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


@contextmanager
def scratch_database(database_url: str, purpose: str) -> Iterator[str]:
    """A database of its own on the test database's server (a Dagster storage), dropped after."""
    import uuid

    from sqlalchemy.engine import make_url

    server = make_url(database_url)
    name = f"{server.database}_{purpose}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
