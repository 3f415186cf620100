"""Operating the service: liveness (/healthz), readiness (/readyz) and Prometheus metrics
(/metrics). Unauthenticated, outside the tenant API (and its OpenAPI description and import
limits), for probes and scrapers; they tell nothing about any tenant."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingestion_pipeline.db.metrics import database_revisions, migration_heads
from ingestion_pipeline.metrics import DatabaseCollector, exposition, observe_request

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

# Where /readyz writes (and deletes) its probe object: outside uploads/, so no sensor sees it.
PROBE_PREFIX = "_probe/"
# A check that takes longer fails (a database or bucket that does not answer at all).
CHECK_TIMEOUT_SECONDS = 5.0


def _service(request: Request) -> Any:
    # The Service of create_app's lifespan (read here, not imported: app.py imports this).
    return getattr(request.app.state, "service", None)


def _first_line(exc: BaseException) -> str:
    # The log says why in one line (a probe that fails every few seconds writes no tracebacks);
    # the answer, unauthenticated, names the error's class only.
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers; nothing else is checked (no database access)."""
    return {"status": "ok"}


def _check_database(service: Any) -> dict[str, dict[str, Any]]:
    """database: a connection and a statement; migrations: its revision is the head."""
    heads = migration_heads()
    try:
        with service.engine.connect() as conn:
            revisions = database_revisions(conn)
    except Exception as exc:
        log.warning("readyz: the database is unreachable: %s", _first_line(exc))
        failed = {"ok": False, "error": f"unreachable ({type(exc).__name__})"}
        return {
            "database": failed,
            "migrations": {"ok": False, "error": "not checked: the database is unreachable"},
        }
    migrations: dict[str, Any] = {"ok": revisions == heads, "head": sorted(heads)}
    migrations["database"] = sorted(revisions)
    if not migrations["ok"]:
        migrations["error"] = "the database is not at the newest migration"
    return {"database": {"ok": True}, "migrations": migrations}


def _check_landing_zone(service: Any) -> dict[str, dict[str, Any]]:
    """landing_zone: a small object written under PROBE_PREFIX and deleted again."""
    key = f"{PROBE_PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    try:
        service.zone.write(key, b"readyz\n")
        service.zone.delete(key)
    except Exception as exc:
        log.warning("readyz: the landing zone is not writable: %s", _first_line(exc))
        return {"landing_zone": {"ok": False, "error": f"not writable ({type(exc).__name__})"}}
    return {"landing_zone": {"ok": True}}


async def _timed(name: str, check: Any, service: Any) -> dict[str, dict[str, Any]]:
    try:
        return await asyncio.wait_for(
            run_in_threadpool(check, service), timeout=CHECK_TIMEOUT_SECONDS
        )
    except asyncio.TimeoutError:
        return {name: {"ok": False, "error": f"no answer in {CHECK_TIMEOUT_SECONDS:g} s"}}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """200 when the database answers, is migrated to the head and the landing zone takes a
    write; 503 otherwise, naming each failed check."""
    service = _service(request)
    if service is None:
        checks: dict[str, dict[str, Any]] = {"service": {"ok": False, "error": "starting"}}
    else:
        checks = {}
        database, landing = await asyncio.gather(
            _timed("database", _check_database, service),
            _timed("landing_zone", _check_landing_zone, service),
        )
        checks.update(database)
        checks.update(landing)
    failed = [name for name, check in checks.items() if not check["ok"]]
    body = {"status": "unavailable" if failed else "ok", "failed": failed, "checks": checks}
    return JSONResponse(body, status_code=503 if failed else 200)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus text exposition: this process's metrics, then the database's gauges read
    now (ingestion_pipeline.metrics)."""
    service = _service(request)
    collectors = [DatabaseCollector(service.engine)] if service is not None else []
    body, content_type = exposition(*collectors)
    return Response(body, media_type=content_type)


class RequestMetricsMiddleware:
    """Times every HTTP request by method and route template, and counts upload requests by
    status (ingestion_pipeline.metrics.observe_request). Plain ASGI: bodies stream through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None)
            observe_request(scope["method"], route, status, time.perf_counter() - started)
