"""The tenant's webhook: where its job events go, and the log of their deliveries."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ingestion_pipeline.db.service import list_deliveries, set_webhook
from ingestion_pipeline.service.deps import AdminCaller, Caller, ServiceDep, iso
from ingestion_pipeline.service.schemas import ERRORS, DeliveryOut, WebhookIn, WebhookOut
from ingestion_pipeline.service.uploads import NotFoundError

router = APIRouter(tags=["webhooks"])


@router.put(
    "/v1/webhook",
    response_model=WebhookOut,
    responses=ERRORS,
    summary="Send the tenant's job events to a URL (null: stop)",
)
def put_webhook(service: ServiceDep, who: AdminCaller, body: WebhookIn) -> dict[str, Any]:
    """Events: job.completed, job.needs_review, job.needs_mapping, job.failed. The secret
    signs every delivery (headers webhook-id, webhook-timestamp, webhook-signature)."""
    with service.engine.begin() as conn:
        secret = set_webhook(conn, who.tenant_id, body.url)
    return {"url": body.url, "secret": secret}


@router.get(
    "/v1/webhook/deliveries",
    response_model=list[DeliveryOut],
    responses=ERRORS,
    summary="The delivery log, newest first",
)
def get_deliveries(
    service: ServiceDep,
    who: Caller,
    job_id: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    """A review link sees its job's deliveries only."""
    if who.link_id is not None:
        raise NotFoundError("no such resource for an import link")
    with service.engine.connect() as conn:
        rows = list_deliveries(conn, who.tenant_id, job_id=job_id, limit=limit)
    return [
        {
            **{k: r[k] for k in ("delivery_id", "event", "job_id", "url", "state")},
            **{k: r[k] for k in ("attempts", "last_status", "last_error")},
            "event_id": str(r["event_id"]),
            "created_at": iso(r["created_at"]),
            "delivered_at": iso(r["delivered_at"]),
        }
        for r in rows
        if who.job_id is None or r["job_id"] == who.job_id
    ]
