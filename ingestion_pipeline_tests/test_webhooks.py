"""Our webhooks against the Standard Webhooks reference library (`standardwebhooks`): what the
service sends to a real receiver verifies with it, and what it must refuse, it refuses."""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

import ingestion_pipeline.db.engine as db_engine
from ingestion_pipeline.landing import LocalLandingZone
from ingestion_pipeline.service.signing import (
    InvalidSignatureError,
    is_webhook_secret,
    new_webhook_secret,
    sign_webhook,
    verify_webhook,
    webhook_key,
)
from ingestion_pipeline_tests.helpers import Client, import_bytes, new_key
from ingestion_pipeline_tests.test_api import CLEAN, FLAWED, Receiver

SECRET_FORM = re.compile(r"whsec_[A-Za-z0-9+/]{43}=")  # base64 of 32 bytes


def test_sign_webhook_output_verifies_with_the_reference_library():
    secret = new_webhook_secret()
    assert SECRET_FORM.fullmatch(secret) and len(webhook_key(secret)) == 32
    assert webhook_key(secret) == base64.b64decode(secret.removeprefix("whsec_"))
    body = json.dumps({"type": "job.completed", "timestamp": "2025-01-01T00:00:00.000000Z",
                       "data": {"job_id": "j", "contacts_created": 2}}).encode()  # fmt: skip
    now = int(time.time())
    headers = sign_webhook(secret, "b45c3c56-5b79-46d8-827b-bcda05368e08", now, body)
    assert Webhook(secret).verify(body, headers) == json.loads(body)
    assert verify_webhook(secret, headers, body) == json.loads(body)
    # The library's own signature is ours, byte for byte.
    at = datetime.fromtimestamp(now, tz=timezone.utc)
    ours = headers["webhook-signature"]
    assert Webhook(secret).sign(headers["webhook-id"], at, body.decode()) == ours

    # What the library refuses: another body, another secret, a stale (correctly signed) time.
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(secret).verify(body.replace(b'"contacts_created": 2', b'"x": 9'), headers)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(new_webhook_secret()).verify(body, headers)
    stale = sign_webhook(secret, headers["webhook-id"], now - 301, body)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(body, stale)
    # ... and our receiver helper with it.
    with pytest.raises(InvalidSignatureError, match="signature"):
        verify_webhook(secret, headers, body.replace(b'"contacts_created": 2', b'"x": 9'))
    with pytest.raises(InvalidSignatureError, match="signature"):
        verify_webhook(new_webhook_secret(), headers, body)
    with pytest.raises(InvalidSignatureError, match="replay"):
        verify_webhook(secret, stale, body)


def test_secrets_of_the_old_generator_only_some_of_which_decode_as_the_library_does():
    # The old generator: "whsec_" + secrets.token_urlsafe(24), URL-safe base64 of 24 bytes.
    plain = "whsec_c3G9ho5xpg4OxpXbU0jbLTweWNZFouP9"  # no - or _: the same 24 bytes either way
    assert is_webhook_secret(plain) and len(webhook_key(plain)) == 24
    body, now = b'{"type": "job.failed"}', int(time.time())
    assert Webhook(plain).verify(body, sign_webhook(plain, "e1", now, body))
    # With - or _ the library skips those characters: another key than the 24 bytes, so the
    # migration rotates such a secret and signing refuses one.
    urlsafe = "whsec_c3G9ho5xpg4OxpXb-0jbLTweWNZFou_9"
    assert not is_webhook_secret(urlsafe)
    with pytest.raises(InvalidSignatureError, match="base64"):
        sign_webhook(urlsafe, "e1", now, body)
    raw = base64.urlsafe_b64decode(urlsafe.removeprefix("whsec_"))
    meant = "whsec_" + base64.b64encode(raw).decode()
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(urlsafe).verify(body, sign_webhook(meant, "e1", now, body))
    for bad in (None, "", "whsec_", "hunter2", "whsec_other", "whsec_" + "A" * 16):
        assert not is_webhook_secret(bad)


def _wait_until_delivered(receiver: Receiver, events: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = {h["webhook-id"] for h, _, status in receiver.received if status == 204}
        if len(done) >= events:
            return
        time.sleep(0.2)
    raise AssertionError(f"not delivered in {timeout} s: {receiver.received}")


def test_real_deliveries_verify_with_the_standard_webhooks_reference_library(
    server, engine, instance, api_resources, service_landing
):
    receiver = Receiver(failures=1)  # the first attempt fails: its retry must verify too
    try:
        acme = Client(server.url, new_key(engine, "acme"))
        secret = acme.put("/v1/webhook", json={"url": receiver.url}).json()["secret"]
        assert SECRET_FORM.fullmatch(secret)
        # Kept across a change of URL.
        assert acme.put("/v1/webhook", json={"url": receiver.url}).json()["secret"] == secret
        zone = LocalLandingZone(service_landing)
        _, done = import_bytes(engine, instance, api_resources, zone, "acme", "c.csv", CLEAN)
        _, flawed = import_bytes(engine, instance, api_resources, zone, "acme", "f.csv", FLAWED)
        assert (done.status, flawed.status) == ("COMPLETED", "NEEDS_REVIEW")
        _wait_until_delivered(receiver, events=2)
    finally:
        receiver.close()

    assert [status for _, _, status in receiver.received] == [500, 204, 204]
    webhook = Webhook(secret)
    by_id: dict[str, list[bytes]] = {}
    for headers, body, _ in receiver.received:
        event = webhook.verify(body, headers)  # every delivery, the failed attempt's too
        assert verify_webhook(secret, headers, body) == event
        by_id.setdefault(headers["webhook-id"], []).append(body)
        assert set(event) == {"type", "timestamp", "data"}
        at = datetime.strptime(event["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
        age = datetime.now(timezone.utc) - at.replace(tzinfo=timezone.utc)
        assert timedelta(0) <= age < timedelta(minutes=2)
        assert event["data"]["event_id"] == headers["webhook-id"]
    # One id per event on every attempt, and the retry sends the same body.
    assert len(by_id) == 2 and all(len(set(bodies)) == 1 for bodies in by_id.values())

    events = {e["type"]: e["data"] for e in (json.loads(b[0]) for b in by_id.values())}
    assert set(events) == {"job.completed", "job.needs_review"}
    completed = events["job.completed"]
    assert {k: completed[k] for k in ("job_id", "tenant", "dataset", "status", "file")} == {
        "job_id": done.job_id,
        "tenant": "acme",
        "dataset": "contacts",
        "status": "COMPLETED",
        "file": "c.csv",
    }
    assert (completed["total_rows"], completed["processed_rows"]) == (2, 2)
    assert (completed["issue_count"], completed["contacts_created"], completed["error"]) == (
        0,
        2,
        None,
    )
    review = events["job.needs_review"]
    assert (review["job_id"], review["status"], review["issue_count"]) == (
        flawed.job_id,
        "NEEDS_REVIEW",
        flawed.issue_count,
    )

    # The reference library refuses a tampered body, another secret and a stale delivery.
    headers, body, _ = receiver.received[-1]
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        webhook.verify(body.replace(b'"tenant": "acme"', b'"tenant": "globex"'), headers)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(new_webhook_secret()).verify(body, headers)
    replayed = {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) - 301)}
    with pytest.raises(WebhookVerificationError, match="too old"):
        webhook.verify(body, replayed)
    log = acme.get("/v1/webhook/deliveries").json()
    assert sorted((d["event"], d["state"]) for d in log) == [
        ("job.completed", "delivered"),
        ("job.needs_review", "delivered"),
    ]


def _alembic(conn: sa.Connection, target: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(Path(db_engine.__file__).with_name("migrations")))
    config.attributes["connection"] = conn
    command.upgrade(config, target)


def test_migration_0006_rotates_the_secrets_not_of_the_standard_form(database_url):
    # A database of its own, migrated to 0005 with secrets the old generator made.
    server = make_url(database_url)
    name = f"ingestion_mig_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine = sa.create_engine(server.set(database=name))
    plain = "whsec_c3G9ho5xpg4OxpXbU0jbLTweWNZFouP9"
    kept_new = new_webhook_secret()
    old = {
        "plain": plain,
        "urlsafe": "whsec_c3G9ho5xpg4OxpXb-0jbLTweWNZFou_9",
        "random": "whsec_" + secrets.token_urlsafe(24)[:-1] + "_",
        "bare": "hunter2",
        "short": "whsec_" + base64.b64encode(b"x" * 16).decode(),
        "new": kept_new,
        "none": None,
    }
    try:
        with engine.begin() as conn:
            _alembic(conn, "0005")
            for tenant, secret in old.items():
                conn.execute(
                    sa.text(
                        "INSERT INTO tenant_settings (tenant_id, webhook_url, webhook_secret) "
                        "VALUES (:t, 'http://127.0.0.1:9/hook', :s)"
                    ),
                    {"t": tenant, "s": secret},
                )
        with engine.begin() as conn:
            _alembic(conn, "head")
            stored = conn.execute(sa.text("SELECT tenant_id, webhook_secret FROM tenant_settings"))
            after = dict(stored.all())
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    assert after["plain"] == plain and after["new"] == kept_new and after["none"] is None
    for tenant in ("urlsafe", "random", "bare", "short"):
        assert after[tenant] != old[tenant] and SECRET_FORM.fullmatch(after[tenant])
        body = b'{"type": "job.completed"}'
        headers = sign_webhook(after[tenant], "e1", int(time.time()), body)
        assert Webhook(after[tenant]).verify(body, headers) == json.loads(body)
    assert len({after[t] for t in ("urlsafe", "random", "bare", "short")}) == 4
