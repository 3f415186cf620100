"""What the pages share: templates, who is looking (a signed-in session cookie, or an import
link's token carried in the URL and the forms, since a third-party frame gets no cookie of
ours), form reading with its CSRF check, and the headers that say who may frame a page."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from ingestion_pipeline.db.import_jobs import ImportJob
from ingestion_pipeline.db.service import embed_origins
from ingestion_pipeline.reading.mapping import Method
from ingestion_pipeline.service.deps import (
    SESSION_COOKIE,
    Principal,
    Service,
    get_service,
    tenant_job,
    token_principal,
)
from ingestion_pipeline.service.signing import make_token
from ingestion_pipeline.service.uploads import (
    InvalidRequestError,
    NotFoundError,
    TooLargeError,
    display_name,
)

SESSION_HOURS = 8
MAX_FORM_BYTES = 1024 * 1024
STATIC = Path(__file__).with_name("static")

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=select_autoescape(["html"]),
)
_templates.filters["shown"] = display_name
# How a column was decided (mapping.Method), in a person's words.
_HOW = {
    Method.REMEMBERED: "remembered from your earlier files",
    Method.PERSON: "chosen by a person",
    Method.ALIAS: "a known name of the field",
    Method.NAME: "words in the header",
    Method.VALUES: "by the values in it",
    Method.SPLIT: "split from the full name",
}


def _how(method: str) -> str:
    if method.startswith(Method.PROFILE):
        return f"the {method.partition(':')[2].strip() or 'tool'} export's layout"
    return _HOW.get(method, method)


_templates.filters["how"] = _how


def csrf_token(secret: bytes, cookie: str) -> str:
    return hmac.new(secret, b"csrf:" + cookie.encode(), hashlib.sha256).hexdigest()


def viewer(request: Request, link: str | None = None) -> Principal | None:
    """Who looks at a page: the import link's token when one is given (a link that is forged
    or expired is no one), else the signed-in session cookie."""
    service = get_service(request)
    if link:
        found = token_principal(service, link)
        return found if found is not None and found.link_id is not None else None
    cookie = request.cookies.get(SESSION_COOKIE)
    return token_principal(service, cookie) if cookie else None


class Page:
    """A page for one viewer: its links keep the viewer's import link, its forms carry the
    link (or the session's CSRF token), and its headers allow framing by the tenant's embed
    origins only."""

    def __init__(self, request: Request, who: Principal | None) -> None:
        self.request = request
        self.who = who
        self.service: Service = get_service(request)
        self.origins: list[str] = []
        if who is not None and who.link_id is not None:
            with self.service.engine.connect() as conn:
                self.origins = embed_origins(conn, who.tenant_id)

    def url(self, path: str, **query: Any) -> str:
        """`path` with `query` (None values left out) and the viewer's import link."""
        params = {k: v for k, v in query.items() if v not in (None, "")}
        if self.who is not None and self.who.token:
            params["link"] = self.who.token
        return f"{path}?{urlencode(params)}" if params else path

    def auth_fields(self) -> dict[str, str]:
        """The hidden fields a form of this page posts to prove who sent it."""
        if self.who is not None and self.who.token:
            return {"link": self.who.token}
        cookie = self.request.cookies.get(SESSION_COOKIE, "")
        return {"csrf": csrf_token(self.service.secret, cookie)}

    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        events = {"origins": self.origins, "user": self.who.user if self.who else None}
        html = _templates.get_template(name).render(
            url=self.url,
            auth_fields=self.auth_fields(),
            viewer=self.who,
            events_json=json.dumps(events),
            **context,
        )
        return self.headers(HTMLResponse(html, status_code=status))

    def redirect(self, path: str, **query: Any) -> RedirectResponse:
        return self.headers(RedirectResponse(self.url(path, **query), status_code=303))

    def headers(self, response: Response) -> Any:
        ancestors = " ".join(["'self'", *self.origins])
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors {ancestors}"
        )
        # Links carry tokens: no page tells another site its address.
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    def sign_in(self, response: RedirectResponse, claims: dict[str, Any]) -> None:
        token = make_token(self.service.secret, claims, SESSION_HOURS * 3600)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=SESSION_HOURS * 3600,
            httponly=True,
            samesite="strict",
            secure=self.request.url.scheme == "https",
        )


BAD_LINK = "This import link is not valid: it has expired, or it is not one of ours."


def refused(request: Request, link: str | None, path: str) -> Response:
    """A visitor no one signed in: a bad link says so; otherwise, the sign-in page."""
    if link:
        return Page(request, None).render("login.html", 401, next=path, error=BAD_LINK)
    return login_redirect(request, path)


def viewed_job(
    request: Request, who: Principal | None, job_id: str, link: str | None, path: str
) -> tuple[Page, ImportJob | Response]:
    """The page and the job its viewer asks for; or, in the job's place, the response to send:
    no viewer (sign in, or a bad link), or a job the viewer does not reach (not found)."""
    page = Page(request, who)
    if who is None:
        return page, refused(request, link, path)
    try:
        return page, tenant_job(page.service, who, job_id)
    except NotFoundError:
        return page, page.render("missing.html", 404, job_id=job_id)


def login_redirect(request: Request, path: str) -> Response:
    return Page(request, None).headers(
        RedirectResponse("/login?" + urlencode({"next": path}), status_code=303)
    )


async def read_form(request: Request) -> dict[str, str]:
    """An url-encoded form, at most MAX_FORM_BYTES; the last value of each name."""
    body = b""
    async for block in request.stream():
        body += block
        if len(body) > MAX_FORM_BYTES:
            raise TooLargeError("the form is too large")
    try:
        pairs = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=5000)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequestError("the form could not be read") from None
    return {k: v[-1] for k, v in pairs.items()}


async def posted(request: Request) -> tuple[dict[str, str], Principal | None]:
    """A form posted from one of our pages and who posted it; None for a post that does not
    prove it came from our page (no link token, or a session without its CSRF token)."""
    form = await read_form(request)
    link = form.get("link")
    if link:
        return form, viewer(request, link)
    who = viewer(request)
    cookie = request.cookies.get(SESSION_COOKIE, "")
    expected = csrf_token(get_service(request).secret, cookie)
    if who is None or not hmac.compare_digest(form.get("csrf", ""), expected):
        return form, None
    return form, who


def safe_next(value: str | None) -> str:
    return value if value and value.startswith("/") and not value.startswith("//") else "/import"
