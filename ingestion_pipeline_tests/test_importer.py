"""The importer in the browser: an import link opens the flow (upload page, first answer,
mapping, job page, review) for one tenant, in a page or in an iframe of the origins the tenant
allows, which hear its events. Debian's Chromium drives it; `serve` and a warm-lane worker run
the imports as a deployment does."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ingestion_pipeline.db.service import service_secret, set_embed_origins
from ingestion_pipeline.service.signing import make_token
from ingestion_pipeline_tests.helpers import (
    ARTIFACTS,
    Client,
    chromium,
    free_port,
    job,
    new_key,
    rows,
    save_screenshot,
    wait_for_text,
)

ROOT = Path(__file__).resolve().parent.parent
# An export whose header says little: the email column is found by its values, the company
# column by no rule (a person picks it); two rows are in error.
EXPORT = (
    "Kontakt;Vorname;Nachname;Kundennummer\n"
    "ann@acme.io;Ann;Lee;Acme\n"
    "bo@acme.io;Bo;Ng;Acme\n"
    "not-an-address;Cy;Ho;Acme\n"
    "dee@acme.io;Dee;Ray;Acme\n"
    "dee@acme.io;Dee;Twice;Acme\n"
    "eve@acme.io;Eve;Li;Acme\n"
)
EVENTS_IN_ORDER = [
    "import.uploaded",
    "import.needs_mapping",
    "import.needs_review",
    "import.completed",
]


class HostPage:
    """docs/ served on a loopback port of its own: another origin than the service."""

    def __init__(self) -> None:
        handler = functools.partial(_QuietHandler, directory=str(ROOT / "docs"))
        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def host_page() -> Iterator[HostPage]:
    page = HostPage()
    yield page
    page.stop()


def import_link(base: str, key: str, **body) -> dict:
    answer = httpx.post(
        f"{base}/v1/import-links", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def wait_for_status(engine, job_id: str, status: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while job(engine, job_id).status != status:
        assert time.monotonic() < deadline, f"{job_id} stayed {job(engine, job_id).status}"
        time.sleep(0.2)


class Stopwatch:
    """How long each step took for the person, written beside the screenshots."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.steps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.steps[name] = round(now - self.started, 2)
        self.started = now

    def save(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / name).write_text(json.dumps(self.steps, indent=2) + "\n")


@pytest.mark.slow
def test_a_person_with_a_link_imports_by_keyboard_inside_a_host_page_that_hears_every_event(
    lane, engine, host_page, tmp_path
):
    """From an import link in an iframe of another origin, by keyboard alone: pick the file,
    read the first answer, confirm the columns (a required field left out is refused first),
    fix one row, discard another, reprocess, COMPLETED; the host page heard the events in
    order, and the job carries the link's user label."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    lane.start_worker()
    key = new_key(engine, "acme")
    with engine.begin() as conn:
        set_embed_origins(conn, "acme", [host_page.url()])
    link = import_link(lane.service.url, key, user="ana@host.example", dataset="contacts")
    assert link["embed_origins"] == [host_page.url()]
    export = tmp_path / "kontakte.csv"
    export.write_text(EXPORT, encoding="utf-8")
    lane.wait_for_workers()

    driver = chromium()
    clock = Stopwatch()
    try:
        driver.get(f"{host_page.url()}/embed.html?" + str(httpx.QueryParams({"src": link["url"]})))
        frame = driver.find_element(By.ID, "importer")
        driver.switch_to.frame(frame)
        wait_for_text(driver, "Import a file", "Choose a file")
        save_screenshot(driver, "importer-1-upload.png")

        # Keyboard only: the file input takes the path as a person's file dialog would, and
        # Enter on Upload sends it.
        clock.lap("page")
        driver.find_element(By.ID, "file").send_keys(str(export))
        driver.find_element(By.ID, "upload").send_keys(Keys.ENTER)
        wait_for_text(driver, "What we read", "Kontakt, Vorname, Nachname, Kundennummer")
        clock.lap("upload answer")
        body = wait_for_text(driver, "confirm which column feeds which field")
        assert "csv" in body and "semicolon" in body
        save_screenshot(driver, "importer-2-first-answer.png")

        driver.find_element(By.ID, "continue").send_keys(Keys.ENTER)
        wait_for_text(driver, "Confirm the columns", "NEEDS_MAPPING", "Kundennummer")
        clock.lap("to mapping")
        # The email column was found by its values and says so; company has no column yet.
        email_select = Select(driver.find_element(By.ID, "col0"))
        assert email_select.first_selected_option.get_attribute("value") == "email"
        assert "company: no column yet" in driver.find_element(By.ID, "required").text
        save_screenshot(driver, "importer-3-mapping.png")

        # Confirming with the required field still open is refused, announced, nothing lost.
        driver.find_element(By.ID, "confirm").send_keys(Keys.ENTER)
        alert = wait_for_text(driver, "required field(s) company have no column")
        assert "kontakte.csv" in alert
        assert job(engine, link_job(engine, link)).status == "NEEDS_MAPPING"

        company = driver.find_element(By.ID, "col3")
        company.send_keys("company")  # a select takes typed text by keyboard
        assert Select(company).first_selected_option.get_attribute("value") == "company"
        driver.find_element(By.ID, "confirm").send_keys(Keys.ENTER)
        clock.lap("mapping")
        wait_for_text(driver, "NEEDS_REVIEW", "Review the rows in error")
        clock.lap("import to review")
        save_screenshot(driver, "importer-4-needs-review.png")

        driver.find_element(By.ID, "review").send_keys(Keys.ENTER)
        wait_for_text(driver, "invalid_email", "duplicate_email")
        email = driver.find_element(By.NAME, "r3.email")
        email.send_keys(Keys.CONTROL, "a")
        email.send_keys("cy@acme.io")
        driver.find_element(By.NAME, "r5.discard").send_keys(Keys.SPACE)
        email.send_keys(Keys.ENTER)
        wait_for_text(driver, "2 decision(s) saved")
        save_screenshot(driver, "importer-5-review.png")
        driver.find_element(By.ID, "reprocess").send_keys(Keys.ENTER)
        clock.lap("review")
        wait_for_text(driver, "COMPLETED", "Import complete")
        clock.lap("reprocess")
        save_screenshot(driver, "importer-6-completed.png")

        driver.switch_to.default_content()
        deadline = time.monotonic() + 20
        heard: list[dict] = []
        while time.monotonic() < deadline:
            heard = [
                {"type": e.get_attribute("data-type"), "text": e.text}
                for e in driver.find_elements(By.CSS_SELECTOR, "#events li")
            ]
            if len(heard) >= len(EVENTS_IN_ORDER):
                break
            time.sleep(0.3)
        save_screenshot(driver, "importer-7-host-page-events.png")
    finally:
        driver.quit()
        clock.save("importer-timings.json")

    assert [e["type"] for e in heard] == EVENTS_IN_ORDER, heard
    job_id = link_job(engine, link)
    assert all(job_id in e["text"] for e in heard)
    assert '"contacts_created":5' in heard[-1]["text"].replace(" ", "")
    done = job(engine, job_id)
    assert done.status == "COMPLETED" and done.uploaded_by == "ana@host.example"
    assert sorted(r[0] for r in rows(engine, "SELECT email FROM contacts")) == [
        "ann@acme.io",
        "bo@acme.io",
        "cy@acme.io",
        "dee@acme.io",
        "eve@acme.io",
    ]
    # The mapping is remembered for the tenant: the same header maps without a person.
    assert done.mapping["fields"]["company"] == ["Kundennummer"]


def link_job(engine, link: dict) -> str:
    found = rows(engine, "SELECT job_id FROM import_jobs WHERE link_id = :l", l=link["link_id"])
    assert len(found) == 1, found
    return found[0][0]
