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
    SERVICE_PART,
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


@pytest.mark.slow
def test_an_upload_resumes_after_the_page_is_reloaded_without_sending_stored_parts_again(
    server, engine, service_landing, tmp_path
):
    """Parts of 64 KiB over a throttled connection; the page is reloaded mid-way, the same file
    picked again: the parts the server has are not sent again, the file lands whole."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    lines = [f"p{i}@acme.io,Person,Number{i},Acme" for i in range(30_000)]
    export = tmp_path / "people.csv"
    export.write_text("email,first_name,last_name,company\n" + "\n".join(lines) + "\n")
    size = export.stat().st_size
    parts = -(-size // SERVICE_PART)
    assert parts >= 12
    link = import_link(server.url, new_key(engine, "acme"))

    driver = chromium()
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        slow = {"offline": False, "latency": 0, "downloadThroughput": -1}
        driver.execute_cdp_cmd(
            "Network.emulateNetworkConditions", {**slow, "uploadThroughput": 128 * 1024}
        )
        driver.get(link["url"])
        driver.find_element(By.ID, "file").send_keys(str(export))
        driver.find_element(By.ID, "upload").send_keys(Keys.ENTER)
        root = driver.find_element(By.ID, "import")
        deadline = time.monotonic() + 60
        while int(root.get_attribute("data-parts-sent") or 0) < 3:
            assert time.monotonic() < deadline, "the first parts never went up"
            time.sleep(0.1)
        driver.refresh()  # mid-way: the person reloads the page
        stored = session_parts(engine)
        assert 3 <= stored < parts, (stored, parts)

        driver.execute_cdp_cmd("Network.emulateNetworkConditions", {**slow, "uploadThroughput": -1})
        driver.find_element(By.ID, "file").send_keys(str(export))
        driver.find_element(By.ID, "upload").send_keys(Keys.ENTER)
        wait_for_text(driver, "What we read", "email, first_name, last_name, company")
        resent = int(driver.find_element(By.ID, "import").get_attribute("data-parts-sent"))
        save_screenshot(driver, "importer-resumed.png")
    finally:
        driver.quit()
    assert resent == parts - stored, (resent, parts, stored)
    landed = [p for p in (service_landing / "uploads" / "acme").rglob("people.*.csv")]
    assert len(landed) == 1
    digest = hashlib.sha256(landed[0].read_bytes()).hexdigest()
    assert digest == hashlib.sha256(export.read_bytes()).hexdigest()


def session_parts(engine) -> int:
    found = rows(engine, "SELECT parts FROM upload_sessions WHERE tenant_id = 'acme'")
    assert len(found) == 1, found
    return len(found[0][0])


def test_a_link_reaches_its_own_jobs_only_and_bad_links_are_refused(server, engine):
    """An import link sees the jobs uploaded through it: not the tenant's others, not another
    link's, not another tenant's; it cannot act as the tenant's key; a link that expired, was
    tampered with or is a review link opens nothing."""
    acme_key, globex_key = new_key(engine, "acme"), new_key(engine, "globex")
    with engine.begin() as conn:
        set_embed_origins(conn, "acme", ["https://app.acme.example"])
    first = import_link(server.url, acme_key, user="ana")
    second = import_link(server.url, acme_key)
    other = import_link(server.url, globex_key)
    contacts_only = import_link(server.url, acme_key, dataset="contacts")
    content = b"email,first_name,last_name,company\nann@acme.io,Ann,Lee,Acme\n"

    def upload(token: str, name: str, **params) -> httpx.Response:
        return httpx.post(
            f"{server.url}/v1/uploads",
            params={"file_name": name, **params},
            content=content,
            headers={"Authorization": f"Bearer {token}"},
        )

    by_link = upload(first["token"], "from-link.csv")
    assert by_link.status_code == 201 and by_link.json()["uploaded_by"] == "ana"
    linked_job = by_link.json()["job_id"]
    by_key = upload(acme_key, "from-key.csv").json()["job_id"]
    by_globex = upload(globex_key, "globex.csv").json()["job_id"]

    def api(token: str, path: str) -> httpx.Response:
        return httpx.get(f"{server.url}{path}", headers={"Authorization": f"Bearer {token}"})

    listed = [j["job_id"] for j in api(first["token"], "/v1/jobs").json()["jobs"]]
    assert listed == [linked_job]
    assert api(first["token"], f"/v1/jobs/{linked_job}").status_code == 200
    for stranger in (by_key, by_globex):
        assert api(first["token"], f"/v1/jobs/{stranger}").status_code == 404
    assert api(second["token"], f"/v1/jobs/{linked_job}").status_code == 404
    assert api(second["token"], "/v1/jobs").json()["jobs"] == []
    assert api(other["token"], f"/v1/jobs/{linked_job}").status_code == 404
    # The tenant's key sees every job of the tenant, the link's too.
    assert api(acme_key, f"/v1/jobs/{linked_job}").json()["uploaded_by"] == "ana"

    page = httpx.get(f"{server.url}/import", params={"link": first["token"]})
    assert page.status_code == 200 and "from-link.csv" in page.text
    assert "from-key.csv" not in page.text and "globex.csv" not in page.text
    assert (
        "from-link.csv"
        not in httpx.get(f"{server.url}/import", params={"link": other["token"]}).text
    )
    job_page = httpx.get(f"{server.url}/jobs/{linked_job}", params={"link": second["token"]})
    assert job_page.status_code == 404
    review = httpx.get(f"{server.url}/review/{linked_job}", params={"link": other["token"]})
    assert review.status_code == 404

    # Framing: the tenant's origins only, and the pages say so.
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'self' https://app.acme.example" in policy
    assert (
        "frame-ancestors 'self';"
        in httpx.get(f"{server.url}/login").headers["content-security-policy"] + ";"
    )
    assert page.headers["referrer-policy"] == "no-referrer"

    # A link is not the tenant's key.
    headers = {"Authorization": f"Bearer {first['token']}"}
    assert (
        httpx.put(
            f"{server.url}/v1/webhook", json={"url": "http://127.0.0.1:9/x"}, headers=headers
        ).status_code
        == 404
    )
    assert httpx.post(f"{server.url}/v1/import-links", json={}, headers=headers).status_code == 404
    # A link that fixes the dataset takes that dataset only.
    refused = upload(contacts_only["token"], "orders.csv", dataset="orders")
    assert refused.status_code == 422 and "takes contacts files, not orders" in refused.text

    with engine.begin() as conn:
        secret = service_secret(conn, "session")
    expired = make_token(secret, {"tenant": "acme", "link": first["link_id"]}, -5)
    payload, _, mac = first["token"].partition(".")
    forged_claims = make_token(b"not our secret", {"tenant": "globex", "link": "x"}, 3600)
    tampered = f"{payload}.{mac[:-2]}{'AA' if mac[-2:] != 'AA' else 'BB'}"
    review_link = make_token(secret, {"tenant": "acme", "job": linked_job}, 3600)
    for bad in (expired, tampered, forged_claims, review_link):
        opened = httpx.get(f"{server.url}/import", params={"link": bad})
        assert opened.status_code == 401 and "This import link is not valid" in opened.text
        assert api(bad, "/v1/jobs").status_code == 401
    assert httpx.get(f"{server.url}/import").status_code == 303  # no link: sign in


@pytest.mark.slow
def test_a_host_page_of_an_origin_not_allowed_cannot_frame_the_flow(server, engine, host_page):
    """The same host page, at an origin the tenant did not allow (localhost, not 127.0.0.1):
    Chromium refuses to show the flow in its frame, and the page hears nothing."""
    from selenium.webdriver.common.by import By

    with engine.begin() as conn:
        set_embed_origins(conn, "acme", [host_page.url()])
    link = import_link(server.url, new_key(engine, "acme"))
    driver = chromium()
    try:
        for host, shown in ((host_page.url(), True), (host_page.url("localhost"), False)):
            driver.get(f"{host}/embed.html?" + str(httpx.QueryParams({"src": link["url"]})))
            driver.switch_to.frame(driver.find_element(By.ID, "importer"))
            deadline = time.monotonic() + 15
            found, blocked = [], False
            while time.monotonic() < deadline and not (found or blocked):
                found = driver.find_elements(By.ID, "upload-form")
                # Chromium puts its error page in a frame whose ancestors are refused.
                blocked = driver.execute_script("return location.href").startswith("chrome-")
                time.sleep(0.2)
            assert bool(found) is shown and blocked is not shown, (host, shown)
            driver.switch_to.default_content()
        save_screenshot(driver, "importer-framing-refused.png")
        assert driver.find_elements(By.CSS_SELECTOR, "#events li") == []
    finally:
        driver.quit()


@pytest.mark.slow
def test_the_pages_at_320_pixels_and_at_200_percent_zoom_with_a_label_on_every_control(
    lane, engine
):
    """The upload, mapping and review pages fit a 320 px wide screen and a 200% zoom without
    scrolling sideways (wide tables scroll in their own box), every control has a name, and
    a file dropped on the page goes up as a picked one does."""

    lane.start_worker()
    link = import_link(lane.service.url, new_key(engine, "acme"))
    bearer = {"Authorization": f"Bearer {link['token']}"}
    flawed = b"email,first_name,last_name,company\nbroken,Al,Bo,Acme\nok@acme.io,Cy,Do,Acme\n"
    jobs = {}
    for name, content in (("kontakte.csv", EXPORT.encode()), ("flawed.csv", flawed)):
        jobs[name] = httpx.post(
            f"{lane.service.url}/v1/uploads",
            params={"file_name": name},
            content=content,
            headers=bearer,
        ).json()["job_id"]
    lane.wait_for_workers()
    wait_for_status(engine, jobs["kontakte.csv"], "NEEDS_MAPPING")
    wait_for_status(engine, jobs["flawed.csv"], "NEEDS_REVIEW")
    query = "?" + str(httpx.QueryParams({"link": link["token"]}))
    # A forged mapping form: columns the file does not have, and a count of them, are not
    # read; the form is checked against the file's own header.
    forged = httpx.post(
        f"{lane.service.url}/jobs/{jobs['kontakte.csv']}/mapping",
        data={"link": link["token"], "columns": "10000000000", "col0": "email", "col9": "company"},
    )
    assert forged.status_code == 422
    assert "required field(s) first_name, last_name, company have no column" in forged.text
    pages = (
        (link["url"], "upload", "Import a file"),
        (f"{lane.service.url}/jobs/{jobs['kontakte.csv']}{query}", "mapping", "Confirm the"),
        (f"{lane.service.url}/review/{jobs['flawed.csv']}{query}", "review", "invalid_email"),
    )
    unnamed = """
        return [...document.querySelectorAll('input:not([type=hidden]), select, button')]
          .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                       && !e.getAttribute('aria-labelledby') && !e.textContent.trim())
          .map(e => e.outerHTML);"""
    overflow = "return document.documentElement.scrollWidth - window.innerWidth;"
    drop = """
        const file = new File([arguments[0]], "dropped.csv", {type: "text/csv"});
        const data = new DataTransfer();
        data.items.add(file);
        document.getElementById("drop").dispatchEvent(
          new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));"""
    driver = chromium()
    try:
        for width, scale, size in ((320, 1, "320px"), (640, 2, "zoom-200")):
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": 900, "deviceScaleFactor": scale, "mobile": False},
            )
            for url, name, heading in pages:
                driver.get(url)
                wait_for_text(driver, heading)
                assert driver.execute_script(overflow) <= 0, (size, name)
                assert driver.execute_script(unnamed) == [], (size, name)
                save_screenshot(driver, f"importer-{name}-{size}.png")
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        driver.get(link["url"])
        driver.execute_script(drop, "email,first_name,last_name,company\ned@acme.io,Ed,Ek,Acme\n")
        wait_for_text(driver, "What we read", "dropped.csv uploaded")
    finally:
        driver.quit()
    dropped = rows(engine, "SELECT job_id FROM import_jobs WHERE file_name LIKE 'dropped.%'")
    assert len(dropped) == 1


def test_import_links_and_embed_origins_from_the_command_line(cli, server, engine):
    code, out, _ = cli("tenant", "acme", "--embed-origin", "https://App.Example.com/")
    assert code == 0 and "embed origins: https://app.example.com" in out
    code, _, err = cli("tenant", "acme", "--embed-origin", "https://app.example.com/path")
    assert code != 0 and "takes an origin such as" in err
    code, out, _ = cli(
        "import-link", "--tenant", "acme", "--dataset", "contacts", "--user", "bo",
        "--base-url", server.url, "--json",
    )  # fmt: skip
    assert code == 0
    made = json.loads(out)
    assert made["embed_origins"] == ["https://app.example.com"] and made["user"] == "bo"
    opened = httpx.get(made["url"])
    assert opened.status_code == 200 and "Import a file" in opened.text
    assert "<strong>contacts</strong>" in opened.text  # the link fixes the dataset
    code, _, err = cli("import-link", "--tenant", "acme", "--hours", "0")
    assert code != 0 and "hours must be" in err


def test_a_file_the_pages_cannot_read_says_why_at_once(server, engine):
    """A workbook that is not one: the upload answers with the reader's message, and the job
    page shows it (the run fails with the same); a name no reader takes is refused before
    any byte is sent, naming the extensions."""
    link = import_link(server.url, new_key(engine, "acme"))
    bearer = {"Authorization": f"Bearer {link['token']}"}
    answer = httpx.post(
        f"{server.url}/v1/uploads",
        params={"file_name": "contacts.xlsx"},
        content=b"this is not a zip archive at all",
        headers=bearer,
    ).json()
    reason = answer["first_answer"]["error"]
    assert "contacts" in reason
    page = httpx.get(f"{server.url}/jobs/{answer['job_id']}", params={"link": link["token"]})
    assert page.status_code == 200 and 'id="unreadable"' in page.text
    assert html_text(reason) in page.text
    refused = httpx.post(
        f"{server.url}/v1/upload-sessions",
        json={"file_name": "contacts.pdf", "size": 10},
        headers=bearer,
    )
    assert refused.status_code == 422 and ".xlsx" in refused.json()["detail"]


def html_text(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def test_signed_in_with_the_tenants_key_the_upload_page_works_by_its_session(server, engine):
    """Without a link: /import asks to sign in, the key's session opens the page with the
    tenant's recent jobs and every dataset, and the page's API calls go by its cookie."""
    client = httpx.Client(base_url=server.url, timeout=30)
    asked = client.get("/import")
    assert asked.status_code == 303 and asked.headers["location"] == "/login?next=%2Fimport"
    signed = client.post("/login", data={"key": new_key(engine, "acme"), "next": "/import"})
    assert signed.status_code == 303 and signed.headers["location"] == "/import"
    content = b"email,first_name,last_name,company\nann@acme.io,Ann,Lee,Acme\n"
    session = client.post(
        "/v1/upload-sessions", json={"file_name": "by-session.csv", "size": len(content)}
    ).json()
    client.put(f"/v1/upload-sessions/{session['session_id']}/parts/1", content=content)
    done = client.post(f"/v1/upload-sessions/{session['session_id']}/complete")
    assert done.status_code == 201 and done.json()["uploaded_by"] is None
    page = client.get("/import")
    assert page.status_code == 200 and "by-session.csv" in page.text
    assert all(f'<option value="{d}"' in page.text for d in ("contacts", "orders"))
    assert "frame-ancestors 'self';" in page.headers["content-security-policy"] + ";"
