"""Import links: a signed URL that opens the import flow for the tenant, to hand to a person
or to embed in an iframe of the tenant's application."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ingestion_pipeline.service.deps import AdminCaller, ServiceDep
from ingestion_pipeline.service.links import import_link
from ingestion_pipeline.service.schemas import ERRORS, ImportLinkIn, ImportLinkOut

router = APIRouter(tags=["import links"])


@router.post(
    "/v1/import-links",
    status_code=201,
    response_model=ImportLinkOut,
    responses=ERRORS,
    summary="A signed, expiring link that opens the import flow (for a page or an iframe)",
)
def post_import_link(
    request: Request, service: ServiceDep, who: AdminCaller, body: ImportLinkIn
) -> dict[str, Any]:
    """The link reaches the jobs uploaded through it, nothing else of the tenant's. With
    `dataset`, it takes files of that dataset only; `user` is recorded on its jobs
    (`uploaded_by`). Its pages may be framed by the tenant's embed origins only, and send
    their events (window.postMessage) to those origins."""
    return import_link(
        service.engine,
        str(request.base_url),
        who.tenant_id,
        dataset=body.dataset.value if body.dataset else None,
        hours=body.hours,
        user=body.user,
    )
