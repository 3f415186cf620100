"""The review page: signed in with the tenant's key or a signed link, paging through ten
thousand rows with issues, filters by kind and field, bulk discard, find and replace (the page
and the API), the rows in error downloaded, CSRF, and whole reviews in headless Chromium."""

from __future__ import annotations

import csv
import io
import re
import time

import httpx
import pytest

from ingestion_pipeline.db.service import service_secret
from ingestion_pipeline.landing import LocalLandingZone
from ingestion_pipeline.service.links import import_link, review_link_token
from ingestion_pipeline_tests.helpers import (
    Client,
    chromium,
    contact_emails,
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


def shown_rows(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr id="row-(\d+)">', page)]


def next_page(page: str) -> str | None:
    found = re.search(r'id="next-page" href="([^"]+)"', page)
    return found.group(1).replace("&amp;", "&") if found else None


def test_filter_by_field_pages_and_combines_with_kind(
    server, engine, instance, api_resources, service_landing
):
    zone = LocalLandingZone(service_landing)
    # Odd records have a bad email, even ones no last name, the last one both.
    content = csv_text(
        *(
            f"bad{i},F{i},L{i},Acme" if i % 2 == 0 else f"p{i}@acme.io,F{i},,Acme"
            for i in range(120)
        ),
        "both,F,,Acme",
    )
    _, flawed = import_bytes(engine, instance, api_resources, zone, "acme", "mix.csv", content)
    job_id = flawed.job_id
    client = signed_in(server, new_key(engine, "acme"))

    everything = client.get(f"/review/{job_id}").text
    assert 'aria-label="Filter by field"' in everything
    assert "email (61 rows)" in everything and "last_name (61 rows)" in everything
    first = client.get(f"/review/{job_id}", params={"field": "last_name"})
    assert first.status_code == 200
    assert shown_rows(first.text) == list(range(2, 101, 2))
    # The forms keep the filter, and so does the next page.
    assert first.text.count('name="field" value="last_name"') >= 2
    nxt = next_page(first.text)
    assert nxt is not None and "field=last_name" in nxt
    second = client.get(nxt).text
    assert shown_rows(second) == [*range(102, 121, 2), 121]
    assert next_page(second) is None

    emails = client.get(f"/review/{job_id}", params={"field": "email", "kind": "invalid_email"})
    assert shown_rows(emails.text) == list(range(1, 100, 2))
    assert "field=email" in next_page(emails.text) and "kind=invalid_email" in next_page(
        emails.text
    )
    none = client.get(f"/review/{job_id}", params={"field": "email", "kind": "missing_field"})
    assert shown_rows(none.text) == []
    assert "No rows with open issues of this kind in this field." in none.text


def test_find_and_replace_over_the_api_previews_applies_and_a_reprocess_loads(
    server, engine, instance, api_resources, service_landing
):
    zone = LocalLandingZone(service_landing)
    content = csv_text(
        *(f'"a{i}@example,com",A{i},L{i},Acme' for i in range(5)),  # records 1-5
        '"gone@example,com",G,One,Acme',  # 6: pending discard, left alone
        "c-at-example,C,Two,Acme",  # 7: a pending fix already set its email
        "ok@acme.io,O,K,Acme",  # 8: no issue
        '"d@example,com",D,,Acme',  # 9: a pending fix of another field
    )
    _, flawed = import_bytes(engine, instance, api_resources, zone, "acme", "crm.csv", content)
    job_id = flawed.job_id
    api = Client(server.url, new_key(engine, "acme"))
    pending = [
        {"row": 6, "action": "discard"},
        {"row": 7, "action": "fix", "values": {"email": "c@example,com", "first_name": "Cee"}},
        {"row": 9, "action": "fix", "values": {"last_name": "Dee"}},
    ]
    assert api.post(f"/v1/jobs/{job_id}/decisions", json={"decisions": pending}).status_code == 200
    replace = {"field": "email", "find": ",com", "replace": ".com"}

    preview = api.post(f"/v1/jobs/{job_id}/replace", json=replace)
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert (body["job_id"], body["field"], body["rows"], body["applied"]) == (
        job_id,
        "email",
        7,
        False,
    )
    assert body["examples"][0] == {"row": 1, "before": "a0@example,com", "after": "a0@example.com"}
    assert [e["row"] for e in body["examples"]] == [1, 2, 3, 4, 5]
    assert scalar(engine, "SELECT count(*) FROM review_decisions") == 3
    whole = {**replace, "find": "c@example,com", "replace": "c@example.com", "whole_value": True}
    assert api.post(f"/v1/jobs/{job_id}/replace", json=whole).json()["rows"] == 1
    assert (
        api.post(f"/v1/jobs/{job_id}/replace", json={**whole, "find": "example"}).json()["rows"]
        == 0
    )
    empty = api.post(f"/v1/jobs/{job_id}/replace", json={**replace, "find": ""})
    assert empty.status_code == 422 and "find" in empty.json()["detail"]
    literal = api.post(f"/v1/jobs/{job_id}/replace", json={**replace, "find": "%_.*"})
    assert literal.status_code == 200 and literal.json()["rows"] == 0  # plain text, no pattern
    nul = api.post(f"/v1/jobs/{job_id}/replace", json={**replace, "find": "\u0000"})
    assert nul.status_code == 422 and "NUL" in nul.json()["detail"]
    unknown = api.post(f"/v1/jobs/{job_id}/replace", json={**replace, "field": "mail"})
    assert unknown.status_code == 422
    assert "email, first_name, last_name, company" in unknown.json()["detail"]
    assert scalar(engine, "SELECT count(*) FROM review_decisions") == 3

    applied = api.post(f"/v1/jobs/{job_id}/replace", json={**replace, "apply": True}).json()
    assert (applied["rows"], applied["applied"]) == (7, True)
    recorded = rows(
        engine,
        "SELECT row_number, action, changes FROM review_decisions "
        "WHERE source = 'api:replace' ORDER BY row_number",
    )
    assert [r[0] for r in recorded] == [1, 2, 3, 4, 5, 7, 9]
    changes = {r[0]: r[2] for r in recorded}
    assert {r[1] for r in recorded} == {"fix"}
    assert changes[1] == {"email": "a0@example.com"}
    assert changes[7] == {"email": "c@example.com", "first_name": "Cee"}
    assert changes[9] == {"email": "d@example.com", "last_name": "Dee"}
    # The latest decisions now hold the fixed values: nothing left to replace.
    again = api.post(f"/v1/jobs/{job_id}/replace", json={**replace, "apply": True}).json()
    assert again["rows"] == 0

    assert api.post(f"/v1/jobs/{job_id}/reprocess").status_code == 202
    run_sensors(instance, api_resources)
    assert job(engine, job_id).status == "COMPLETED"
    assert contact_emails(engine, "acme") == sorted(
        [*(f"a{i}@example.com" for i in range(5)), "c@example.com", "d@example.com", "ok@acme.io"]
    )
    assert rows(
        engine, "SELECT first_name, last_name FROM contacts WHERE source_row IN (7, 9)"
    ) in (
        [("Cee", "Two"), ("D", "Dee")],
        [("D", "Dee"), ("Cee", "Two")],
    )
    done = api.post(f"/v1/jobs/{job_id}/replace", json={**replace, "apply": True})
    assert done.status_code == 409 and "only jobs under review" in done.json()["detail"]


def test_find_and_replace_on_the_page_previews_then_applies(
    server, engine, instance, api_resources, service_landing
):
    zone = LocalLandingZone(service_landing)
    content = csv_text(
        *(f'"x{i}@example,com",X{i},Y{i},Acme' for i in range(3)), "ok@acme.io,O,K,A"
    )
    _, flawed = import_bytes(engine, instance, api_resources, zone, "acme", "page.csv", content)
    job_id = flawed.job_id
    client = signed_in(server, new_key(engine, "acme"))
    page = client.get(f"/review/{job_id}").text
    for control in ("in_field", "find", "replace_with", "whole"):
        assert f'<label for="{control}">' in page
    assert 'id="replace-result" role="status"' in page

    empty = client.get(f"/review/{job_id}", params={"in_field": "email", "find": ""}).text
    assert "Not previewed: nothing to find" in empty
    query = {"in_field": "email", "find": ",com", "replace_with": ".com"}
    preview = client.get(f"/review/{job_id}", params=query).text
    assert "3 row(s) would change" in preview
    assert "x0@example,com" in preview and "x0@example.com" in preview
    assert 'id="apply-replace"' in preview
    assert scalar(engine, "SELECT count(*) FROM review_decisions") == 0

    form = {**query, "kind": "invalid_email", "field": "", "after": "0"}
    refused = client.post(f"/review/{job_id}/replace", data=form)
    assert refused.status_code == 403
    assert scalar(engine, "SELECT count(*) FROM review_decisions") == 0
    answer = client.post(f"/review/{job_id}/replace", data={**form, "csrf": csrf_of(preview)})
    assert answer.status_code == 303
    assert "3+fix%28es%29+of+email+saved" in answer.headers["location"]
    assert "kind=invalid_email" in answer.headers["location"]
    assert rows(engine, "SELECT source, count(*) FROM review_decisions GROUP BY source") == [
        ("page:replace", 3)
    ]
    after = client.get(answer.headers["location"]).text
    assert after.count("pending: fix") == 3 and 'value="x2@example.com"' in after


def test_another_tenant_cannot_preview_apply_or_download_a_job(
    server, engine, instance, api_resources, service_landing
):
    zone = LocalLandingZone(service_landing)
    content = csv_text('"a@example,com",A,B,C')
    _, flawed = import_bytes(engine, instance, api_resources, zone, "acme", "a.csv", content)
    job_id = flawed.job_id
    replace = {"field": "email", "find": ",com", "replace": ".com", "apply": True}
    globex = Client(server.url, new_key(engine, "globex"))
    assert globex.post(f"/v1/jobs/{job_id}/replace", json=replace).status_code == 404
    assert globex.get(f"/v1/jobs/{job_id}/review.csv").status_code == 404
    # An import link reaches only the jobs uploaded through it: globex's, and acme's too.
    for tenant in ("globex", "acme"):
        link = import_link(engine, server.url, tenant)["token"]
        stranger = httpx.Client(base_url=server.url, timeout=30)
        query = {"link": link, "in_field": "email", "find": ",com", "replace_with": ".com"}
        assert stranger.get(f"/review/{job_id}", params=query).status_code == 404
        assert stranger.get(f"/review/{job_id}/rows.csv", params={"link": link}).status_code == 404
        form = {"link": link, "in_field": "email", "find": ",com", "replace_with": ".com"}
        assert stranger.post(f"/review/{job_id}/replace", data=form).status_code == 404
    signed = signed_in(server, new_key(engine, "globex"))
    assert signed.get(f"/review/{job_id}/rows.csv").status_code == 404
    assert scalar(engine, "SELECT count(*) FROM review_decisions") == 0
    # The owner's key does what the others could not.
    acme = Client(server.url, new_key(engine, "acme"))
    assert acme.post(f"/v1/jobs/{job_id}/replace", json=replace).json()["rows"] == 1


def test_download_the_rows_in_error_as_the_review_file(
    server, engine, instance, api_resources, service_landing
):
    zone = LocalLandingZone(service_landing)
    bad = 2_500  # more than one chunk of the stream
    content = csv_text(
        *(f"bad{i},F{i},L{i},Acme" for i in range(bad)),
        "ok@acme.io,O,K,Acme",
        "=1+1,Formula,Row,Acme",
    )
    _, flawed = import_bytes(engine, instance, api_resources, zone, "acme", "dl.csv", content)
    job_id = flawed.job_id
    anonymous = httpx.Client(base_url=server.url, timeout=30)
    assert anonymous.get(f"/review/{job_id}/rows.csv").status_code == 303
    client = signed_in(server, new_key(engine, "acme"))
    page = client.get(f"/review/{job_id}").text
    assert f'id="download" href="/review/{job_id}/rows.csv"' in page

    answer = client.get(f"/review/{job_id}/rows.csv")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"] == (
        f'attachment; filename="{job_id}-rows-in-error.csv"'
    )
    assert answer.content.startswith(b"\xef\xbb\xbf")
    assert answer.content.endswith(b"\r\n")
    header, *lines = csv.reader(io.StringIO(answer.content.decode("utf-8-sig")))
    assert header == ["row", "email", "first_name", "last_name", "company", "problems", "action"]
    numbers = [int(line[0]) for line in lines]
    assert numbers == [*range(1, bad + 1), bad + 2]
    assert lines[0][:5] == ["1", "bad0", "F0", "L0", "Acme"]
    assert lines[0][5].startswith("invalid_email: ") and lines[0][6] == ""
    assert lines[-1][:2] == [str(bad + 2), "'=1+1"]  # neutralized for spreadsheets
    in_error = scalar(engine, "SELECT count(*) FROM staging_rows WHERE status = 'ISSUE'")
    assert len(numbers) == in_error == bad + 1

    api = Client(server.url, new_key(engine, "acme"))
    same = api.get(f"/v1/jobs/{job_id}/review.csv")
    assert same.status_code == 200 and same.content == answer.content
    # A review link's session downloads its job's file too.
    with engine.begin() as conn:
        secret = service_secret(conn, "session")
    reviewer = httpx.Client(base_url=server.url, timeout=30)
    reviewer.get(
        f"/review/{job_id}", params={"token": review_link_token(secret, "acme", job_id, 1)}
    )
    assert reviewer.get(f"/review/{job_id}/rows.csv").content == answer.content


@pytest.mark.slow
def test_find_and_replace_over_ten_thousand_rows_in_the_browser(
    server, engine, instance, api_resources, service_landing
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    zone = LocalLandingZone(service_landing)
    content = csv_text(*(f'"user{i}@example,com",F{i},L{i},Acme' for i in range(BAD_ROWS)))
    _, flawed = import_bytes(engine, instance, api_resources, zone, "acme", "commas.csv", content)
    job_id = flawed.job_id
    assert flawed.status == "NEEDS_REVIEW"
    driver = chromium()
    try:
        driver.get(f"{server.url}/review/{job_id}")
        wait_for_text(driver, "Sign in to review")
        driver.find_element(By.ID, "key").send_keys(new_key(engine, "acme"), Keys.ENTER)
        wait_for_text(driver, "commas.csv", "NEEDS_REVIEW", "Find and replace")

        # Keyboard only: choose the field, type what to find and its replacement, Enter.
        driver.find_element(By.ID, "in_field").send_keys("email")
        driver.find_element(By.ID, "find").send_keys(",com")
        driver.find_element(By.ID, "replace_with").send_keys(".com", Keys.ENTER)
        wait_for_text(driver, "10,000 row(s) would change", "user0@example.com")
        assert scalar(engine, "SELECT count(*) FROM review_decisions") == 0
        save_screenshot(driver, "review-replace-preview.png")

        # The Apply button has the focus: Enter applies.
        assert driver.switch_to.active_element.get_attribute("id") == "apply-replace"
        driver.switch_to.active_element.send_keys(Keys.ENTER)
        wait_for_text(driver, "10,000 fix(es) of email saved")
        save_screenshot(driver, "review-replace-applied.png")
        assert scalar(
            engine, "SELECT count(*) FROM review_decisions WHERE source = 'page:replace'"
        ) == (BAD_ROWS)

        driver.find_element(By.ID, "reprocess").send_keys(Keys.ENTER)
        wait_for_text(driver, "Reprocessing requested")
        # The sensors launch the run (as the daemon would); the page follows the job.
        run_sensors(instance, api_resources)
        wait_for_text(driver, "COMPLETED", f"Import complete: {BAD_ROWS} contact(s) loaded")
        save_screenshot(driver, "review-replace-completed.png")
    finally:
        driver.quit()
    assert job(engine, job_id).status == "COMPLETED"
    assert scalar(engine, "SELECT count(*) FROM contacts WHERE email LIKE 'user%@example.com'") == (
        BAD_ROWS
    )
