"""The HTTP service end to end: `ingestion-pipeline serve` as a process on loopback, real
PostgreSQL, the landing folder, and the project's sensors launching the runs."""

from __future__ import annotations

import hashlib
import http.server
import json
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from ingestion_pipeline.db.service import set_import_limit
from ingestion_pipeline.landing import LocalLandingZone, S3LandingZone
from ingestion_pipeline.service.signing import (
    InvalidSignatureError,
    new_webhook_secret,
    verify_webhook,
)
from ingestion_pipeline.service.uploads import (
    ConflictError,
    Spooled,
    accept_upload,
    complete_session,
    put_session_part,
    start_session,
)
from ingestion_pipeline_tests.helpers import (
    SERVICE_MAX_UPLOAD,
    SERVICE_PART,
    Client,
    ServiceProcess,
    csv_text,
    import_bytes,
    job,
    new_key,
    register_upload,
    rows,
    run_sensors,
    scalar,
)

FLAWED = csv_text(
    "ann@acme.io,Ann,Lee,Acme",
    "dup@acme.io,Dup,One,Acme",
    "dup@acme.io,Dup,Two,Acme",
    "broken,No,Mail,Acme",
)
CLEAN = csv_text("bo@acme.io,Bo,Ek,Acme", "cy@acme.io,Cy,Ho,Acme")


def test_upload_follow_review_reprocess_to_completed(
    server, engine, instance, api_resources, service_landing
):
    acme = Client(server.url, new_key(engine, "acme"))
    answer = acme.upload("contacts.csv", FLAWED)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    job_id = body["job_id"]
    assert body["status"] == "PENDING" and body["created"] is True
    assert answer.headers["location"] == f"/v1/jobs/{job_id}"
    # The service wrote the file and the job; the sensor launches the run.
    assert (service_landing / body["file"]).read_bytes() == FLAWED
    assert scalar(engine, "SELECT count(*) FROM import_jobs") == 1

    run_sensors(instance, api_resources)
    status = acme.get(f"/v1/jobs/{job_id}").json()
    assert status["status"] == "NEEDS_REVIEW"
    assert status["total_rows"] == status["processed_rows"] == 4
    assert status["issues_by_kind"] == {"duplicate_email": 1, "invalid_email": 1}

    first = acme.get(f"/v1/jobs/{job_id}/issues", params={"limit": 1}).json()
    assert len(first["issues"]) == 1 and first["next_after"] is not None
    second = acme.get(
        f"/v1/jobs/{job_id}/issues", params={"limit": 1, "after": first["next_after"]}
    ).json()
    assert second["next_after"] is None
    kinds = {i["kind"]: i["rows"] for i in first["issues"] + second["issues"]}
    assert kinds == {"duplicate_email": [2, 3], "invalid_email": [4]}

    decisions = {
        "decisions": [
            {"row": 3, "action": "discard"},
            {"row": 4, "action": "fix", "values": {"email": " no.mail@acme.io "}},
        ]
    }
    answer = acme.post(f"/v1/jobs/{job_id}/decisions", json=decisions)
    assert answer.status_code == 200 and answer.json()["recorded"] == 2
    answer = acme.post(f"/v1/jobs/{job_id}/reprocess")
    assert answer.status_code == 202 and answer.json()["job_name"] == "reprocess_job"
    assert acme.get(f"/v1/jobs/{job_id}").json()["status"] == "NEEDS_REVIEW"  # not run by us

    run_sensors(instance, api_resources)
    done = acme.get(f"/v1/jobs/{job_id}").json()
    assert done["status"] == "COMPLETED" and done["contacts_created"] == 3
    assert done["issue_count"] == 0 and done["issues_by_kind"] == {}
    assert sorted(r[0] for r in rows(engine, "SELECT email FROM contacts")) == [
        "ann@acme.io",
        "dup@acme.io",
        "no.mail@acme.io",
    ]
    # Done is done: no decisions, no reprocess.
    assert acme.post(f"/v1/jobs/{job_id}/reprocess").status_code == 409
    assert acme.post(f"/v1/jobs/{job_id}/decisions", json=decisions).status_code == 409
    listed = acme.get("/v1/jobs", params={"status": "COMPLETED"}).json()
    assert [j["job_id"] for j in listed["jobs"]] == [job_id]


def test_idempotency_key_same_bytes_same_job_other_bytes_conflict(server, engine, api_resources):
    acme = Client(server.url, new_key(engine, "acme"))
    first = acme.upload("contacts.csv", CLEAN, key="order-17")
    again = acme.upload("contacts.csv", CLEAN, key="order-17")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["job_id"] == first.json()["job_id"] and again.json()["created"] is False
    other = acme.upload("contacts.csv", FLAWED, key="order-17")
    assert other.status_code == 409 and first.json()["job_id"] in other.json()["detail"]
    # The same bytes under no key (or another key) are the same object version: the same job.
    plain = acme.upload("renamed-by-app.csv", CLEAN)
    assert plain.status_code == 201  # another name is another object
    same = acme.upload("contacts.csv", CLEAN, key="order-18")
    assert same.status_code == 200 and same.json()["job_id"] == first.json()["job_id"]
    assert scalar(engine, "SELECT count(*) FROM import_jobs") == 2


def test_another_tenant_sees_nothing_and_no_key_gets_nothing(
    server, engine, instance, api_resources
):
    acme = Client(server.url, new_key(engine, "acme"))
    job_id = acme.upload("contacts.csv", FLAWED).json()["job_id"]
    run_sensors(instance, api_resources)
    assert acme.get(f"/v1/jobs/{job_id}").json()["status"] == "NEEDS_REVIEW"

    globex = Client(server.url, new_key(engine, "globex"))
    nobody = Client(server.url, None)
    forged = Client(server.url, "ipk_000000000000_not-a-real-secret")
    probes = [
        ("GET", f"/v1/jobs/{job_id}", None),
        ("GET", f"/v1/jobs/{job_id}/issues", None),
        ("POST", f"/v1/jobs/{job_id}/decisions", {"decisions": [{"row": 4, "action": "discard"}]}),
        ("POST", f"/v1/jobs/{job_id}/mapping", {"fields": {"email": "email"}}),
        ("POST", f"/v1/jobs/{job_id}/reprocess", None),
        ("GET", f"/review/{job_id}", None),
    ]
    for method, path, payload in probes:
        answer = globex.request(method, path, json=payload)
        if path.startswith("/review/"):
            assert answer.status_code in (303, 307) or "Sign in" in answer.text
        else:
            assert answer.status_code == 404, (path, answer.text)
            assert job_id in answer.text or "no import job" in answer.text
        for outsider in (nobody, forged):
            if not path.startswith("/review/"):
                assert outsider.request(method, path, json=payload).status_code == 401
    assert globex.get("/v1/jobs").json()["jobs"] == []
    assert globex.get("/v1/webhook/deliveries").json() == []
    # Nothing changed for acme: no decision recorded, no run requested.
    assert scalar(engine, "SELECT count(*) FROM review_decisions") == 0
    assert scalar(engine, "SELECT count(*) FROM run_requests") == 0
    # A revoked key stops working at once.
    key_id = scalar(engine, "SELECT key_id FROM api_keys WHERE tenant_id = 'globex'")
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE api_keys SET revoked_at = now() WHERE key_id = :k"), {"k": key_id}
        )
    assert globex.get("/v1/jobs").status_code == 401


def test_oversized_and_malformed_requests_are_clear_4xx_and_write_nothing(
    server, engine, instance, api_resources, service_landing
):
    acme = Client(server.url, new_key(engine, "acme"))
    too_big = b"email\n" + b"x@y.io\n" * (SERVICE_MAX_UPLOAD // 7 + 10)
    answer = acme.upload("big.csv", too_big)
    assert answer.status_code == 413 and str(SERVICE_MAX_UPLOAD) in answer.json()["detail"]
    # Streamed without a Content-Length: stopped at the limit all the same.
    answer = acme.post(
        "/v1/uploads",
        params={"file_name": "big.csv"},
        content=iter([too_big[i : i + 65536] for i in range(0, len(too_big), 65536)]),
    )
    assert answer.status_code == 413
    for name, content, words in [
        ("../../etc/passwd.csv", CLEAN, "plain file name"),
        ("run.exe", CLEAN, "plain file name ending in one of .csv"),
        (".hidden.csv", CLEAN, "plain file name"),
        ("empty.csv", b"", "empty"),
    ]:
        answer = acme.upload(name, content)
        assert answer.status_code == 422 and words in answer.json()["detail"], answer.text
    assert acme.post("/v1/uploads", content=CLEAN).status_code == 422  # no file_name
    assert not list(service_landing.rglob("*.csv")) and not list(service_landing.rglob("*.exe"))
    assert scalar(engine, "SELECT count(*) FROM import_jobs") == 0

    job_id = acme.upload("contacts.csv", FLAWED).json()["job_id"]
    run_sensors(instance, api_resources)
    url = f"/v1/jobs/{job_id}/decisions"
    bad = [
        (b"{not json", "not valid JSON"),
        (json.dumps({"decisions": []}).encode(), "at least 1"),
        (json.dumps({"decisions": [{"row": 0, "action": "discard"}]}).encode(), "row"),
        (json.dumps({"decisions": [{"row": 2, "action": "burn"}]}).encode(), "action"),
        (
            json.dumps(
                {"decisions": [{"row": 2, "action": "fix", "values": {"phone": "1"}}]}
            ).encode(),
            "unknown field",
        ),
        (json.dumps({"decisions": [{"row": 99, "action": "discard"}]}).encode(), "no record 99"),
        (
            json.dumps(
                {
                    "decisions": [
                        {"row": 2, "action": "discard"},
                        {"row": 98, "action": "fix", "values": {"email": "a@b.io"}},
                    ]
                }
            ).encode(),
            "no record 98",
        ),
    ]
    for content, words in bad:
        answer = acme.post(url, content=content, headers={"content-type": "application/json"})
        assert answer.status_code == 422 and words in answer.json()["detail"], answer.text
    assert scalar(engine, "SELECT count(*) FROM review_decisions") == 0  # all or nothing
    answer = acme.post(f"/v1/jobs/{job_id}/mapping", json={"fields": {"email": "email"}})
    assert answer.status_code == 409 and "NEEDS_REVIEW" in answer.json()["detail"]
    assert acme.get("/v1/jobs/NOT A JOB").status_code in (404, 422)
    assert acme.get("/v1/jobs", params={"limit": 0}).status_code == 422


def test_resumable_session_on_the_landing_folder(
    server, engine, instance, api_resources, service_landing
):
    acme = Client(server.url, new_key(engine, "acme"))
    content = csv_text(*(f"p{i}@acme.io,P{i},Q{i},Acme" for i in range(5000)))
    assert 2 * SERVICE_PART < len(content) < 3 * SERVICE_PART
    session = acme.post(
        "/v1/upload-sessions", json={"file_name": "big.csv", "size": len(content)}
    ).json()
    url = session["url"]
    assert session["part_size"] == SERVICE_PART and session["parts_received"] == []
    parts = [content[i : i + SERVICE_PART] for i in range(0, len(content), SERVICE_PART)]
    assert acme.put(f"{url}/parts/1", content=parts[0]).status_code == 200
    assert acme.put(f"{url}/parts/3", content=parts[2]).status_code == 200
    wrong = acme.put(f"{url}/parts/2", content=parts[1][:-1])
    assert wrong.status_code == 422 and f"must be {SERVICE_PART} bytes" in wrong.json()["detail"]
    # The connection dropped; the client asks what arrived and sends the rest.
    assert acme.get(url).json()["parts_received"] == [1, 3]
    early = acme.post(f"{url}/complete")
    assert early.status_code == 409 and "missing part(s) 2" in early.json()["detail"]
    assert not list(service_landing.glob("uploads/*/*"))  # nothing visible to the sensor yet
    assert acme.put(f"{url}/parts/2", content=parts[1]).status_code == 200
    done = acme.post(f"{url}/complete")
    assert done.status_code == 201, done.text
    assert (service_landing / done.json()["file"]).read_bytes() == content
    assert acme.post(f"{url}/complete").json()["job_id"] == done.json()["job_id"]
    # Another tenant cannot see or feed the session.
    globex = Client(server.url, new_key(engine, "globex"))
    assert globex.get(url).status_code == 404
    assert globex.put(f"{url}/parts/1", content=parts[0]).status_code == 404
    run_sensors(instance, api_resources)
    assert job(engine, done.json()["job_id"]).status == "COMPLETED"
    assert scalar(engine, "SELECT count(*) FROM contacts") == 5000


def test_resumable_session_on_s3_is_a_multipart_upload(engine, s3_endpoint, s3_bucket):
    from ingestion_pipeline.resources import open_landing_zone

    zone = open_landing_zone(f"s3://{s3_bucket}/in", s3_endpoint, "us-east-1")
    assert isinstance(zone, S3LandingZone)
    part = 5 * 1024 * 1024
    content = csv_text(*(f"s{i}@acme.io,S{i},T{i},Acme" for i in range(320_000)))
    assert 2 * part < len(content) < 3 * part
    session = start_session(engine, zone, "acme", "crm.csv", len(content), part)
    assert zone.stat(session["object_key"]) is None
    tmp = Path(f"/tmp/part-{uuid.uuid4().hex}")
    try:
        for number in (3, 1, 2):  # any order; a part sent again replaces the first copy
            chunk = content[(number - 1) * part : number * part]
            tmp.write_bytes(chunk)
            spooled = Spooled(tmp, len(chunk), "")
            put_session_part(engine, zone, "acme", session["session_id"], number, spooled)
            if number == 3:
                with pytest.raises(ConflictError, match="missing part"):
                    complete_session(engine, zone, "acme", session["session_id"])
    finally:
        tmp.unlink(missing_ok=True)
    outcome = complete_session(engine, zone, "acme", session["session_id"])
    info = zone.stat(session["object_key"])
    assert info is not None and info.size == len(content)
    assert info.etag.endswith("-3")  # a multipart ETag: not the MD5 of the bytes
    with zone.open(info.key) as stream:
        assert stream.read() == content
    assert job(engine, outcome.job_id).source_etag == info.etag

    # A single upload lands on S3 the same way: one object, one job, the same job again.
    tmp.write_bytes(CLEAN)
    try:
        body = Spooled(tmp, len(CLEAN), hashlib.sha256(CLEAN).hexdigest())
        first = accept_upload(engine, zone, "acme", "small.csv", body, "k-1")
        again = accept_upload(engine, zone, "acme", "small.csv", body, None)
    finally:
        tmp.unlink(missing_ok=True)
    assert first.created and not again.created and first.job_id == again.job_id
    small = job(engine, first.job_id)
    with zone.open(small.source_key, small.source_etag) as stream:
        assert stream.read() == CLEAN


def test_import_limit_holds_across_two_server_processes_and_the_sensor(
    server, service_env, engine, instance, api_resources, service_landing, tmp_path
):
    with engine.begin() as conn:
        set_import_limit(conn, "acme", 3, 3600)
    key = new_key(engine, "acme")
    second = ServiceProcess(service_env, tmp_path / "second.log")
    try:
        clients = [Client(server.url, key), Client(second.url, key)]
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(
                    lambda i: clients[i % 2].upload(f"f{i}.csv", csv_text(f"a{i}@acme.io,A,B,C")),
                    range(10),
                )
            )
    finally:
        second.stop()
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] * 3 + [429] * 7, [a.text for a in answers]
    for answer in answers:
        if answer.status_code == 429:
            assert 3500 <= int(answer.headers["retry-after"]) <= 3600
            assert "import limit" in answer.json()["detail"]
    assert (
        len(list((service_landing / "uploads" / "acme").iterdir())) == 3
    )  # refused ones not written
    assert scalar(engine, "SELECT count(*) FROM admissions WHERE tenant_id = 'acme'") == 3

    # Files dropped in the bucket beyond the window wait PENDING; they are not dropped.
    zone = LocalLandingZone(service_landing)
    waiting = [register_upload(engine, zone, "acme", f"b{i}.csv", CLEAN) for i in range(2)]
    other = register_upload(engine, zone, "globex", "g.csv", CLEAN)  # no limit: runs
    run_sensors(instance, api_resources)
    assert job(engine, other).status == "COMPLETED"
    assert [job(engine, w).status for w in waiting] == ["PENDING", "PENDING"]
    # The window slides: the next tick admits them.
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE admissions SET admitted_at = now() - interval '2 hours'"))
    run_sensors(instance, api_resources)
    assert job(engine, waiting[0]).status == "COMPLETED"
    assert job(engine, waiting[1]).status in ("COMPLETED", "NEEDS_REVIEW")  # same contacts


class Receiver:
    """A webhook receiver on loopback that fails the first `failures` deliveries."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes, int]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                status = 500 if len(outer.received) < outer.failures else 204
                outer.received.append(
                    ({k.lower(): v for k, v in self.headers.items()}, body, status)
                )
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/ingest"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_webhook_is_signed_retried_until_delivered_and_a_replay_is_refused(
    server, engine, instance, api_resources, service_landing
):
    receiver = Receiver(failures=2)
    try:
        acme = Client(server.url, new_key(engine, "acme"))
        answer = acme.put("/v1/webhook", json={"url": receiver.url})
        secret = answer.json()["secret"]
        assert answer.status_code == 200 and secret.startswith("whsec_")
        zone = LocalLandingZone(service_landing)
        _, done = import_bytes(engine, instance, api_resources, zone, "acme", "c.csv", CLEAN)
        assert done.status == "COMPLETED"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(r[2] == 204 for r in receiver.received):
            time.sleep(0.2)
    finally:
        receiver.close()
    assert [r[2] for r in receiver.received] == [500, 500, 204]
    ids = {r[0]["webhook-id"] for r in receiver.received}
    assert len(ids) == 1  # one event id on every attempt: the receiver de-duplicates by it
    headers, body, _ = receiver.received[-1]
    payload = verify_webhook(secret, headers, body)
    assert payload["type"] == "job.completed" and payload["data"]["job_id"] == done.job_id
    assert payload["data"]["contacts_created"] == 2 and payload["data"]["event_id"] in ids
    with pytest.raises(InvalidSignatureError, match="signature"):
        verify_webhook(secret, headers, body.replace(b'"contacts_created": 2', b'"x": 9'))
    with pytest.raises(InvalidSignatureError, match="replay"):
        verify_webhook(secret, headers, body, now=int(headers["webhook-timestamp"]) + 301)
    with pytest.raises(InvalidSignatureError, match="signature"):
        verify_webhook(new_webhook_secret(), headers, body)
    log = acme.get("/v1/webhook/deliveries").json()
    assert [(d["event"], d["state"], d["attempts"], d["last_status"]) for d in log] == [
        ("job.completed", "delivered", 3, 204)
    ]
    # Another tenant's key sees none of it.
    assert Client(server.url, new_key(engine, "globex")).get("/v1/webhook/deliveries").json() == []


def test_a_receiver_that_never_answers_is_given_up_after_the_attempts(
    server, engine, instance, api_resources, service_landing
):
    with engine.begin() as conn:
        from ingestion_pipeline.db.service import set_webhook

        set_webhook(conn, "acme", "http://127.0.0.1:9/closed-port")
    zone = LocalLandingZone(service_landing)
    import_bytes(engine, instance, api_resources, zone, "acme", "c.csv", FLAWED)
    deadline = time.monotonic() + 30
    state = None
    while time.monotonic() < deadline:
        state = rows(engine, "SELECT event, state, attempts, last_error FROM webhook_deliveries")
        if state and state[0][1] == "failed":
            break
        time.sleep(0.3)
    assert state and state[0][:3] == ("job.needs_review", "failed", 4), state
    assert "Connection refused" in state[0][3] or "URLError" in state[0][3]


def test_mapping_over_http_continues_a_waiting_job(server, engine, instance, api_resources):
    acme = Client(server.url, new_key(engine, "acme"))
    content = b"Kontakt;Vorname;Nachname;Client Ref\nann@acme.io;Ann;Lee;Acme\n"
    job_id = acme.upload("crm.csv", content).json()["job_id"]
    run_sensors(instance, api_resources)
    waiting = acme.get(f"/v1/jobs/{job_id}").json()
    if waiting["status"] != "NEEDS_MAPPING":  # the values told which column is the email
        pytest.fail(f"expected NEEDS_MAPPING, got {waiting['status']}: {waiting['mapping']}")
    wrong = acme.post(f"/v1/jobs/{job_id}/mapping", json={"fields": {"company": "Client"}})
    assert wrong.status_code == 422 and "no column 'Client'" in wrong.json()["detail"]
    fields = {"company": "Client Ref", "email": "Kontakt"}
    answer = acme.post(f"/v1/jobs/{job_id}/mapping", json={"fields": fields})
    assert answer.status_code == 202 and answer.json()["job_name"] == "import_job"
    run_sensors(instance, api_resources)
    done = acme.get(f"/v1/jobs/{job_id}").json()
    assert done["status"] == "COMPLETED" and done["contacts_created"] == 1
    assert done["mapping"]["fields"]["company"] == ["Client Ref"]


@pytest.fixture
def fuzz_key(server, engine) -> str:
    return new_key(engine, "fuzz")


SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def test_openapi_description_fuzzed_without_a_server_error(server, fuzz_key, tmp_path):
    """Schemathesis generates requests, valid and not, for every operation of the OpenAPI
    description: never a 5xx, every status code and body as described."""
    proc = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error,status_code_conformance,response_schema_conformance",
            "--header",
            f"Authorization: Bearer {fuzz_key}",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--request-timeout",
            "30",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
        ],
        cwd=tmp_path,  # its example database stays out of the checkout
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    operations = sum(len(methods) for methods in paths.values())
    assert operations >= 14  # every operation of the API, import links included
    assert f"Tested: {operations}" in proc.stdout and "Server error" not in proc.stdout, (
        proc.stdout[-3000:]
    )


def test_keys_limits_webhooks_and_review_links_from_the_command_line(cli, engine):
    code, out, err = cli("api-key", "create", "--tenant", "acme", "--name", "crm")
    assert code == 0 and out.startswith("ipk_") and "shown once" in err
    key = out.strip()
    key_id = key.split("_")[1]
    assert scalar(engine, "SELECT secret_sha256 FROM api_keys") not in key  # only a hash kept
    code, out, _ = cli("api-key", "list", "--tenant", "acme")
    assert key_id in out and "active" in out and "crm" in out
    assert cli("api-key", "list", "--tenant", "globex")[1] == ""
    assert cli("api-key", "revoke", key_id)[0] == 0
    code, _, err = cli("api-key", "revoke", key_id)
    assert code == 1 and "no active key" in err
    assert "revoked" in cli("api-key", "list")[1]

    code, out, _ = cli("tenant", "acme", "--import-limit", "5", "--window", "60")
    assert code == 0 and "import limit: 5 per 60 s" in out
    code, out, _ = cli("tenant", "acme", "--webhook", "http://127.0.0.1:9/hook")
    assert "webhook: http://127.0.0.1:9/hook" in out and "webhook secret: whsec_" in out
    code, _, err = cli("tenant", "acme", "--webhook", "ftp://example")
    assert code == 1 and "http(s) URL" in err
    code, out, _ = cli("tenant", "acme", "--no-limit", "--no-webhook")
    assert "import limit: none" in out and "webhook: none" in out

    code, _, err = cli("review-link", "acme-nothing-0000000000")
    assert code == 1 and "no import job" in err


def test_review_link_from_the_command_line_opens_that_job(cli, engine, local_zone):
    from ingestion_pipeline.db.service import service_secret
    from ingestion_pipeline.service.signing import read_token

    job_id = register_upload(engine, local_zone, "acme", "c.csv", CLEAN)
    code, out, _ = cli("review-link", job_id, "--hours", "2", "--base-url", "http://h:1/")
    assert code == 0 and out.startswith(f"http://h:1/review/{job_id}?token=")
    with engine.begin() as conn:
        claims = read_token(service_secret(conn, "session"), out.strip().split("token=")[1])
    assert claims["tenant"] == "acme" and claims["job"] == job_id
    assert 7000 < claims["exp"] - time.time() <= 7200
    code, _, err = cli("review-link", job_id, "--tenant", "globex")
    assert code == 1 and "no import job" in err


def test_an_expired_session_is_swept_with_its_parts(engine, local_zone, landing_dir):
    from ingestion_pipeline.service.uploads import sweep_expired_sessions

    session = start_session(engine, local_zone, "acme", "old.csv", 10, 5)
    part = landing_dir / "part.bin"
    part.write_bytes(b"email")
    put_session_part(engine, local_zone, "acme", session["session_id"], 1, Spooled(part, 5, ""))
    parts_dir = landing_dir / ".uploads" / session["upload_id"]
    assert (parts_dir / "1").read_bytes() == b"email"
    fresh = start_session(engine, local_zone, "acme", "new.csv", 10, 5)
    assert sweep_expired_sessions(engine, local_zone) == 0  # nothing expired yet
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE upload_sessions SET expires_at = now() - interval '1 second' "
                    "WHERE session_id = :s"),
            {"s": session["session_id"]},
        )  # fmt: skip
    assert sweep_expired_sessions(engine, local_zone) == 1
    assert not parts_dir.exists()
    assert rows(engine, "SELECT session_id FROM upload_sessions") == [(fresh["session_id"],)]


def test_webhooks_delivered_and_logged_from_the_command_line(cli, engine, local_zone, server):
    receiver = Receiver(failures=0)
    # The session's `serve` delivers due events too: paused, the command line is the only one.
    try:
        with server.paused():
            assert cli("tenant", "acme", "--webhook", receiver.url)[0] == 0
            job_id = register_upload(engine, local_zone, "acme", "c.csv", CLEAN)
            with engine.begin() as conn:  # any writer's status change makes an event
                conn.execute(
                    sa.text(
                        "UPDATE import_jobs SET status = 'FAILED', error = 'x' WHERE job_id = :j"
                    ),
                    {"j": job_id},
                )
            code, out, _ = cli("webhooks", "deliver", "--once")
    finally:
        receiver.close()
    assert code == 0 and "1 delivery attempt(s)" in out
    assert [json.loads(body)["type"] for _, body, _ in receiver.received] == ["job.failed"]
    code, out, _ = cli("webhooks", "log", "--tenant", "acme")
    assert "job.failed" in out and "delivered" in out and job_id in out
    assert cli("webhooks", "log", "--tenant", "globex")[1] == ""


def test_a_form_upload_is_the_same_upload(server, engine, instance, api_resources):
    acme = Client(server.url, new_key(engine, "acme"))
    form = acme.post("/v1/uploads", files={"file": ("C:\\fakepath\\crm.csv", FLAWED, "text/csv")})
    assert form.status_code == 201, form.text
    assert form.json()["file"].startswith("uploads/acme/crm.") and form.json()["created"]
    # The same bytes sent raw are the same job; a form may name the file itself.
    raw = acme.upload("crm.csv", FLAWED)
    assert raw.status_code == 200 and raw.json()["job_id"] == form.json()["job_id"]
    named = acme.post(
        "/v1/uploads", params={"file_name": "other.csv"}, files={"file": ("x.bin", CLEAN)}
    )
    assert named.status_code == 201 and "/other." in named.json()["file"]
    for files, data, status, words in [
        ({"document": ("a.csv", CLEAN)}, None, 422, "no 'file' part"),
        ({"file": ("a.exe", CLEAN)}, None, 422, "unsupported extension"),
        ({"file": ("big.csv", b"x" * (SERVICE_MAX_UPLOAD + 1))}, None, 413, "limit"),
    ]:
        answer = acme.post("/v1/uploads", files=files, data=data)
        assert answer.status_code == status and words in answer.json()["detail"], answer.text
    broken = acme.post(
        "/v1/uploads",
        content=b'--xyz\r\nContent-Disposition: form-data; name="file"\r\n\r\nno end',
        headers={"content-type": "multipart/form-data"},
    )
    assert broken.status_code == 422
    assert scalar(engine, "SELECT count(*) FROM import_jobs") == 2
    run_sensors(instance, api_resources)
    assert acme.get(form.json()["url"]).json()["status"] == "NEEDS_REVIEW"
