"""Webhook delivery: events the database recorded, sent signed, retried with backoff."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.engine import Engine

from ingestion_pipeline.db.service import claim_due_deliveries, record_attempt
from ingestion_pipeline.service.signing import InvalidSignatureError, sign_webhook
from ingestion_pipeline.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """Attempt n (1-based) failed: try again after base * 2**(n-1) s, at most `cap` s, until
    `max_attempts` attempts were made."""

    base_seconds: float = 2.0
    cap_seconds: float = 3600.0
    max_attempts: int = 12
    timeout_seconds: float = 10.0

    def retry_in(self, attempts_made: int) -> float | None:
        if attempts_made >= self.max_attempts:
            return None
        return min(self.base_seconds * 2 ** (attempts_made - 1), self.cap_seconds)


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        base_seconds=settings.webhook_retry_seconds, max_attempts=settings.webhook_max_attempts
    )


def deliver_until_stopped(engine: Engine, policy: RetryPolicy, *, once: bool = False) -> int:
    """Send due deliveries until interrupted (or, `once`, until none is due); how many were
    attempted. For deployments that record events but run no `serve` process."""
    attempted = 0
    while True:
        sent = deliver_due(engine, policy)
        attempted += sent
        if once and not sent:
            return attempted
        if not sent:
            time.sleep(0.5)


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"content-type": "application/json", "user-agent": "ingestion-pipeline", **headers},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status


def envelope(item: dict[str, Any]) -> dict[str, Any]:
    """The body of a claimed delivery, the Standard Webhooks envelope: the event type, when
    it happened (the status change's transaction, ISO 8601 in UTC; the same on every retry)
    and the event's data — what the trigger recorded, the job's dataset and the event id."""
    data = {k: v for k, v in item["payload"].items() if k != "type"}
    data.update(dataset=item["dataset"], event_id=str(item["event_id"]))
    occurred: datetime = item["created_at"]
    return {
        "type": item["event"],
        "timestamp": occurred.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "data": data,
    }


def deliver_due(engine: Engine, policy: RetryPolicy, limit: int = 20) -> int:
    """Send the deliveries that are due; how many were attempted."""
    with engine.begin() as conn:
        due = claim_due_deliveries(conn, limit, lease_seconds=int(policy.timeout_seconds) + 30)
    for item in due:
        body = json.dumps(envelope(item), sort_keys=True).encode()
        status, error = None, None
        try:
            headers = sign_webhook(item["secret"], str(item["event_id"]), int(time.time()), body)
            status = _post(item["url"], body, headers, policy.timeout_seconds)
        except InvalidSignatureError as exc:  # a secret not whsec_<base64>: set the URL again
            error = str(exc)
        except urllib.error.HTTPError as exc:
            status, error = exc.code, f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        delivered = status is not None and 200 <= status < 300
        attempts = item["attempts"] + 1
        retry_in = None if delivered else policy.retry_in(attempts)
        with engine.begin() as conn:
            record_attempt(
                conn,
                item["delivery_id"],
                delivered=delivered,
                status=status,
                error=error,
                retry_in=retry_in,
            )
        if not delivered:
            then = f"retry in {retry_in:g} s" if retry_in is not None else "given up"
            log.warning(
                f"webhook {item['event']} for {item['job_id']} to {item['url']}: "
                f"{error} (attempt {attempts}, {then})"
            )
    return len(due)
