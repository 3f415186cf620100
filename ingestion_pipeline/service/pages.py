"""The review page: server-rendered HTML, forms that work without script or mouse."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from ingestion_pipeline.constants import JobStatus
from ingestion_pipeline.db.decisions import discard_kind, review_page
from ingestion_pipeline.db.import_jobs import issue_counts_by_kind
from ingestion_pipeline.db.service import authenticate, run_requested_since
from ingestion_pipeline.review_files import Decision
from ingestion_pipeline.service.signing import InvalidSignatureError, make_token, read_token

PAGE_SIZE = 50
SESSION_HOURS = 8
MAX_FORM_BYTES = 1024 * 1024
RUNNING = (JobStatus.PENDING, JobStatus.PROCESSING)

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=select_autoescape(["html"]),
)


def review_link_token(secret: bytes, tenant_id: str, job_id: str, hours: float) -> str:
    """A link's token: opens one job's review page for `hours`, no key needed."""
    return make_token(secret, {"tenant": tenant_id, "job": job_id}, int(hours * 3600))


def _csrf(secret: bytes, cookie: str) -> str:
    return hmac.new(secret, b"csrf:" + cookie.encode(), hashlib.sha256).hexdigest()


async def _form(request: Request) -> dict[str, str]:
    body = b""
    async for block in request.stream():
        body += block
        if len(body) > MAX_FORM_BYTES:
            from ingestion_pipeline.service.uploads import TooLargeError

            raise TooLargeError("the form is too large")
    try:
        pairs = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=5000)
    except (UnicodeDecodeError, ValueError):
        from ingestion_pipeline.service.uploads import InvalidRequestError

        raise InvalidRequestError("the form could not be read") from None
    return {k: v[-1] for k, v in pairs.items()}


def _render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_templates.get_template(name).render(**context), status_code=status)


def _login_redirect(path: str) -> RedirectResponse:
    return RedirectResponse("/login?" + urlencode({"next": path}), status_code=303)


def _safe_next(value: str | None) -> str:
    return value if value and value.startswith("/") and not value.startswith("//") else "/"


def add_pages(app: FastAPI) -> None:
    """Mount /login and /review/{job_id} on the app."""
    from ingestion_pipeline.service.app import (
        SESSION_COOKIE,
        Principal,
        Service,
        record_job_decisions,
        request_reprocess,
        session_principal,
        tenant_job,
    )
    from ingestion_pipeline.service.uploads import NotFoundError, ServiceError

    def service_of(request: Request) -> Service:
        return request.app.state.service

    def who(request: Request) -> Principal | None:
        cookie = request.cookies.get(SESSION_COOKIE)
        return session_principal(service_of(request), cookie) if cookie else None

    def set_session(response: RedirectResponse, request: Request, claims: dict[str, Any]) -> None:
        token = make_token(service_of(request).secret, claims, SESSION_HOURS * 3600)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=SESSION_HOURS * 3600,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    @app.get("/login", include_in_schema=False)
    def login_page(request: Request, next: str | None = None) -> HTMLResponse:
        return _render("login.html", next=_safe_next(next), error=None)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request):
        form = await _form(request)
        service = service_of(request)
        with service.engine.connect() as conn:
            found = authenticate(conn, form.get("key", "").strip())
        target = _safe_next(form.get("next"))
        if found is None:
            return _render("login.html", 401, next=target, error="That key is not valid.")
        response = RedirectResponse(target, status_code=303)
        set_session(response, request, {"tenant": found[0], "key": found[1]})
        return response

    @app.get("/review/{job_id}", include_in_schema=False)
    def review(
        request: Request,
        job_id: str,
        token: str | None = None,
        kind: Annotated[str | None, Query(max_length=64)] = None,
        after: Annotated[int, Query(ge=0, le=2**31)] = 0,
        saved: str | None = None,
    ):
        service = service_of(request)
        if token is not None:
            try:
                claims = read_token(service.secret, token)
            except InvalidSignatureError as exc:
                return _render("login.html", 401, next=f"/review/{job_id}", error=str(exc) + ".")
            if claims.get("job") != job_id or "key" in claims:
                return _render("login.html", 401, next=f"/review/{job_id}", error="Wrong link.")
            response = RedirectResponse(f"/review/{job_id}", status_code=303)
            set_session(response, request, {"tenant": claims["tenant"], "job": job_id})
            return response
        principal = who(request)
        if principal is None:
            return _login_redirect(f"/review/{job_id}")
        try:
            job = tenant_job(service, principal, job_id)
        except NotFoundError:
            return _render("missing.html", 404, job_id=job_id)
        with service.engine.connect() as conn:
            counts = issue_counts_by_kind(conn, job_id)
            dataset = job.declaration
            fields = dataset.field_names
            rows = review_page(
                conn, job_id, after=after, limit=PAGE_SIZE + 1, kind=kind or None, dataset=dataset
            )
            waiting = run_requested_since(conn, job_id, job.updated_at)
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        for row in rows:
            row["flagged"] = {p["field"] for p in row["problems"]}
            changes = row["pending_changes"] or {}
            row["values"] = {f: (changes[f] if f in changes else row[f]) or "" for f in fields}
        cookie = request.cookies.get(SESSION_COOKIE, "")
        return _render(
            "review.html",
            job=job,
            fields=fields,
            counts=counts,
            rows=rows,
            kind=kind or "",
            after=after,
            next_after=rows[-1]["row_number"] if more and rows else None,
            running=job.status in RUNNING,
            waiting=waiting,
            editable=job.status is JobStatus.NEEDS_REVIEW,
            saved=saved,
            csrf=_csrf(service.secret, cookie),
        )

    async def checked(request: Request, job_id: str):
        """The form, principal and job of a POST from the page, or the response to send."""
        principal = who(request)
        if principal is None:
            return None, None, None, _login_redirect(f"/review/{job_id}")
        form = await _form(request)
        cookie = request.cookies.get(SESSION_COOKIE, "")
        if not hmac.compare_digest(form.get("csrf", ""), _csrf(service_of(request).secret, cookie)):
            return None, None, None, _render("missing.html", 403, job_id=job_id)
        try:
            job = tenant_job(service_of(request), principal, job_id)
        except NotFoundError:
            return None, None, None, _render("missing.html", 404, job_id=job_id)
        return form, principal, job, None

    def back(job_id: str, form: dict[str, str], message: str) -> RedirectResponse:
        query = {"saved": message}
        if form.get("kind"):
            query["kind"] = form["kind"]
        if form.get("after", "0") not in ("", "0"):
            query["after"] = form["after"]
        return RedirectResponse(f"/review/{job_id}?{urlencode(query)}", status_code=303)

    @app.post("/review/{job_id}/decisions", include_in_schema=False)
    async def save(request: Request, job_id: str):
        form, _, job, refused = await checked(request, job_id)
        if refused is not None:
            return refused
        decisions = []
        fields = job.declaration.field_names
        for raw in form.get("rows", "").split(","):
            if not raw.isdigit():
                continue
            n = int(raw)
            if form.get(f"r{n}.discard"):
                if not form.get(f"o{n}.discard"):
                    decisions.append(Decision(n, "discard"))
                continue
            changes = {
                f: form.get(f"r{n}.{f}", "").strip() or None
                for f in fields
                if form.get(f"r{n}.{f}", "") != form.get(f"o{n}.{f}", "")
            }
            if changes or form.get(f"o{n}.discard"):
                values = {f: form.get(f"r{n}.{f}", "").strip() or None for f in fields}
                decisions.append(Decision(n, "fix", changes or values))
        try:
            count = (
                record_job_decisions(service_of(request), job, decisions, "page")
                if decisions
                else 0
            )
        except ServiceError as exc:
            return back(job_id, form, f"Not saved: {exc.message}")
        return back(job_id, form, f"{count} decision(s) saved")

    @app.post("/review/{job_id}/discard-kind", include_in_schema=False)
    async def discard_all(request: Request, job_id: str):
        form, _, job, refused = await checked(request, job_id)
        if refused is not None:
            return refused
        kind = form.get("discard_kind", "")
        if job.status is not JobStatus.NEEDS_REVIEW:
            return back(job_id, form, f"Not saved: job is {job.status.value}")
        with service_of(request).engine.begin() as conn:
            count = discard_kind(conn, job_id, kind, "page")
        return back(job_id, form, f"{count} row(s) with {kind} will be discarded")

    @app.post("/review/{job_id}/reprocess", include_in_schema=False)
    async def reprocess(request: Request, job_id: str):
        _, principal, job, refused = await checked(request, job_id)
        if refused is not None:
            return refused
        try:
            request_reprocess(service_of(request), principal, job, "page")
        except ServiceError as exc:
            return back(job_id, {}, f"Not started: {exc.message}")
        return RedirectResponse(f"/review/{job_id}?saved=Reprocessing+requested", 303)
