"""The review page: a job's rows in error, filtered by kind and field, fixed or discarded in
the browser (one by one, by kind, or by a find and replace over all of them), downloaded as the
review file, then reprocessed. Server-rendered forms that work without script or mouse."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from ingestion_pipeline.constants import RUNNING, JobStatus
from ingestion_pipeline.db.decisions import discard_kind, review_page, row_counts_by_field
from ingestion_pipeline.db.import_jobs import ImportJob, issue_counts_by_kind
from ingestion_pipeline.db.service import job_of_tenant, run_requested_since, snapshot
from ingestion_pipeline.review_files import Decision
from ingestion_pipeline.service.deps import (
    record_job_decisions,
    replace_in_job,
    request_reprocess,
    review_csv_response,
)
from ingestion_pipeline.service.pages import Page, posted, viewed_job, viewer
from ingestion_pipeline.service.schemas import MAX_REPLACE_TEXT
from ingestion_pipeline.service.signing import InvalidSignatureError, read_token
from ingestion_pipeline.service.uploads import ServiceError

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
REPLACE_SOURCE = "page:replace"
FieldName = Annotated[str | None, Query(max_length=64)]
ReplaceText = Annotated[str | None, Query(max_length=MAX_REPLACE_TEXT)]


@router.get("/review/{job_id}")
def review(
    request: Request,
    job_id: str,
    token: str | None = None,
    link: str | None = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    field: FieldName = None,
    after: Annotated[int, Query(ge=0, le=2**31)] = 0,
    saved: str | None = None,
    in_field: FieldName = None,
    find: ReplaceText = None,
    replace_with: ReplaceText = None,
    whole: bool = False,
) -> Response:
    if token is not None:
        return _open_review_link(request, job_id, token)
    page, job = viewed_job(request, viewer(request, link), job_id, link, f"/review/{job_id}")
    if not isinstance(job, ImportJob):
        return job
    with snapshot(page.service.engine) as conn:
        job = job_of_tenant(conn, job.tenant_id, job_id) or job
        counts = issue_counts_by_kind(conn, job_id)
        by_field = row_counts_by_field(conn, job_id)
        dataset = job.declaration
        fields = dataset.field_names
        rows = review_page(
            conn,
            job_id,
            after=after,
            limit=PAGE_SIZE + 1,
            kind=kind or None,
            field=field or None,
            dataset=dataset,
        )
        waiting = run_requested_since(conn, job_id, job.updated_at)
    editable = job.status is JobStatus.NEEDS_REVIEW
    replace = None
    if editable and find is not None:
        replace = _preview(page, job, in_field or "", find, replace_with or "", whole)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    for row in rows:
        row["flagged"] = {p["field"] for p in row["problems"]}
        changes = row["pending_changes"] or {}
        row["values"] = {f: (changes[f] if f in changes else row[f]) or "" for f in fields}
    return page.render(
        "review.html",
        job=job,
        fields=fields,
        counts=counts,
        field_counts=sorted(by_field.items(), key=lambda item: _field_order(fields, item[0])),
        rows=rows,
        kind=kind or "",
        field=field or "",
        after=after,
        next_after=rows[-1]["row_number"] if more and rows else None,
        running=job.status in RUNNING,
        waiting=waiting,
        editable=editable,
        saved=saved,
        replace=replace,
        max_replace=MAX_REPLACE_TEXT,
    )


def _field_order(fields: tuple[str, ...], name: str) -> tuple[int, str]:
    """The dataset's order of fields; an issue on anything else comes last."""
    return (fields.index(name) if name in fields else len(fields), name)


def _preview(
    page: Page, job: ImportJob, field: str, find: str, replacement: str, whole: bool
) -> dict[str, Any]:
    """What the page's find and replace would change, or why it cannot run."""
    shown = {"field": field, "find": find, "replace_with": replacement, "whole": whole}
    try:
        found = replace_in_job(
            page.service,
            job,
            field,
            find,
            replacement,
            whole=whole,
            apply=False,
            source=REPLACE_SOURCE,
        )
    except ServiceError as exc:
        return {**shown, "error": exc.message, "rows": 0, "examples": []}
    return {**shown, "error": None, "rows": found["rows"], "examples": found["examples"]}


def _open_review_link(request: Request, job_id: str, token: str) -> Response:
    """A review link: its token becomes a session for that one job."""
    page = Page(request, None)
    try:
        claims = read_token(page.service.secret, token)
    except InvalidSignatureError as exc:
        return page.render("login.html", 401, next=f"/review/{job_id}", error=str(exc) + ".")
    if claims.get("job") != job_id or "key" in claims or "link" in claims:
        return page.render("login.html", 401, next=f"/review/{job_id}", error="Wrong link.")
    response = page.redirect(f"/review/{job_id}")
    page.sign_in(response, {"tenant": claims["tenant"], "job": job_id})
    return response


async def _checked(
    request: Request, job_id: str
) -> tuple[dict[str, str], Page, ImportJob | None, Response | None]:
    """The form, page and job of a POST from the review page, or the response to send."""
    form, who = await posted(request)
    if who is None and (form.get("link") or request.cookies):
        page = Page(request, None)  # a post that does not prove it came from our page
        return form, page, None, page.render("missing.html", 403, job_id=job_id)
    page, job = viewed_job(request, who, job_id, form.get("link"), f"/review/{job_id}")
    if not isinstance(job, ImportJob):
        return form, page, None, job
    return form, page, job, None


def _back(page: Page, job_id: str, form: dict[str, str], message: str) -> RedirectResponse:
    query = {"saved": message, "kind": form.get("kind"), "field": form.get("field")}
    if form.get("after", "0") not in ("", "0"):
        query["after"] = form["after"]
    return page.redirect(f"/review/{job_id}", **query)


@router.post("/review/{job_id}/decisions")
async def save(request: Request, job_id: str) -> Response:
    form, page, job, refused = await _checked(request, job_id)
    if refused is not None or job is None:
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
        count = record_job_decisions(page.service, job, decisions, "page") if decisions else 0
    except ServiceError as exc:
        return _back(page, job_id, form, f"Not saved: {exc.message}")
    return _back(page, job_id, form, f"{count} decision(s) saved")


@router.post("/review/{job_id}/discard-kind")
async def discard_all(request: Request, job_id: str) -> Response:
    form, page, job, refused = await _checked(request, job_id)
    if refused is not None or job is None:
        return refused
    kind = form.get("discard_kind", "")
    if job.status is not JobStatus.NEEDS_REVIEW:
        return _back(page, job_id, form, f"Not saved: job is {job.status.value}")
    with page.service.engine.begin() as conn:
        count = discard_kind(conn, job_id, kind, "page")
    return _back(page, job_id, form, f"{count} row(s) with {kind} will be discarded")


@router.post("/review/{job_id}/reprocess")
async def reprocess(request: Request, job_id: str) -> Response:
    form, page, job, refused = await _checked(request, job_id)
    if refused is not None or job is None:
        return refused
    try:
        request_reprocess(page.service, job, "page")
    except ServiceError as exc:
        return _back(page, job_id, form, f"Not started: {exc.message}")
    return page.redirect(f"/review/{job_id}", saved="Reprocessing requested")


@router.post("/review/{job_id}/replace")
async def apply_replace(request: Request, job_id: str) -> Response:
    form, page, job, refused = await _checked(request, job_id)
    if refused is not None or job is None:
        return refused
    field = form.get("in_field", "")
    find, replacement = form.get("find", ""), form.get("replace_with", "")
    if max(len(find), len(replacement)) > MAX_REPLACE_TEXT:
        return _back(page, job_id, form, f"Not saved: at most {MAX_REPLACE_TEXT} characters")
    try:
        done = replace_in_job(
            page.service,
            job,
            field,
            find,
            replacement,
            whole=form.get("whole") == "1",
            apply=True,
            source=REPLACE_SOURCE,
        )
    except ServiceError as exc:
        return _back(page, job_id, form, f"Not saved: {exc.message}")
    return _back(
        page, job_id, form, f"{done['rows']:,} fix(es) of {field} saved; Reprocess applies them"
    )


@router.get("/review/{job_id}/rows.csv")
def rows_in_error_csv(request: Request, job_id: str, link: str | None = None) -> Response:
    """The job's rows in error as the review file, to the page's viewer."""
    page, job = viewed_job(request, viewer(request, link), job_id, link, f"/review/{job_id}")
    if not isinstance(job, ImportJob):
        return job
    return page.headers(review_csv_response(page.service, job))
