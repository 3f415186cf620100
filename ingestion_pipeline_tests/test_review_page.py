"""The review page: signed in with the tenant's key or a signed link, paging through ten
thousand rows with issues, bulk discard, CSRF, and a whole review in headless Chromium."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from ingestion_pipeline.db.service import service_secret
from ingestion_pipeline.landing import LocalLandingZone
from ingestion_pipeline.service.pages import review_link_token
from ingestion_pipeline_tests.helpers import (
    chromium,
    csv_text,
    import_bytes,
    job,
    new_key,
    rows,
    run_sensors,
    save_screenshot,
    scalar,
    wait_for_text,
)

BAD_ROWS = 10_000


def signed_in(server, key: str) -> httpx.Client:
    client = httpx.Client(base_url=server.url, timeout=30)
    answer = client.post("/login", data={"key": key, "next": "/"})
    assert answer.status_code == 303 and "ip_session" in client.cookies
    return client


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, "no csrf field on the page"
    return found.group(1)


def test_ten_thousand_rows_page_by_page_filter_and_bulk_discard(
    server, engine, instance, api_resources, service_landing
):
    zone = LocalLandingZone(service_landing)
    content = csv_text(
        *(f"bad{i},F{i},L{i},Acme" for i in range(BAD_ROWS)),
        "dup@acme.io,D,One,Acme",
        "dup@acme.io,D,Two,Acme",
    )
    _, flawed = import_bytes(engine, instance, api_resources, zone, "acme", "big.csv", content)
    assert flawed.status == "NEEDS_REVIEW"
    job_id = flawed.job_id
    client = signed_in(server, new_key(engine, "acme"))

    started = time.perf_counter()
    first = client.get(f"/review/{job_id}")
    elapsed = time.perf_counter() - started
    assert first.status_code == 200
    shown = re.findall(r'<tr id="row-(\d+)">', first.text)
    assert shown == [str(n) for n in range(1, 51)]
    assert f"invalid_email ({BAD_ROWS})" in first.text and "duplicate_email (1)" in first.text
    nxt = re.search(r'id="next-page" href="([^"]+)"', first.text).group(1).replace("&amp;", "&")
    second = client.get(nxt)
    assert re.findall(r'<tr id="row-(\d+)">', second.text)[:2] == ["51", "52"]
    dups = client.get(f"/review/{job_id}", params={"kind": "duplicate_email"})
    assert re.findall(r'<tr id="row-(\d+)">', dups.text) == [str(BAD_ROWS + 1), str(BAD_ROWS + 2)]
    assert 'id="next-page"' not in dups.text
    last = client.get(f"/review/{job_id}", params={"after": BAD_ROWS - 10})
    assert len(re.findall(r'<tr id="row-', last.text)) == 12 and 'id="next-page"' not in last.text
    assert elapsed < 30, elapsed  # a loose bound: the page must not scan per row

    # Without the page's CSRF token nothing is recorded.
    refused = client.post(f"/review/{job_id}/discard-kind", data={"discard_kind": "invalid_email"})
    assert refused.status_code == 403
    assert scalar(engine, "SELECT count(*) FROM review_decisions") == 0
    answer = client.post(
        f"/review/{job_id}/discard-kind",
        data={"discard_kind": "invalid_email", "csrf": csrf_of(first.text)},
    )
    assert answer.status_code == 303 and f"{BAD_ROWS}+row" in answer.headers["location"]
    assert scalar(engine, "SELECT count(*) FROM review_decisions WHERE action = 'discard'") == (
        BAD_ROWS
    )
    page = client.get(f"/review/{job_id}", params={"kind": "invalid_email"}).text
    assert page.count("pending: discard") == 50


def test_a_review_link_opens_one_job_and_nothing_else(
    server, engine, instance, api_resources, service_landing
):
    zone = LocalLandingZone(service_landing)
    flawed = csv_text("x,A,B,C", "y@acme.io,A,B,C")
    _, one = import_bytes(engine, instance, api_resources, zone, "acme", "one.csv", flawed)
    _, two = import_bytes(engine, instance, api_resources, zone, "acme", "two.csv", flawed + b"z")
    with engine.begin() as conn:
        secret = service_secret(conn, "session")
    token = review_link_token(secret, "acme", one.job_id, hours=1)
    client = httpx.Client(base_url=server.url, timeout=30)
    answer = client.get(f"/review/{one.job_id}", params={"token": token})
    assert answer.status_code == 303 and answer.headers["location"] == f"/review/{one.job_id}"
    assert client.get(f"/review/{one.job_id}").status_code == 200
    assert client.get(f"/review/{two.job_id}").status_code == 404
    assert client.get(f"/v1/jobs/{two.job_id}").status_code == 404
    assert [j["job_id"] for j in client.get("/v1/jobs").json()["jobs"]] == [one.job_id]
    # A link reviews; it does not upload or change the tenant's webhook.
    upload = client.post("/v1/uploads", params={"file_name": "x.csv"}, content=flawed)
    assert upload.status_code == 404
    assert client.put("/v1/webhook", json={"url": "http://127.0.0.1:9/x"}).status_code == 404
    # The link's token opens only its own job, and expires.
    other = httpx.Client(base_url=server.url, timeout=30)
    assert other.get(f"/review/{two.job_id}", params={"token": token}).status_code == 401
    expired = review_link_token(secret, "acme", one.job_id, hours=-1)
    assert other.get(f"/review/{one.job_id}", params={"token": expired}).status_code == 401
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert other.get(f"/review/{one.job_id}", params={"token": forged}).status_code == 401
    # Another tenant's key sees no page.
    globex = signed_in(server, new_key(engine, "globex"))
    assert globex.get(f"/review/{one.job_id}").status_code == 404
    # The link's session (a SameSite=Strict cookie) acts on its own job through the API too.
    answer = client.post(
        f"/v1/jobs/{one.job_id}/decisions", json={"decisions": [{"row": 1, "action": "discard"}]}
    )
    assert answer.status_code == 200
    assert rows(engine, "SELECT source FROM review_decisions") == [("api",)]


@pytest.mark.slow
def test_a_whole_review_in_the_browser_with_the_keyboard(
    server, engine, instance, api_resources, service_landing
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    zone = LocalLandingZone(service_landing)
    content = csv_text(
        "ann@acme.io,Ann,Lee,Acme",
        "dup@acme.io,Dup,One,Acme",
        "dup@acme.io,Dup,Two,Acme",
        "broken,No,Mail,Acme",
        "cy@acme.io,Cy,,Acme",
    )
    _, flawed = import_bytes(engine, instance, api_resources, zone, "acme", "crm.csv", content)
    job_id = flawed.job_id
    assert flawed.status == "NEEDS_REVIEW"
    driver = chromium()
    try:
        driver.get(f"{server.url}/review/{job_id}")
        wait_for_text(driver, "Sign in to review")
        key_field = driver.find_element(By.ID, "key")
        key_field.send_keys(new_key(engine, "acme"), Keys.ENTER)
        wait_for_text(driver, "crm.csv", "NEEDS_REVIEW", "duplicate_email", "invalid_email")
        save_screenshot(driver, "review-page.png")

        # Keyboard only: type the fix into the email cell of record 4, tab to the name of
        # record 5, discard record 3 with the space bar, save with Enter.
        email = driver.find_element(By.NAME, "r4.email")
        email.send_keys(Keys.CONTROL, "a")
        email.send_keys("no.mail@acme.io")
        last = driver.find_element(By.NAME, "r5.last_name")
        assert last.get_attribute("aria-invalid") == "true"
        last.send_keys("Ho")
        driver.find_element(By.NAME, "r3.discard").send_keys(Keys.SPACE)
        last.send_keys(Keys.ENTER)
        wait_for_text(driver, "3 decision(s) saved", "pending: discard", "pending: fix")
        assert driver.find_element(By.NAME, "r4.email").get_attribute("value") == (
            "no.mail@acme.io"
        )
        save_screenshot(driver, "review-page-decisions.png")

        reprocess = driver.find_element(By.ID, "reprocess")
        reprocess.send_keys(Keys.ENTER)
        wait_for_text(driver, "Reprocessing requested")
        # The sensors launch the run (as the daemon would); the page follows the job.
        run_sensors(instance, api_resources)
        body = wait_for_text(driver, "COMPLETED", "Import complete: 4 contact(s) loaded")
        assert "Reprocess" not in body
        save_screenshot(driver, "review-page-completed.png")
    finally:
        driver.quit()
    assert job(engine, job_id).status == "COMPLETED"
    assert sorted(r[0] for r in rows(engine, "SELECT email FROM contacts")) == [
        "ann@acme.io",
        "cy@acme.io",
        "dup@acme.io",
        "no.mail@acme.io",
    ]
