"""Signatures: webhook payloads (the Standard Webhooks scheme) and the service's own tokens.

Plain Python, so that a receiver can verify our webhooks with this one module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
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


# A webhook secret is "whsec_" + the base64 (standard alphabet) of the HMAC key, whose bytes
# the spec wants between 24 and 64 long.
WEBHOOK_SECRET_PREFIX = "whsec_"
WEBHOOK_KEY_BYTES = 32


def new_webhook_secret() -> str:
    """A fresh secret of the spec's form: whsec_ + base64 of 32 random bytes."""
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(WEBHOOK_KEY_BYTES)).decode()


def webhook_key(secret: str) -> bytes:
    """The HMAC key a secret stands for: its base64 after the whsec_ prefix, decoded as the
    reference library (`standardwebhooks`) decodes it, padding optional. Characters outside
    the base64 alphabet, which the library would silently skip, make InvalidSignatureError
    here instead of another key."""
    text = secret.removeprefix(WEBHOOK_SECRET_PREFIX)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError:  # binascii.Error too
        key = b""
    if not key:
        raise InvalidSignatureError("a webhook secret is whsec_ followed by base64")
    return key


def is_webhook_secret(secret: str | None) -> bool:
    """Whether `secret` is one we may sign with: whsec_ + base64 of 24 to 64 bytes."""
    if not secret or not secret.startswith(WEBHOOK_SECRET_PREFIX):
        return False
    try:
        return 24 <= len(webhook_key(secret)) <= 64
    except InvalidSignatureError:
        return False


def sign_webhook(secret: str, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one delivery: id (the same on every retry), time and signature of
    `id.timestamp.body` with the secret's key (the Standard Webhooks scheme)."""
    mac = _mac(webhook_key(secret), f"{event_id}.{timestamp}.".encode() + body)
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
    """Check a delivery as a receiver should, as `standardwebhooks.Webhook(secret).verify`
    does: the payload, or InvalidSignatureError."""
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
    expected = _mac(webhook_key(secret), f"{event_id}.{timestamp}.".encode() + body)
    if not any(hmac.compare_digest(expected, _v1_mac(s)) for s in signatures):
        raise InvalidSignatureError("signature does not match the body")
    return json.loads(body)


def _v1_mac(signature: str) -> bytes:
    """The MAC of a `v1,<base64>` signature; b"" for another version or a malformed one."""
    version, _, mac = signature.partition(",")
    try:
        return base64.b64decode(mac, validate=True) if version == "v1" else b""
    except ValueError:  # binascii.Error too
        return b""


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
