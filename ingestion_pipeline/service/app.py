"""The service, one ASGI app: `ingestion-pipeline serve`. The HTTP API (`/v1`), the pages
(import, job, review) and the operations endpoints, each area a router of `routes/` over the
shared dependencies of `deps.py`; this module only assembles them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from ingestion_pipeline.constants import SUPPORTED_EXTENSIONS
from ingestion_pipeline.db.service import service_secret
from ingestion_pipeline.service.deps import Service
from ingestion_pipeline.service.pages import STATIC
from ingestion_pipeline.service.routes import (
    decisions,
    jobs,
    links,
    operations,
    pages,
    review,
    uploads,
    webhooks,
)
from ingestion_pipeline.service.uploads import ServiceError, sweep_expired_sessions
from ingestion_pipeline.service.webhooks import deliver_due, retry_policy
from ingestion_pipeline.settings import Settings, load_settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, deliver_webhooks: bool = True) -> FastAPI:
    """The service for `settings` (default: the environment)."""
    from ingestion_pipeline.resources import database_engine, landing_zone

    settings = settings or load_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = database_engine(settings)
        with engine.begin() as conn:
            secret = service_secret(conn, "session")
        app.state.service = Service(settings, engine, landing_zone(settings), secret)
        task = None
        if deliver_webhooks:
            task = asyncio.create_task(_deliver_forever(app.state.service))
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(
        title="ingestion_pipeline",
        version="1",
        description=(
            "Hand files to the import pipeline, follow their jobs, review their rows. Every "
            "endpoint is scoped to the tenant of the API key (`Authorization: Bearer <key>`); "
            "an import link's token as the bearer reaches the jobs uploaded through it."
        ),
        lifespan=lifespan,
    )

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        if first.get("type") == "json_invalid":
            return JSONResponse({"detail": "the body is not valid JSON"}, 422)
        if first.get("type") == "string_pattern_mismatch" and where.endswith("file_name"):
            shown = ", ".join(SUPPORTED_EXTENSIONS)
            message = f"{where}: a plain file name ending in one of {shown} (optionally .gz)"
            return JSONResponse({"detail": message}, 422)
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid request')}"}, 422)

    for area in (uploads, jobs, decisions, webhooks, links, pages, review):
        app.include_router(area.router)
    app.include_router(operations.router)  # /healthz, /readyz, /metrics: no key, no limit
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(operations.RequestMetricsMiddleware)
    _describe_links(app)
    return app


# OpenAPI links: what an answer's ids lead to (clients and fuzzers follow them).
_JOB_LINKS = {
    "GetJob": ("get", "/v1/jobs/{job_id}"),
    "GetIssues": ("get", "/v1/jobs/{job_id}/issues"),
    "PostDecisions": ("post", "/v1/jobs/{job_id}/decisions"),
    "PostMapping": ("post", "/v1/jobs/{job_id}/mapping"),
    "Reprocess": ("post", "/v1/jobs/{job_id}/reprocess"),
}
_SESSION_LINKS = {
    "GetSession": ("get", "/v1/upload-sessions/{session_id}"),
    "PutPart": ("put", "/v1/upload-sessions/{session_id}/parts/{number}"),
    "Complete": ("post", "/v1/upload-sessions/{session_id}/complete"),
}


def _describe_links(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        paths = schema["paths"]

        def link(source: tuple[str, str, str], targets: dict, param: str) -> None:
            method, path, status = source
            answer = paths[path][method]["responses"][status]
            answer["links"] = {
                name: {
                    "operationId": paths[target][verb]["operationId"],
                    "parameters": {param: f"$response.body#/{param}"},
                }
                for name, (verb, target) in targets.items()
            }

        link(("post", "/v1/uploads", "201"), _JOB_LINKS, "job_id")
        link(("post", "/v1/upload-sessions/{session_id}/complete", "201"), _JOB_LINKS, "job_id")
        link(("post", "/v1/upload-sessions", "201"), _SESSION_LINKS, "session_id")
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


SWEEP_EVERY_SECONDS = 600


async def _deliver_forever(service: Service) -> None:
    """Send due webhooks; every ten minutes, throw away upload sessions that expired."""
    policy = retry_policy(service.settings)
    next_sweep = 0.0
    while True:
        try:
            sent = await run_in_threadpool(deliver_due, service.engine, policy)
            if time.monotonic() >= next_sweep:
                await run_in_threadpool(sweep_expired_sessions, service.engine, service.zone)
                next_sweep = time.monotonic() + SWEEP_EVERY_SECONDS
        except Exception:  # the loop outlives a database restart; the error is logged
            log.exception("webhook delivery or session sweep failed; trying again")
            sent = 0
        await asyncio.sleep(0.05 if sent else 0.5)


def app_from_environment() -> FastAPI:
    """The factory `ingestion-pipeline serve` hands to uvicorn."""
    return create_app()
