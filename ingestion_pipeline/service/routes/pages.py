"""The import flow in the browser: sign in (or open an import link), drop a file on /import,
see what was read at once, confirm the columns, follow the job to its end. The review page is
its own router (review.py); these pages share its plumbing (service/pages.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from ingestion_pipeline.constants import RUNNING, JobStatus
from ingestion_pipeline.datasets import DEFAULT_DATASET, LOAD_ORDER
from ingestion_pipeline.db.import_jobs import ImportJob, list_jobs
from ingestion_pipeline.db.service import (
    authenticate,
    job_of_tenant,
    run_requested_since,
    snapshot,
)
from ingestion_pipeline.first_answer import first_answer
from ingestion_pipeline.reading.mapping import mappable_fields
from ingestion_pipeline.service.deps import (
    confirm_job_mapping,
    request_reprocess,
)
from ingestion_pipeline.service.pages import (
    Page,
    posted,
    read_form,
    refused,
    safe_next,
    viewed_job,
    viewer,
)
from ingestion_pipeline.service.uploads import ServiceError, display_name

router = APIRouter(include_in_schema=False)

RECENT_JOBS = 10
SAMPLE_VALUES = 3


@router.get("/")
def home(request: Request) -> Response:
    return RedirectResponse("/import", status_code=303)


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    return Page(request, None).render("login.html", next=safe_next(next), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await read_form(request)
    page = Page(request, None)
    with page.service.engine.connect() as conn:
        found = authenticate(conn, form.get("key", "").strip())
    target = safe_next(form.get("next"))
    if found is None:
        return page.render("login.html", 401, next=target, error="That key is not valid.")
    response = page.redirect(target)
    page.sign_in(response, {"tenant": found[0], "key": found[1]})
    return response


@router.get("/import")
def import_page(request: Request, link: str | None = None) -> Response:
    who = viewer(request, link)
    if who is None or who.job_id is not None:
        return refused(request, link, "/import")
    page = Page(request, who)
    with page.service.engine.connect() as conn:
        recent = list_jobs(conn, tenant_id=who.tenant_id, link_id=who.link_id, limit=RECENT_JOBS)
    datasets = [who.dataset] if who.dataset else list(LOAD_ORDER)
    return page.render(
        "import.html",
        datasets=datasets,
        default_dataset=who.dataset or DEFAULT_DATASET,
        recent=recent,
        part_size=page.service.settings.api_part_size,
    )


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str, link: str | None = None) -> Response:
    page, job = viewed_job(request, viewer(request, link), job_id, link, f"/jobs/{job_id}")
    return _render_job(page, job) if isinstance(job, ImportJob) else job


def _render_job(
    page: Page,
    job: ImportJob,
    error: str | None = None,
    chosen: dict[str, Any] | None = None,
    answer: dict[str, Any] | None = None,
) -> Response:
    """The job page; a refused form comes back with its `error`, the person's `chosen`
    columns and the file's first `answer` it was checked against (not read again)."""
    with snapshot(page.service.engine) as conn:
        job = job_of_tenant(conn, job.tenant_id, job.job_id) or job
        on_its_way = run_requested_since(conn, job.job_id, job.updated_at)
    if answer is None:
        answer = first_answer(page.service.zone, job, page.service.engine)
    mapping = None
    if job.status is JobStatus.NEEDS_MAPPING and not on_its_way and "error" not in answer:
        mapping = _mapping_rows(job, answer, chosen)
    waiting = sorted({r.dataset for r in job.declaration.references})
    return page.render(
        "job.html",
        422 if error else 200,
        job=job,
        answer=answer,
        mapping=mapping,
        error=error,
        waiting_for=waiting if job.status is JobStatus.WAITING_FOR_REFERENCES else [],
        running=job.status in RUNNING or on_its_way,
    )


def _mapping_rows(
    job: ImportJob, answer: dict[str, Any], chosen: dict[str, Any] | None
) -> dict[str, Any]:
    """The mapping form: per column, samples, the field it feeds and how that was decided;
    the required fields with no column yet; what a person chose when the form comes back."""
    dataset = job.declaration
    header: list[str] = answer["header"]
    fields = answer["mapping"]["fields"]
    by_column: dict[str, tuple[str, str]] = {}
    for name, spec in fields.items():
        if spec["method"] == "split":
            continue  # first and last name come from the full name's column
        for column in spec["columns"]:
            by_column.setdefault(column, (name, spec["method"]))
    columns = []
    for index, column in enumerate(header):
        values = [r[index] for r in answer["samples"] if index < len(r) and r[index].strip()]
        field, method = by_column.get(column, ("", ""))
        if chosen is not None:
            field, method = chosen["columns"].get(index, ""), "your choice"
        columns.append(
            {
                "index": index,
                "name": column,
                "samples": values[:SAMPLE_VALUES],
                "field": field,
                "method": method,
            }
        )
    taken = {c["field"] for c in columns if c["field"]}
    empty = set(chosen["empty"] if chosen else answer["mapping"]["empty"])
    required = [
        {"name": f, "mapped": f in taken, "empty": f in empty} for f in dataset.required_fields
    ]
    return {
        "columns": columns,
        "fields": mappable_fields(dataset),
        "required": required,
        "profile": answer["mapping"]["profile"],
    }


@router.post("/jobs/{job_id}/mapping")
async def confirm_mapping_page(request: Request, job_id: str) -> Response:
    """The mapping form: one select per column; required fields left out on purpose ticked.
    Confirmed by the code path of POST /v1/jobs/{id}/mapping: the same checks and messages."""
    form, who = await posted(request)
    page, job = viewed_job(request, who, job_id, form.get("link"), f"/jobs/{job_id}")
    if not isinstance(job, ImportJob):
        return job
    answer = first_answer(page.service.zone, job, page.service.engine)
    if "error" in answer:
        return _render_job(page, job, answer["error"], answer=answer)
    dataset = job.declaration
    # One select per column of the file's header: the form says which field, never how many.
    header = answer["header"]
    chosen_columns = {i: form.get(f"col{i}", "") for i in range(len(header))}
    empty = [f for f in dataset.required_fields if form.get(f"empty.{f}")]
    chosen = {"columns": chosen_columns, "empty": empty}
    assignments: dict[str, Any] = {}
    for name in mappable_fields(dataset):
        picked = [header[i] for i, f in chosen_columns.items() if f == name]
        assignments[name] = picked or None
    missing = [f for f in dataset.required_fields if not assignments.get(f) and f not in empty]
    if missing:
        shown = ", ".join(missing)
        message = (
            f"{display_name(job.file_name)}: required field(s) {shown} have no column. "
            "Choose a column for each, or tick “leave empty on purpose”."
        )
        return _render_job(page, job, message, chosen, answer)
    try:
        confirm_job_mapping(page.service, job, assignments, "page:mapping")
    except ServiceError as exc:
        return _render_job(page, job, exc.message, chosen, answer)
    return page.redirect(f"/jobs/{job_id}")


@router.post("/jobs/{job_id}/retry")
async def retry_page(request: Request, job_id: str) -> Response:
    form, who = await posted(request)
    page, job = viewed_job(request, who, job_id, form.get("link"), f"/jobs/{job_id}")
    if not isinstance(job, ImportJob):
        return job
    try:
        request_reprocess(page.service, job, "page")
    except ServiceError as exc:
        return _render_job(page, job, exc.message)
    return page.redirect(f"/jobs/{job_id}")
