"""The operator's console for real: `dagster dev` (webserver + daemon) on loopback, a backfill
launched with Dagster's own CLI and run by the daemon, and the UI in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from dagster import instance_for_test
from sqlalchemy.engine import Engine

from ingestion_pipeline.constants import IMPORT_JOBS_PARTITIONS
from ingestion_pipeline.db.engine import get_engine, normalize_url
from ingestion_pipeline.importer import mark_failed
from ingestion_pipeline.landing import LocalLandingZone
from ingestion_pipeline.reading.open import ABORT_ON_ENV
from ingestion_pipeline.resources import DatabaseResource, LandingZoneResource
from ingestion_pipeline_tests.helpers import (
    ServiceProcess,
    chromium,
    cli_command,
    csv_text,
    empty_database,
    free_port,
    import_bytes,
    job,
    new_key,
    register_upload,
    rows,
    save_screenshot,
    scratch_database,
    wait_for_text,
)

# Slow tier (left out by `make test-fast`): a real dagster dev and Chromium.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
ABORT_ON = "abort-the-reader.csv"
DAGSTER = Path(sys.executable).parent / "dagster"
ASSETS = ["raw_upload", "staging_rows", "reviewed_staging", "import_issues", "contacts"]
FLAWED = csv_text("dup@acme.io,Dup,One,Acme", "dup@acme.io,Dup,Two,Acme", "broken,No,Mail,Acme")


class DagsterDev:
    """A `dagster dev` process group on the test databases and a landing folder of its own."""

    def __init__(self, database_url: str, storage_url: str, root: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = root / "dagster_home"
        self.landing = root / "landing"
        self.home.mkdir(parents=True)
        self.landing.mkdir()
        shutil.copy(ROOT / "dagster.yaml", self.home / "dagster.yaml")
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "DAGSTER_POSTGRES_URL": storage_url,
            "DAGSTER_HOME": str(self.home),
            "LANDING_ZONE": str(self.landing),
            # Small batches, so that a burst of a few dozen files makes several batch runs.
            "UPLOAD_BATCH_SIZE": "10",
            # A file of this name aborts the process reading it, as a native reader may.
            ABORT_ON_ENV: ABORT_ON,
        }
        self.log = (root / "dagster_dev.log").open("wb")
        self.process = subprocess.Popen(
            [str(DAGSTER), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)["data"]

    def wait_until_loaded(self, timeout: float = 240) -> None:
        """Until the webserver answers and the code location is loaded."""
        deadline = time.monotonic() + timeout
        query = (
            "{ workspaceOrError { ... on Workspace { locationEntries { "
            "locationOrLoadError { __typename } } } } }"
        )
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {self.process.returncode}")
            try:
                entries = self.graphql(query)["workspaceOrError"]["locationEntries"]
                kinds = [e["locationOrLoadError"]["__typename"] for e in entries]
                if kinds == ["RepositoryLocation"]:
                    return
                if "PythonError" in kinds:
                    raise RuntimeError(f"code location failed to load: {kinds}")
            except OSError:
                pass
            time.sleep(1)
        raise TimeoutError("dagster dev did not load the code location")

    def dagster(self, *args: str) -> subprocess.CompletedProcess:
        """Dagster's own CLI on this instance and workspace."""
        return subprocess.run(
            [str(DAGSTER), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()


@pytest.fixture(scope="module")
def dagster_dev(database_url: str, tmp_path_factory) -> Iterator[DagsterDev]:
    """`dagster dev` with the project's dagster.yaml (PostgreSQL storage, queued runs)."""
    with scratch_database(database_url, "dagster") as storage_url:
        dev = DagsterDev(database_url, storage_url, tmp_path_factory.mktemp("dagster_dev"))
        try:
            dev.wait_until_loaded()
            yield dev
        finally:
            dev.stop()


def add_partitions(dev: DagsterDev, keys: list[str]) -> None:
    """Register job partitions on the server's instance, as upload_sensor does."""
    code = (
        "import sys; from dagster import DagsterInstance; "
        f"DagsterInstance.get().add_dynamic_partitions({IMPORT_JOBS_PARTITIONS!r}, sys.argv[1:])"
    )
    subprocess.run([sys.executable, "-c", code, *keys], env=dev.env, check=True, timeout=120)


RUNS_QUERY = (
    '{ runsOrError(filter: {pipelineName: "import_job"}) { ... on Runs { results { '
    "runId status tags { key value } } } } }"
)
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")


def launch_backfill(dev: DagsterDev, keys: list[str]) -> str:
    """`dagster job backfill` over `keys`; returns the backfill id."""
    done = dev.dagster(
        "job", "backfill", "-w", "workspace.yaml", "-j", "import_job",
        "--partitions", ",".join(keys), "--noprompt",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return re.search(r"Launched backfill job `([^`]+)`", done.stdout).group(1)


def wait_for_backfill(dev: DagsterDev, backfill_id: str, count: int, timeout: float = 600) -> list:
    """The backfill's runs once `count` of them, and every other import run, have finished.

    The daemon's upload_sensor also sees the files and may launch runs of the same jobs:
    those must finish too before the database is compared.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = dev.graphql(RUNS_QUERY)["runsOrError"]["results"]
        mine = [r for r in runs if {"key": "dagster/backfill", "value": backfill_id} in r["tags"]]
        if len(mine) >= count and all(r["status"] in FINISHED for r in runs):
            return mine
        time.sleep(2)
    raise TimeoutError(f"backfill {backfill_id}: runs did not finish: {runs}")


def snapshot(engine: Engine, job_ids: list[str]) -> dict:
    """What a backfill must not change for finished jobs: jobs' counts and contacts' ids."""
    return {
        "jobs": rows(
            engine,
            "SELECT job_id, status, total_rows, processed_rows, issue_count, contacts_created, "
            "finished_at FROM import_jobs WHERE job_id = ANY(:ids) ORDER BY job_id",
            ids=job_ids,
        ),
        "contacts": rows(
            engine,
            "SELECT contact_id, tenant_id, email_normalized, job_id FROM contacts ORDER BY 1",
        ),
        "issues": rows(engine, "SELECT issue_id, job_id, kind, resolved FROM issues ORDER BY 1"),
    }


@pytest.fixture(scope="module")
def backfilled(dagster_dev: DagsterDev, database_url: str) -> dict:
    """Jobs in every state, then one backfill over all their partitions, run by the daemon."""
    engine = get_engine(database_url)
    empty_database(engine)
    zone = LocalLandingZone(dagster_dev.landing)
    resources = {
        "database": DatabaseResource(url=database_url),
        "landing_zone": LandingZoneResource(url=str(dagster_dev.landing)),
    }
    completed = []
    with instance_for_test() as instance:
        for tenant in ("acme", "globex"):
            body = [f"done{i}@{tenant}.io,D{i},Done,{tenant}" for i in range(1, 41)]
            _, row = import_bytes(
                engine, instance, resources, zone, tenant, "done.csv", csv_text(*body)
            )
            assert row.status == "COMPLETED"
            completed.append(row.job_id)
    failed = []
    for tenant in ("acme", "globex", "initech"):
        body = [f"retry{i}@{tenant}.io,R{i},Retry,{tenant}" for i in range(1, 31)]
        job_id = register_upload(engine, zone, tenant, "retry.csv", csv_text(*body))
        mark_failed(engine, job_id, "server closed the connection unexpectedly")
        failed.append(job_id)
    flawed = register_upload(engine, zone, "initech", "flawed.csv", FLAWED)
    # The README's way of selecting every FAILED job for a backfill.
    listed = subprocess.run(
        cli_command("jobs", "--status", "FAILED", "--ids"),
        env=dagster_dev.env, capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    assert sorted(listed.strip().split(",")) == sorted(failed)
    keys = completed + listed.strip().split(",") + [flawed]
    add_partitions(dagster_dev, keys)
    before = snapshot(engine, completed)

    runs = wait_for_backfill(dagster_dev, launch_backfill(dagster_dev, keys), len(keys))
    return {
        "engine": engine,
        "completed": completed,
        "failed": failed,
        "flawed": flawed,
        "keys": keys,
        "before": before,
        "runs": runs,
    }


def test_backfill_over_failed_and_completed_jobs(dagster_dev, backfilled):
    engine = backfilled["engine"]
    runs = backfilled["runs"]
    assert sorted(r["status"] for r in runs) == ["SUCCESS"] * len(backfilled["keys"])
    partitions = {t["value"] for r in runs for t in r["tags"] if t["key"] == "dagster/partition"}
    assert partitions == set(backfilled["keys"])
    # The FAILED jobs are imported; the COMPLETED ones are untouched: same counts, same contacts.
    for job_id in backfilled["failed"]:
        assert (job(engine, job_id).status, job(engine, job_id).contacts_created) == (
            "COMPLETED",
            30,
        )
    after = snapshot(engine, backfilled["completed"])
    assert after["jobs"] == backfilled["before"]["jobs"]
    before_ids = {c[0] for c in backfilled["before"]["contacts"]}
    assert before_ids <= {c[0] for c in after["contacts"]}
    assert len(after["contacts"]) == 2 * 40 + 3 * 30
    assert job(engine, backfilled["flawed"]).status == "NEEDS_REVIEW"

    # The same backfill again changes nothing at all.
    everything = snapshot(engine, backfilled["keys"])
    keys = backfilled["keys"]
    runs = wait_for_backfill(dagster_dev, launch_backfill(dagster_dev, keys), len(keys))
    assert [r["status"] for r in runs] == ["SUCCESS"] * len(keys)
    assert snapshot(engine, backfilled["keys"]) == everything


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


def dismiss_welcome(driver) -> None:
    """Close the UI's one-time newsletter dialog when it shows (it would cover the graph)."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        skip = driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']")
        if skip:
            skip[0].click()
            return
        time.sleep(0.5)


def test_asset_graph_checks_and_issue_preview_in_the_browser(dagster_dev, backfilled, browser):
    # With every dataset's group in the code location, the lineage page shows the groups
    # collapsed; the contacts asset's upstream lineage shows the import's chain.
    browser.get(
        f"{dagster_dev.url}/assets/contacts?view=lineage&lineageScope=upstream&lineageDepth=4"
    )
    wait_for_text(browser, *ASSETS)
    dismiss_welcome(browser)
    time.sleep(2)  # the graph lays itself out after the dialog closes
    save_screenshot(browser, "asset-graph.png")

    browser.get(f"{dagster_dev.url}/assets/import_issues?view=checks")
    wait_for_text(browser, "issue_rows_linked", "issue_count_matches")
    save_screenshot(browser, "import-issues-checks.png")

    flawed = backfilled["flawed"]
    browser.get(f"{dagster_dev.url}/assets/import_issues?view=partitions&partition={flawed}")
    # The materialization's metadata: status, issue counts by kind, and the issue preview.
    wait_for_text(
        browser,
        flawed,
        "NEEDS_REVIEW",
        "issues_duplicate_email",
        "dup@acme.io appears on 2 rows of this file",
        '"broken" is not a valid email address',
    )
    save_screenshot(browser, "import-issues-materialization.png")


def test_a_burst_through_the_daemon_lands_in_batch_runs_and_a_bad_file_fails_alone(
    dagster_dev, backfilled, database_url
):
    # More uploads in one tick than UPLOAD_BATCH_SIZE (10 here): the daemon's upload_sensor
    # sends them in batch runs, which the run queue launches like any run.
    for n in range(24):
        content = csv_text(*(f"b{n}-{r}@burst.io,F{r},L{r},Co" for r in range(10 + n)))
        if n == 13:
            content = csv_text(f'b{n}@burst.io,"Open,quote,Co', "x@burst.io,A,B,C")
        folder = dagster_dev.landing / "uploads" / f"burst{n % 8}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{n:02d}.csv").write_bytes(content)
    engine = get_engine(database_url)
    deadline = time.monotonic() + 420
    final = ("COMPLETED", "FAILED", "NEEDS_REVIEW", "NEEDS_MAPPING")
    statuses: dict[str, str] = {}
    while time.monotonic() < deadline:
        statuses = dict(
            rows(engine, "SELECT file_name, status FROM import_jobs WHERE tenant_id LIKE 'burst%'")
        )
        if len(statuses) == 24 and all(s in final for s in statuses.values()):
            break
        time.sleep(2)
    assert {name: s for name, s in statuses.items() if s != "COMPLETED"} == {"f13.csv": "FAILED"}
    assert len(statuses) == 24
    # A batch run ends a moment after its last job: wait for the runs themselves.
    storage = sa.create_engine(normalize_url(dagster_dev.env["DAGSTER_POSTGRES_URL"]))
    query = "SELECT status FROM runs WHERE pipeline_name = 'import_batch_job'"
    while time.monotonic() < deadline and {s for (s,) in rows(storage, query)} - {
        "SUCCESS",
        "FAILURE",
    }:
        time.sleep(1)
    batch_runs = rows(storage, query)
    storage.dispose()
    assert batch_runs and {status for (status,) in batch_runs} == {"SUCCESS"}


def test_a_file_that_kills_its_process_fails_alone_and_the_batch_completes(
    dagster_dev, backfilled, database_url
):
    # A burst of 24 files of 8 tenants in batch runs of 10; one of them aborts the process of
    # its batch run (os.abort(), as a native reader's allocation failure does).
    for n in range(24):
        content = csv_text(*(f"k{n}-{r}@crash.io,F{r},L{r},Co" for r in range(5 + n)))
        folder = dagster_dev.landing / "uploads" / f"crash{n % 8}"
        folder.mkdir(parents=True, exist_ok=True)
        name = ABORT_ON if n == 6 else f"c{n:02d}.csv"
        (folder / name).write_bytes(content)
    engine = get_engine(database_url)
    deadline = time.monotonic() + 480
    final = ("COMPLETED", "FAILED", "NEEDS_REVIEW", "NEEDS_MAPPING")
    found: list[tuple] = []
    while time.monotonic() < deadline:
        found = rows(
            engine,
            "SELECT file_name, status, crash_count, error FROM import_jobs "
            "WHERE tenant_id LIKE 'crash%' ORDER BY file_name",
        )
        if len(found) == 24 and all(status in final for _, status, _, _ in found):
            break
        time.sleep(2)
    statuses = {name: status for name, status, _, _ in found}
    assert len(statuses) == 24, statuses
    assert {n: s for n, s in statuses.items() if s != "COMPLETED"} == {ABORT_ON: "FAILED"}
    (crashed,) = [(count, error) for name, _, count, error in found if name == ABORT_ON]
    # Retried once alone, then failed with a message a person understands.
    assert crashed[0] == 2
    assert crashed[1].startswith("the reader crashed on this file"), crashed[1]
    storage = sa.create_engine(normalize_url(dagster_dev.env["DAGSTER_POSTGRES_URL"]))
    runs = rows(
        storage,
        "SELECT pipeline_name, status FROM runs WHERE run_body LIKE :tenant",
        tenant="%crash%",
    )
    storage.dispose()
    # The batch run that died, the job's own retry that died again; nothing retried forever.
    assert sum(1 for _, status in runs if status == "FAILURE") == 2, runs


def test_the_api_through_the_daemon_upload_review_reprocess_webhook(
    dagster_dev, database_url, tmp_path
):
    """An application's whole round over HTTP, every run launched by the daemon's sensors."""
    import http.server
    import threading

    import httpx

    from ingestion_pipeline.service.signing import verify_webhook

    received: list[tuple[dict, bytes]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    engine = get_engine(database_url)
    key = new_key(engine, "apptenant")
    service = ServiceProcess(dagster_dev.env, tmp_path / "serve.log")
    try:
        api = httpx.Client(
            base_url=service.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        hook_url = f"http://127.0.0.1:{hook.server_port}/hook"
        secret = api.put("/v1/webhook", json={"url": hook_url}).json()["secret"]
        answer = api.post("/v1/uploads", params={"file_name": "crm.csv"}, content=FLAWED)
        assert answer.status_code == 201
        job_id = answer.json()["job_id"]

        def wait_for(status: str) -> dict:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                state = api.get(f"/v1/jobs/{job_id}").json()
                if state["status"] == status:
                    return state
                time.sleep(1)
            raise AssertionError(f"{job_id} never reached {status}: {state}")

        review = wait_for("NEEDS_REVIEW")
        assert review["issues_by_kind"] == {"duplicate_email": 1, "invalid_email": 1}
        decisions = [
            {"row": 2, "action": "discard"},
            {"row": 3, "action": "fix", "values": {"email": "fixed@acme.io"}},
        ]
        assert api.post(f"/v1/jobs/{job_id}/decisions", json={"decisions": decisions}).is_success
        assert api.post(f"/v1/jobs/{job_id}/reprocess").status_code == 202
        done = wait_for("COMPLETED")
        assert done["contacts_created"] == 2
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(received) < 2:
            time.sleep(0.5)
    finally:
        service.stop()
        hook.shutdown()
    events = [verify_webhook(secret, h, b)["type"] for h, b in received]
    assert events == ["job.needs_review", "job.completed"]
    # The runs are Dagster's: the daemon launched them from the service's requests.
    storage = sa.create_engine(normalize_url(dagster_dev.env["DAGSTER_POSTGRES_URL"]))
    runs = rows(
        storage,
        "SELECT r.pipeline_name, r.status FROM runs r JOIN run_tags t ON t.run_id = r.run_id "
        "WHERE t.key = 'dagster/partition' AND t.value = :job ORDER BY r.create_timestamp",
        job=job_id,
    )
    storage.dispose()
    assert runs == [("import_job", "SUCCESS"), ("reprocess_job", "SUCCESS")]
