"""Signed links: a review link opens one job's review page; an import link opens the import
flow for one tenant (optionally one dataset, with a user label recorded on its jobs), in a
page or in an iframe of the origins the tenant allows. The API and the CLI make them here."""

from __future__ import annotations

import secrets
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.engine import Engine

from ingestion_pipeline.datasets import LOAD_ORDER
from ingestion_pipeline.db.service import embed_origins, service_secret
from ingestion_pipeline.service.signing import make_token

MAX_LINK_HOURS = 24 * 30


def review_link_token(secret: bytes, tenant_id: str, job_id: str, hours: float) -> str:
    """A link's token: opens one job's review page for `hours`, no key needed."""
    return make_token(secret, {"tenant": tenant_id, "job": job_id}, int(hours * 3600))


def import_link(
    engine: Engine,
    base_url: str,
    tenant_id: str,
    *,
    dataset: str | None = None,
    hours: float = 24,
    user: str | None = None,
) -> dict[str, Any]:
    """A signed, expiring URL of the import flow for `tenant_id`, and what it carries."""
    if dataset is not None and dataset not in LOAD_ORDER:
        raise ValueError(f"unknown dataset {dataset!r}; datasets: {', '.join(LOAD_ORDER)}")
    if not 0 < hours <= MAX_LINK_HOURS:
        raise ValueError(f"hours must be more than 0 and at most {MAX_LINK_HOURS}")
    with engine.begin() as conn:
        secret = service_secret(conn, "session")
        origins = embed_origins(conn, tenant_id)
    link_id = secrets.token_hex(8)
    claims: dict[str, Any] = {"tenant": tenant_id, "link": link_id}
    if dataset is not None:
        claims["dataset"] = dataset
    if user:
        claims["user"] = user
    ttl = int(hours * 3600)
    token = make_token(secret, claims, ttl)
    return {
        "url": f"{base_url.rstrip('/')}/import?{urlencode({'link': token})}",
        "token": token,
        "link_id": link_id,
        "dataset": dataset,
        "user": user or None,
        "expires_at": datetime.fromtimestamp(time.time() + ttl, timezone.utc).isoformat(),
        "embed_origins": origins,
    }
