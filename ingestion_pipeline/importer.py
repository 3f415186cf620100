"""The import itself, as plain functions over an engine and a landing zone.

Assets, the CLI and benchmarks call these; Dagster-specific reporting stays in the assets.
"""

from __future__ import annotations

import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import pandas as pd
from sqlalchemy.engine import Connection, Engine

from ingestion_pipeline.constants import JobStatus
from ingestion_pipeline.db.consolidation import (
    ConsolidationConflictError,
    ConsolidationResult,
    consolidate_job,
)
from ingestion_pipeline.db.decisions import (
    ReviewError,
    apply_decisions,
    claim_review_file,
    record_decisions,
    review_file_seen,
    rows_for_review,
)
from ingestion_pipeline.db.import_jobs import (
    ImportJob,
    get_job,
    hold_job_lock,
    issue_counts_by_kind,
    list_issues,
    set_failed,
    set_processing,
    staged_row_count,
    unstage_and_fail,
    update_job,
)
from ingestion_pipeline.db.mappings import remember_mapping, remembered_mapping
from ingestion_pipeline.db.staging import analyze_staging, copy_chunk, prepare_chunk
from ingestion_pipeline.db.validation import ANALYZE_AFTER_ROWS, ValidationResult, validate_job
from ingestion_pipeline.landing import LandingZone
from ingestion_pipeline.reading import FileFormat, open_upload
from ingestion_pipeline.reading.errors import records_from
from ingestion_pipeline.reading.mapping import (
    ColumnMapping,
    MappingError,
    Method,
    header_signature,
    person_mapping,
)
from ingestion_pipeline.review_files import (
    DecisionFileError,
    MappingFileError,
    decisions_key,
    issues_key,
    mapping_key,
    parse_decisions,
    parse_mapping_file,
    write_issues_csv,
)


class Route(str, Enum):
    """What a (re)materialization of a job has to do, decided from its row and staging."""

    DONE = "completed: nothing to do"
    AWAIT_MAPPING = "waiting for a person to confirm the column mapping"
    REPROCESS = "reprocess: revalidate staging rows, no file read"
    RESUME = "resume: skip rows already staged"
    INITIAL = "initial load"

    @property
    def idle(self) -> bool:
        """Nothing to stage, apply or validate: the job is done, or waits for its mapping."""
        return self in (Route.DONE, Route.AWAIT_MAPPING)

    @property
    def reads_upload(self) -> bool:
        """The upload is read and staged (from its first record, or past what is staged)."""
        return self in (Route.INITIAL, Route.RESUME)

    @property
    def inspects_upload(self) -> bool:
        """The upload is opened for its layout and mapping: to stage it, or to ask a person."""
        return self.reads_upload or self is Route.AWAIT_MAPPING


class UnknownJobError(LookupError):
    """A partition with no import_jobs row."""


def route_for(job: ImportJob, staged_rows: int) -> Route:
    """The routing rules of the job lifecycle."""
    if job.status is JobStatus.COMPLETED:
        return Route.DONE
    if job.status is JobStatus.NEEDS_MAPPING:
        return Route.AWAIT_MAPPING
    if staged_rows and job.status in (
        JobStatus.NEEDS_REVIEW,
        JobStatus.WAITING_FOR_REFERENCES,
    ):
        return Route.REPROCESS
    if staged_rows and job.total_rows is not None and staged_rows >= job.total_rows:
        # Staging finished before the run stopped: validate what is there.
        return Route.REPROCESS
    return Route.RESUME if staged_rows else Route.INITIAL


def load_job(engine: Engine, job_id: str) -> tuple[ImportJob, Route]:
    """The job and its route; raises UnknownJobError for an unregistered partition."""
    with engine.connect() as conn:
        job = get_job(conn, job_id)
    if job is None:
        raise UnknownJobError(
            f"no import job {job_id!r}: jobs are registered by upload_sensor or the CLI"
        )
    # processed_rows commits with every staged chunk, so it is the staged row count without
    # counting the job's rows again in each step.
    return job, route_for(job, job.processed_rows)


@contextmanager
def job_lock(engine: Engine, job_id: str) -> Iterator[None]:
    """Hold the job's advisory lock: steps of one job, from any run or process, run one at a
    time. A second run of the same job waits, then finds the job's new state and routes by it.

    The lock lives on a connection of its own in autocommit, so no transaction stays open
    while it is held; a process that dies releases it with its connection.
    """
    with (
        engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn,
        hold_job_lock(conn, job_id),
    ):
        yield


def mark_processing(engine: Engine, job_id: str) -> None:
    """Enter PROCESSING (from any state but COMPLETED) and clear the last error."""
    with engine.begin() as conn:
        set_processing(conn, job_id)


def refuse_persons_file(
    engine: Engine, job_id: str, error: str, *, status: JobStatus | None = None
) -> None:
    """Record the error in a person's mapping or decisions file on a job that keeps waiting
    for that person (`status`: the state it waits in, when a step had left it)."""
    values: dict[str, Any] = {"error": error}
    if status is not None:
        values["status"] = status
    with engine.begin() as conn:
        update_job(conn, job_id, **values)


@dataclass(frozen=True)
class IssueSummary:
    """A job as validation left it: its row, open issues by kind, and the first issues."""

    job: ImportJob
    counts: dict[str, int]
    first_issues: list[dict[str, Any]]


def issue_summary(engine: Engine, job: ImportJob, preview: int) -> IssueSummary:
    """The job read again, with its open issues counted by kind and the first `preview`."""
    with engine.connect() as conn:
        return IssueSummary(
            get_job(conn, job.job_id) or job,
            issue_counts_by_kind(conn, job.job_id),
            list_issues(conn, job.job_id, limit=preview),
        )


def mark_failed(engine: Engine, job_id: str, error: str, *, only_running: bool = False) -> bool:
    """Record a failure on the job (never on a COMPLETED one); True if the job was changed.

    With `only_running`, a job under review keeps its status: a failed reprocessing run leaves
    its staging and issues as they were.
    """
    with engine.begin() as conn:
        return set_failed(conn, job_id, error, only_running=only_running)


def reject_upload(engine: Engine, job_id: str, error: str) -> None:
    """Fail the job for bad input and take back what it staged, in one transaction: a file
    rejected at record 600,001 leaves no rows, issues or progress behind, only the error."""
    with engine.begin() as conn:
        unstage_and_fail(conn, job_id, error)


def inspect_upload(landing: LandingZone, job: ImportJob) -> FileFormat:
    """Open the job's object version and detect its format (reads only the first bytes)."""
    with landing.open(job.source_key, job.source_etag) as stream:
        return open_upload(stream, job.file_name, job.declaration).format


# How many sample values per column a person is shown when asked to confirm a mapping.
SAMPLES_SHOWN = 5


def layout_json(fmt: FileFormat) -> dict[str, Any]:
    """What the job records of its file's layout: header, signature, samples, skipped lines."""
    samples = {
        _storable(name): [
            _storable(r[i][:200]) for r in fmt.samples if i < len(r) and r[i].strip()
        ][:SAMPLES_SHOWN]
        for i, name in enumerate(fmt.header)
    }
    return {
        "header": [_storable(name) for name in fmt.header],
        "signature": header_signature(fmt.header),
        "sheet": fmt.sheet,
        "skipped_before_header": [{"line": n, "text": _storable(t[:200])} for n, t in fmt.preamble],
        "samples": samples,
    }


def _storable(text: str) -> str:
    # JSONB cannot hold NUL; the record that has one becomes an issue (see staging).
    return text.replace("\x00", "\ufffd")


@dataclass
class MappingDecision:
    """The mapping a job reads its file with, or the suggestion a person has to confirm."""

    file_format: FileFormat
    mapping: ColumnMapping
    source: str
    needs_person: bool

    @property
    def layout(self) -> dict[str, Any]:
        return layout_json(self.file_format)

    def job_mapping(self) -> dict[str, Any]:
        """The mapping as stored on the job; `pending` while a person has to confirm it."""
        return {**self.mapping.to_json(), "source": self.source, "pending": self.needs_person}


def mapping_in_force(job: ImportJob) -> ColumnMapping | None:
    """The mapping a job decided on (None while it waits for a person, or before deciding)."""
    stored = job.mapping
    if not stored or stored.get("pending"):
        return None
    return ColumnMapping.from_json(stored)


def decide_mapping(engine: Engine, landing: LandingZone, job: ImportJob) -> MappingDecision:
    """Decide how the job's columns map to fields, in this order: a mapping a person gave for
    this job (`map`, or reviews/<job_id>/mapping.json while the job waits), the one the job
    already used, the tenant's remembered mapping for this header, the automatic suggestion
    when it maps every required field; else the job has to wait for a person.

    A person's mapping is remembered for the tenant's next file with the same header.
    """
    with landing.open(job.source_key, job.source_etag) as stream:
        source = open_upload(stream, job.file_name, job.declaration)
    fmt, suggestion = source.format, source.suggestion
    given = _mapping_file(landing, job, fmt, suggestion)
    decision = choose_mapping(engine, job, fmt, suggestion, given)
    if decision.source == "mapping file":  # `map` remembered its mapping when it was given
        with engine.begin() as conn:
            _remember(conn, job, fmt, decision.mapping)
    return decision


def choose_mapping(
    engine: Engine,
    job: ImportJob,
    fmt: FileFormat,
    suggestion: ColumnMapping,
    given: ColumnMapping | None = None,
) -> MappingDecision:
    """The rules of decide_mapping on a file already opened, reading and writing nothing but
    the tenant's remembered mapping: `given` (a person's mapping file), the mapping the job
    already used, the remembered one for this header shape, else the suggestion (a person
    has to confirm it when it leaves a required field unmapped). The upload's first answer
    (first_answer.py) calls it too, so it tells what the run will decide."""
    if given is not None:
        return MappingDecision(fmt, given, "mapping file", needs_person=False)
    if (used := mapping_in_force(job)) is not None:
        return MappingDecision(fmt, used, (job.mapping or {}).get("source", "job"), False)
    with engine.connect() as conn:
        remembered = remembered_for(conn, job, fmt.header)
    if remembered is not None:
        return MappingDecision(fmt, remembered, "remembered", needs_person=False)
    return MappingDecision(fmt, suggestion, "automatic", needs_person=bool(suggestion.unmapped))


def remembered_for(conn: Connection, job: ImportJob, header: Sequence[str]) -> ColumnMapping | None:
    """The mapping a person confirmed for the tenant's files with this header shape, every
    field marked `remembered`; None if there is none for the job's dataset."""
    remembered = remembered_mapping(conn, job.tenant_id, header_signature(header))
    if remembered is None:
        return None
    mapping = ColumnMapping.from_json(remembered)
    # The same header in another dataset's file maps other fields: not this one's.
    if mapping.dataset != job.dataset:
        return None
    return mapping.with_method(Method.REMEMBERED)


def _remember(conn: Connection, job: ImportJob, fmt: FileFormat, mapping: ColumnMapping) -> None:
    """Keep a person's mapping for the tenant's next file with this header."""
    remember_mapping(
        conn,
        job.tenant_id,
        header_signature(fmt.header),
        list(fmt.header),
        mapping.to_json(),
        job.job_id,
    )


def _mapping_file(
    landing: LandingZone, job: ImportJob, fmt: FileFormat, suggestion: ColumnMapping
) -> ColumnMapping | None:
    """The mapping in reviews/<job_id>/mapping.json, read only while the job waits for one."""
    if job.status is not JobStatus.NEEDS_MAPPING:
        return None
    key = mapping_key(job.job_id)
    info = landing.stat(key)
    if info is None:
        return None
    with landing.open(key, info.etag) as stream:
        assignments = parse_mapping_file(stream, key)
    try:
        return person_mapping(fmt.header, assignments, suggestion)
    except MappingError as exc:
        raise MappingFileError(f"{key}: {exc}") from exc


def confirm_mapping(
    engine: Engine, landing: LandingZone, job: ImportJob, assignments: dict[str, Any]
) -> ColumnMapping:
    """Record a person's mapping on a job that waits for one (or has not started): the next
    run reads the file with it. Raises MappingError for a field or column the file lacks."""
    with landing.open(job.source_key, job.source_etag) as stream:
        source = open_upload(stream, job.file_name, job.declaration)
    mapping = person_mapping(source.format.header, assignments, source.suggestion)
    with engine.begin() as conn:
        update_job(
            conn,
            job.job_id,
            mapping={**mapping.to_json(), "source": "person", "pending": False},
            layout=layout_json(source.format),
            error=None,
        )
        _remember(conn, job, source.format, mapping)
    return mapping


def record_mapping(engine: Engine, job_id: str, decision: MappingDecision) -> None:
    """Store the decision on the job; a job that needs a person waits in NEEDS_MAPPING."""
    fmt = decision.file_format
    values: dict[str, Any] = {
        "mapping": decision.job_mapping(),
        "layout": decision.layout,
        "encoding": fmt.encoding,
        "delimiter": fmt.delimiter_name,
    }
    if decision.needs_person:
        values.update(status=JobStatus.NEEDS_MAPPING, error=None)
    with engine.begin() as conn:
        update_job(conn, job_id, **values)


@dataclass
class StageProgress:
    """Reported after every chunk lands."""

    rows_read: int
    rows_written: int
    bytes_read: int
    bytes_total: int
    seconds: float

    @property
    def percent(self) -> float:
        return 100.0 * self.bytes_read / self.bytes_total if self.bytes_total else 100.0


@dataclass
class StageResult:
    """What staging did for one job."""

    file_format: FileFormat
    rows_read: int = 0
    rows_written: int = 0
    chunks: int = 0
    seconds: float = 0.0
    # Lines after the data that are not records (a report's legal lines, a "Total" row).
    footer: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def rows_skipped(self) -> int:
        return self.rows_read - self.rows_written


# Chunks copied at once, each on a connection of its own: PostgreSQL parses one COPY per
# backend, so a second writer puts the server's second core to work while Python reads on.
WRITERS = 2


def stage_upload(
    engine: Engine,
    landing: LandingZone,
    job: ImportJob,
    chunk_size: int,
    on_progress: Callable[[StageProgress], None] | None = None,
) -> StageResult:
    """Stream the job's object into staging_rows, one transaction per chunk.

    Each chunk's rows and the job's processed_rows commit together, so a killed run resumes
    from whole chunks; rows already staged are recognised and skipped. While PostgreSQL
    writes up to WRITERS chunks (in worker threads, committing in file order), the next is read
    and judged: at most WRITERS + 1 chunks are in memory.
    """
    job_id = job.job_id
    started = time.perf_counter()
    with engine.connect() as conn:
        already = staged_row_count(conn, job_id)
    info = landing.stat(job.source_key)
    size = info.size if info else 0
    timings = {"read": 0.0, "validate": 0.0, "copy_wait": 0.0}

    def write(prepared: pd.DataFrame, before: Future[int] | None) -> int:
        first, last = int(prepared["row_number"].iloc[0]), int(prepared["row_number"].iloc[-1])
        with engine.begin() as conn:
            written = copy_chunk(conn, prepared, resume=already > 0 and first <= already)
            # Chunks are copied side by side but commit in file order: processed_rows is
            # always the end of a staged prefix, and a failed chunk fails the ones after it.
            if before is not None:
                before.result()
            update_job(conn, job_id, processed_rows=last)
        return written

    with (
        landing.open(job.source_key, job.source_etag) as stream,
        ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="copy") as writer,
    ):
        source = open_upload(stream, job.file_name, job.declaration)
        mapping = mapping_in_force(job)
        if mapping is not None:
            source.use_mapping(mapping)
        result = StageResult(file_format=source.format, timings=timings)
        fmt = source.format
        with engine.begin() as conn:
            update_job(conn, job_id, encoding=fmt.encoding, delimiter=fmt.delimiter_name)
        in_flight: deque[tuple[Future[int], int, int]] = deque()

        def settle() -> None:
            future, last_row, bytes_read = in_flight.popleft()
            waited = time.perf_counter()
            result.rows_written += future.result()
            timings["copy_wait"] += time.perf_counter() - waited
            result.rows_read = last_row
            result.chunks += 1
            if on_progress:
                on_progress(
                    StageProgress(
                        rows_read=last_row,
                        rows_written=result.rows_written,
                        bytes_read=bytes_read,
                        bytes_total=size,
                        seconds=time.perf_counter() - started,
                    )
                )

        mark = time.perf_counter()
        for chunk in source.chunks(chunk_size):
            t_read = time.perf_counter()
            with records_from(job.file_name, int(chunk.frame["row_number"].iloc[0])):
                prepared = prepare_chunk(chunk.frame, job_id, job.declaration)
            t_valid = time.perf_counter()
            timings["read"] += t_read - mark
            timings["validate"] += t_valid - t_read
            if len(in_flight) == WRITERS:
                settle()
            before = in_flight[-1][0] if in_flight else None
            last_row = int(prepared["row_number"].iloc[-1])
            in_flight.append((writer.submit(write, prepared, before), last_row, chunk.bytes_read))
            del prepared
            mark = time.perf_counter()
        while in_flight:
            settle()
        result.rows_read = source.records_read
    result.footer = list(source.footer)
    layout = {
        **(job.layout or layout_json(source.format)),
        "footer": result.footer,
        # Records with fewer fields than the header (padded with empty values, not issues).
        "short_records": source.short_records,
        "short_record_rows": source.short_record_rows,
    }
    with engine.begin() as conn:
        update_job(
            conn,
            job_id,
            total_rows=result.rows_read,
            processed_rows=result.rows_read,
            layout=layout,
        )
        if result.rows_written >= ANALYZE_AFTER_ROWS:
            # Fresh statistics after a bulk load, so validation plans hash joins, not index
            # loops; a small file's rows change nothing the planner needs to know.
            analyze_staging(conn)
    result.seconds = time.perf_counter() - started
    return result


def validate(engine: Engine, job: ImportJob) -> ValidationResult:
    """Run the cross-row rules and reconcile the job's issues, in one transaction."""
    with engine.begin() as conn:
        return validate_job(conn, job.job_id, job.tenant_id, job.declaration)


def consolidate(engine: Engine, job: ImportJob) -> ConsolidationResult:
    """Load contacts if the job is clean; a late conflict sends it back to review instead."""
    try:
        with engine.begin() as conn:
            return consolidate_job(conn, job.job_id)
    except ConsolidationConflictError:
        validate(engine, job)
        with engine.begin() as conn:
            return consolidate_job(conn, job.job_id)


@dataclass
class ReviewOutcome:
    """What the reviewed_staging step did for one job."""

    decisions_file: str | None = None
    decisions_loaded: int = 0
    fixed: int = 0
    discarded: int = 0


def apply_review(engine: Engine, landing: LandingZone, job: ImportJob) -> ReviewOutcome:
    """Load a new decisions file from the landing zone, then apply every pending decision.

    A decisions file version is read once (tracked by its ETag); a bad file raises
    DecisionFileError and changes nothing.
    """
    outcome = ReviewOutcome()
    key = decisions_key(job.job_id)
    info = landing.stat(key)
    with engine.begin() as conn:
        if info is not None and not review_file_seen(conn, job.job_id, info.etag):
            with landing.open(key, info.etag) as stream:
                decisions = parse_decisions(stream, key, job.declaration)
            try:
                record_decisions(conn, job, decisions, source=f"file:{info.etag}")
            except ReviewError as exc:
                raise DecisionFileError(f"{key}: {exc}") from exc
            claim_review_file(conn, job.job_id, info.etag, len(decisions))
            outcome.decisions_file = landing.describe(key)
            outcome.decisions_loaded = len(decisions)
        applied = apply_decisions(conn, job.job_id, job.declaration)
    outcome.fixed, outcome.discarded = applied.fixed, applied.discarded
    return outcome


def write_review_file(engine: Engine, landing: LandingZone, job: ImportJob) -> str:
    """Write reviews/<job_id>/issues.csv with the rows that need a reviewer; returns where."""
    key = issues_key(job.job_id)
    dataset = job.declaration
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
        with engine.connect() as conn:
            write_issues_csv(rows_for_review(conn, job.job_id, dataset), spool, dataset)
        spool.seek(0)
        landing.write(key, spool)
    return landing.describe(key)
