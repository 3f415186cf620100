"""Signatures: webhook payloads (the Standard Webhooks scheme) and the service's own tokens.

Plain Python, so that a receiver can verify our webhooks with this one module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

# A delivery older (or newer) than this is refused as a replay.
DEFAULT_TOLERANCE_SECONDS = 300


class InvalidSignatureError(ValueError):
    """A webhook or token whose signature, age or shape is wrong."""


def _mac(secret: str | bytes, message: bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, message, hashlib.sha256).digest()


def sign_webhook(secret: str, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one delivery: id (the same on every retry), time and signature of
    `id.timestamp.body`."""
    mac = _mac(secret, f"{event_id}.{timestamp}.".encode() + body)
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a delivery as a receiver should; the payload, or InvalidSignatureError."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        event_id = lower["webhook-id"]
        timestamp = int(lower["webhook-timestamp"])
        signatures = lower["webhook-signature"].split()
    except (KeyError, ValueError) as exc:
        raise InvalidSignatureError(f"missing or malformed webhook headers ({exc})") from None
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        raise InvalidSignatureError(
            f"timestamp {timestamp} is more than {tolerance} s away: a replay or a wrong clock"
        )
    expected = sign_webhook(secret, event_id, timestamp, body)["webhook-signature"]
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise InvalidSignatureError("signature does not match the body")
    return json.loads(body)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(secret: bytes, claims: Mapping[str, Any], ttl_seconds: int) -> str:
    """A signed, expiring token carrying `claims` (a session cookie, a review link)."""
    payload = _b64(json.dumps({**claims, "exp": int(time.time()) + ttl_seconds}).encode())
    return f"{payload}.{_b64(_mac(secret, payload.encode()))}"


def read_token(secret: bytes, token: str) -> dict[str, Any]:
    """The claims of a token made by make_token; InvalidSignatureError if forged or expired."""
    payload, _, mac = token.partition(".")
    try:
        good = hmac.compare_digest(_unb64(mac), _mac(secret, payload.encode()))
        claims = json.loads(_unb64(payload)) if good else None
    except (ValueError, UnicodeDecodeError):
        claims = None
    if not isinstance(claims, dict):
        raise InvalidSignatureError("the token is not one of ours")
    if claims.get("exp", 0) < time.time():
        raise InvalidSignatureError("the token has expired")
    return claims
