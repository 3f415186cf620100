"""The API's request and response shapes: its OpenAPI description."""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, Field

from ingestion_pipeline.constants import SUPPORTED_EXTENSIONS
from ingestion_pipeline.datasets import DEFAULT_DATASET, LOAD_ORDER

MAX_DECISIONS = 10_000
# What the upload layout takes: a plain name with a supported extension, optionally gzipped.
FILE_NAME = (
    r"^[^/\\.\x00][^/\\\x00]{0,200}("
    + "|".join(r"\." + "".join(f"[{c}{c.upper()}]" for c in e[1:]) for e in SUPPORTED_EXTENSIONS)
    + r")(\.gz)?$"
)


class Problem(BaseModel):
    detail: str


class JobOut(BaseModel):
    job_id: str
    tenant: str
    dataset: str
    status: str
    file: str
    total_rows: int
    processed_rows: int
    issue_count: int
    issues_by_kind: dict[str, int]
    contacts_created: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    error: str | None
    mapping: dict[str, Any] | None
    waiting_for: list[str] = Field(
        description="WAITING_FOR_REFERENCES: the datasets whose rows the job waits for"
    )
    uploaded_by: str | None = Field(description="the user label of the import link it came by")
    created_at: str
    updated_at: str
    url: str
    review_url: str


class MappedField(BaseModel):
    columns: list[str]
    method: str = Field(
        description="how the column(s) were decided: remembered, person, profile: <tool>, "
        "alias, name (words in the header), values, split (of full_name)"
    )


class FirstMapping(BaseModel):
    source: str = Field(description="automatic, remembered (the tenant's for this header), …")
    profile: str | None
    fields: dict[str, MappedField]
    unmapped: list[str] = Field(description="required fields with no column")
    empty: list[str] = Field(description="required fields a person left empty on purpose")


class SkippedLine(BaseModel):
    line: int
    text: str


class FirstAnswer(BaseModel):
    """What the first bytes of the stored file tell, before any run (first_answer.py)."""

    format: str = Field(description="csv, tsv, xlsx, xlsm, xls, ods, json, ndjson or vcf")
    compression: Literal["gzip"] | None
    size_bytes: int
    encoding: str | None
    delimiter: str | None = Field(description="comma, semicolon, tab or pipe (delimited text)")
    sheet: str | None = Field(description="the workbook's sheet that is read")
    header: list[str]
    skipped_before_header: list[SkippedLine]
    samples: list[list[str]] = Field(description="the first few data records, as read")
    row_estimate: int | None = Field(
        description="an estimate of the data rows, not a count (total_rows counts them): "
        "delimited text's size over the average record of its first bytes, a sheet's stated "
        "size; null when not cheaply known"
    )
    row_estimate_basis: str = Field(description="how row_estimate was reached, or why not")
    mapping: FirstMapping = Field(description="the mapping the run will use, per field")
    needs_mapping: bool = Field(
        description="the job will wait in NEEDS_MAPPING for a person (POST …/mapping)"
    )


class FirstAnswerError(BaseModel):
    error: str = Field(description="why the file cannot be read (its run fails the same way)")


class UploadOut(JobOut):
    created: bool
    first_answer: FirstAnswer | FirstAnswerError


class JobList(BaseModel):
    jobs: list[JobOut]
    next_offset: int | None


class IssueOut(BaseModel):
    issue_id: int
    kind: str
    field: str
    message: str
    rows: list[int]


class IssuePage(BaseModel):
    issues: list[IssueOut]
    next_after: int | None


class DecisionIn(BaseModel):
    row: int = Field(ge=1, le=2**31 - 1)
    action: Literal["fix", "discard"]
    values: dict[str, str | None] = Field(default_factory=dict)


class DecisionsIn(BaseModel):
    decisions: list[DecisionIn] = Field(min_length=1, max_length=MAX_DECISIONS)


class DecisionsOut(BaseModel):
    job_id: str
    recorded: int


class RunRequestOut(BaseModel):
    job_id: str
    # "warm": a worker takes it at once; "queue": a run request for the sensors (its id).
    lane: str
    request_id: int | None
    job_name: str


class MappingIn(BaseModel):
    fields: dict[str, str | list[str] | None] = Field(min_length=1)


class WebhookIn(BaseModel):
    url: str | None = Field(pattern=r"^https?://[^\s]+$", max_length=2000)


class WebhookOut(BaseModel):
    url: str | None
    secret: str | None


class DeliveryOut(BaseModel):
    delivery_id: int
    event_id: str
    event: str
    job_id: str
    url: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: str
    delivered_at: str | None


# The declared datasets, as the API's enumeration.
DatasetName = Enum("DatasetName", {name: name for name in LOAD_ORDER}, type=str)
DEFAULT_DATASET_NAME = DatasetName(DEFAULT_DATASET)


class SessionIn(BaseModel):
    file_name: str = Field(min_length=1, max_length=255, pattern=FILE_NAME)
    size: int = Field(ge=1, le=2**53)
    dataset: DatasetName = DEFAULT_DATASET_NAME  # type: ignore[valid-type]


class SessionOut(BaseModel):
    session_id: str
    file_name: str
    size: int
    part_size: int
    parts_received: list[int]
    job_id: str | None
    expires_at: str
    url: str


class ImportLinkIn(BaseModel):
    dataset: DatasetName | None = None  # type: ignore[valid-type]
    hours: float = Field(default=24, gt=0, le=24 * 30)
    user: str | None = Field(default=None, max_length=200)


class ImportLinkOut(BaseModel):
    url: str = Field(description="opens the import flow for the tenant, in a page or an iframe")
    token: str
    link_id: str
    dataset: str | None
    user: str | None
    expires_at: str
    embed_origins: list[str] = Field(description="the origins that may frame the flow")


# Parts are the raw bytes of the file; an upload is those bytes, or a form with a file part.
_BINARY = {"type": "string", "format": "binary"}
BINARY_BODY: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": _BINARY}}}
}
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/octet-stream": {"schema": _BINARY},
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": _BINARY}, "required": ["file"]}
            },
        },
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem},
    401: {"model": Problem},
    404: {"model": Problem},
    422: {"model": Problem},
}


# Find and replace within one field of a job's rows in error.
MAX_REPLACE_TEXT = 1000


class ReplaceIn(BaseModel):
    field: str = Field(min_length=1, max_length=64, description="one of the dataset's fields")
    find: str = Field(min_length=1, max_length=MAX_REPLACE_TEXT, description="case-sensitive")
    replace: str = Field(default="", max_length=MAX_REPLACE_TEXT)
    whole_value: bool = Field(default=False, description="replace only values equal to `find`")
    apply: bool = Field(default=False, description="false: preview only, nothing is recorded")


class ReplaceExampleOut(BaseModel):
    row: int
    before: str | None
    after: str | None


class ReplaceOut(BaseModel):
    job_id: str
    field: str
    rows: int = Field(description="rows in error that change (applied: fixes recorded)")
    applied: bool
    examples: list[ReplaceExampleOut]
