"""Sensors: new uploads become import jobs and runs; new decision files start reprocessing."""

import hashlib
import itertools
import json
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from dagster import (
    AddDynamicPartitionsRequest,
    AssetCheckEvaluation,
    BetaWarning,
    DagsterEvent,
    DagsterEventType,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    sensor,
)

from ingestion_pipeline.asset_jobs import (
    ALL_JOBS,
    IMPORT_JOBS,
    dataset_job_name,
    import_job,
    reprocess_job,
)
from ingestion_pipeline.batch import BATCH_OP, batch_job_ids, import_batch_job
from ingestion_pipeline.constants import REVIEWS_PREFIX, TENANT_TAG, UPLOADS_PREFIX, JobStatus
from ingestion_pipeline.db.import_jobs import (
    NewJob,
    after_crash,
    get_job,
    register_jobs,
    unstarted_jobs,
)
from ingestion_pipeline.db.service import (
    admit_jobs,
    request_run,
    run_requests_after,
    waiting_jobs,
)
from ingestion_pipeline.db.warm_queue import enqueue, take_unclaimed
from ingestion_pipeline.importer import mark_failed
from ingestion_pipeline.landing import (
    InvalidKeyError,
    LandingZone,
    ObjectInfo,
    job_id_for,
    parse_upload_key,
)
from ingestion_pipeline.lanes import warm_by_size
from ingestion_pipeline.partitions import partitions_of
from ingestion_pipeline.resources import DatabaseResource, LandingZoneResource
from ingestion_pipeline.review_files import MAPPING_FILE, parse_review_key
from ingestion_pipeline.settings import load_settings

# Dagster 1.13 builds a sensor with several target jobs through a beta parameter (`owners`) and
# warns on every load of the code location; the targets themselves are stable API.
warnings.filterwarnings("ignore", category=BetaWarning, message=".*owners.*")

# LastModified has one-second resolution: objects this close to the high-water mark are looked
# at again and recognised by a short hash of key and ETag. The cursor therefore holds only the
# objects of the last LOOKBACK seconds it took, never a list that grows with the bucket.
LOOKBACK = timedelta(seconds=2)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def token(obj: ObjectInfo) -> str:
    """The identity of one object version; also the run key, so a version runs once."""
    return f"{obj.key}:{obj.etag}"


def _digest(obj: ObjectInfo) -> str:
    return hashlib.blake2b(token(obj).encode(), digest_size=8).hexdigest()


@dataclass
class ListingCursor:
    """High-water mark of LastModified plus hashes of the objects taken within LOOKBACK of it."""

    since: datetime = _EPOCH
    recent: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None) -> "ListingCursor":
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(
            since=datetime.fromtimestamp(data["since"], tz=timezone.utc),
            recent=dict(data.get("recent", {})),
        )

    def dump(self) -> str:
        return json.dumps({"since": self.since.timestamp(), "recent": self.recent}, sort_keys=True)

    def is_new(self, obj: ObjectInfo) -> bool:
        if obj.last_modified < self.since - LOOKBACK:
            return False
        return _digest(obj) not in self.recent

    def advance(self, taken: list[ObjectInfo]) -> None:
        for obj in taken:
            self.since = max(self.since, obj.last_modified)
            self.recent[_digest(obj)] = obj.last_modified.timestamp()
        horizon = (self.since - LOOKBACK).timestamp()
        self.recent = {k: ts for k, ts in self.recent.items() if ts >= horizon}


@sensor(
    name="upload_sensor",
    jobs=[*IMPORT_JOBS, import_batch_job],
    minimum_interval_seconds=15,
    default_status=DefaultSensorStatus.RUNNING,
    description="Turns each new object under uploads/<tenant>/ into an import job and a run.",
)
def upload_sensor(
    context: SensorEvaluationContext,
    landing_zone: LandingZoneResource,
    database: DatabaseResource,
) -> SensorResult | SkipReason:
    """List uploads/, register new object versions as jobs and request one run for each."""
    cursor = ListingCursor.parse(context.cursor)
    candidates, taken = new_objects(landing_zone.get_zone(), UPLOADS_PREFIX, cursor)
    engine = database.get_engine()
    # Jobs held back by their tenant's import limit are offered again on every tick.
    settings = load_settings()
    with engine.begin() as conn:
        held = waiting_jobs(conn, settings.sensor_max_runs)
        # Small jobs no worker took in time (none is running): the run queue takes them.
        stale = (
            take_unclaimed(conn, settings.warm_fallback_seconds) if settings.warm_max_bytes else []
        )
    if not taken and not held and not stale:
        return SkipReason("no new uploads")

    jobs: dict[str, NewJob] = {}
    sizes: dict[str, int] = {}
    for obj in taken:
        try:
            parsed = parse_upload_key(obj.key)
        except InvalidKeyError as exc:
            context.log.warning(f"skipped: {exc}")
            continue
        if obj.size == 0:
            context.log.warning(f"skipped: {obj.key!r} is empty")
            continue
        job_id = job_id_for(parsed.tenant_id, obj.key, obj.etag)
        sizes[job_id] = obj.size
        jobs[job_id] = NewJob(
            job_id, parsed.tenant_id, obj.key, obj.etag, parsed.file_name, parsed.dataset, obj.size
        )

    with engine.begin() as conn:
        register_jobs(conn, jobs.values())
        # A version imported already (by the CLI, or before a re-upload of the same bytes) is
        # not launched again; a PENDING one is, as its earlier tick may not have launched it.
        unstarted = unstarted_jobs(conn, list(jobs))
    jobs = {job_id: job for job_id, job in jobs.items() if job_id in unstarted}
    jobs.update({job.job_id: job for job in held})
    partitions = {job_id: job.dataset for job_id, job in jobs.items()}
    admitted = admit_jobs(engine, jobs.values())
    if len(admitted) < len(jobs):
        context.log.info(
            f"{len(jobs) - len(admitted)} upload(s) wait for their tenant's import limit"
        )
    jobs = {job_id: job for job_id, job in jobs.items() if job_id in admitted}
    warm = {j: job for j, job in jobs.items() if warm_by_size(settings, sizes.get(j, 0))}
    with engine.begin() as conn:
        enqueue(conn, [(j, job.tenant_id) for j, job in warm.items()], "upload_sensor")
        for job_id, _ in stale:
            found = get_job(conn, job_id)
            if found is not None and found.status is JobStatus.PENDING:
                jobs[job_id] = NewJob(
                    job_id,
                    found.tenant_id,
                    found.source_key,
                    found.source_etag,
                    found.file_name,
                    found.dataset,
                    found.source_size,
                )
                partitions[job_id] = found.dataset
    jobs = {job_id: job for job_id, job in jobs.items() if job_id not in warm}
    cursor.advance(taken)
    if len(candidates) > len(taken):
        context.log.info(f"{len(candidates) - len(taken)} more upload(s) left for the next tick")
    return SensorResult(
        run_requests=run_requests(list(jobs.values()), load_settings().batch_size),
        dynamic_partitions_requests=partition_requests(partitions),
        cursor=cursor.dump(),
    )


def partition_requests(datasets_of: dict[str, str]) -> list[AddDynamicPartitionsRequest]:
    """Add each job (id -> dataset) to its dataset's partitions; a job already there stays."""
    by_dataset: dict[str, set[str]] = {}
    for job_id, dataset in datasets_of.items():
        by_dataset.setdefault(dataset, set()).add(job_id)
    return [
        partitions_of(d).build_add_request(sorted(ids)) for d, ids in sorted(by_dataset.items())
    ]


def run_requests(jobs: list[NewJob], batch_size: int) -> list[RunRequest]:
    """One import_job run per job, the run queue keeping one run per tenant at a time; or,
    when a tick brings more than `batch_size` jobs (a burst), batch runs of `batch_size` jobs
    that take the tenants in turn, so that no tenant's burst holds back the others."""
    if len(jobs) <= batch_size:
        return [
            RunRequest(
                job_name=dataset_job_name(import_job.name, job.dataset),
                partition_key=job.job_id,
                run_key=f"{job.source_key}:{job.source_etag}",
                tags={TENANT_TAG: job.tenant_id},
            )
            for job in jobs
        ]
    by_tenant: dict[str, list[NewJob]] = {}
    for job in jobs:
        by_tenant.setdefault(job.tenant_id, []).append(job)
    in_turn = [
        job
        for round_ in itertools.zip_longest(*by_tenant.values())
        for job in round_
        if job is not None
    ]
    requests = []
    for start in range(0, len(in_turn), batch_size):
        batch = in_turn[start : start + batch_size]
        tokens = "\n".join(f"{job.source_key}:{job.source_etag}" for job in batch)
        requests.append(
            RunRequest(
                job_name=import_batch_job.name,
                run_key="batch:" + hashlib.sha256(tokens.encode()).hexdigest()[:32],
                run_config={"ops": {BATCH_OP: {"config": {"job_ids": [j.job_id for j in batch]}}}},
                tags={"batch_size": str(len(batch))},
            )
        )
    return requests


def new_objects(
    zone: LandingZone, prefix: str, cursor: ListingCursor
) -> tuple[list[ObjectInfo], list[ObjectInfo]]:
    """Objects under `prefix` the cursor has not seen, oldest first, and the share for this tick."""
    candidates = sorted(
        (obj for obj in zone.list(prefix) if cursor.is_new(obj)),
        key=lambda o: (o.last_modified, o.key),
    )
    return candidates, candidates[: load_settings().sensor_max_runs]


@sensor(
    name="review_sensor",
    jobs=ALL_JOBS,
    minimum_interval_seconds=15,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Reprocesses a job when a reviewer uploads reviews/<job_id>/decisions.csv, and continues "
        "a job waiting in NEEDS_MAPPING when a person uploads reviews/<job_id>/mapping.json."
    ),
)
def review_sensor(
    context: SensorEvaluationContext,
    landing_zone: LandingZoneResource,
    database: DatabaseResource,
) -> SensorResult | SkipReason:
    """Request a run for each new version of a decisions or mapping file."""
    cursor = ListingCursor.parse(context.cursor)
    _, taken = new_objects(landing_zone.get_zone(), REVIEWS_PREFIX, cursor)
    requests: list[RunRequest] = []
    datasets_of: dict[str, str] = {}
    with database.get_engine().connect() as conn:
        for obj in taken:
            parsed = parse_review_key(obj.key)
            if parsed is None:
                continue  # the pipeline's own issues.csv, or other files reviewers keep there
            job_id, file_name = parsed
            job = get_job(conn, job_id)
            if job is None:
                context.log.warning(f"skipped: {obj.key!r} names no import job")
                continue
            if job.status is JobStatus.COMPLETED:
                context.log.warning(f"skipped: {obj.key!r}: job {job_id} is already COMPLETED")
                continue
            if file_name == MAPPING_FILE and job.status is not JobStatus.NEEDS_MAPPING:
                context.log.warning(f"skipped: {obj.key!r}: job {job_id} is {job.status.value}")
                continue
            datasets_of[job_id] = job.dataset
            requests.append(
                RunRequest(
                    job_name=dataset_job_name(
                        import_job.name if file_name == MAPPING_FILE else reprocess_job.name,
                        job.dataset,
                    ),
                    partition_key=job_id,
                    run_key=f"{obj.key}:{obj.etag}",
                    tags={TENANT_TAG: job.tenant_id},
                )
            )
    if not taken:
        return SkipReason("no new decision or mapping files")
    cursor.advance(taken)
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=partition_requests(datasets_of),
        cursor=cursor.dump(),
    )


@sensor(
    name="request_sensor",
    jobs=ALL_JOBS,
    minimum_interval_seconds=5,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Launches the runs that the HTTP service and the review page ask for (reprocess, "
        "continue after a mapping), so that every run goes through Dagster."
    ),
)
def request_sensor(context: SensorEvaluationContext, database: DatabaseResource):
    """Request a run for each new row of run_requests (the cursor is the last request id)."""
    after = int(context.cursor or 0)
    with database.get_engine().connect() as conn:
        requests = run_requests_after(conn, after, load_settings().sensor_max_runs)
    if not requests:
        return SkipReason("no run requests")
    wanted = [r for r in requests if r["job_name"] in (reprocess_job.name, import_job.name)]
    runs = [
        RunRequest(
            job_name=dataset_job_name(r["job_name"], r["dataset"]),
            partition_key=r["job_id"],
            run_key=f"request:{r['request_id']}",
            tags={TENANT_TAG: r["tenant_id"], "request_source": r["source"]},
        )
        for r in wanted
    ]
    return SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=partition_requests({r["job_id"]: r["dataset"] for r in wanted}),
        cursor=str(requests[-1]["request_id"]),
    )


def step_error(event: DagsterEvent) -> str | None:
    """`step: message` for a step failure: a Failure's description, else the exception."""
    data = event.step_failure_data
    if data.user_failure_data is not None and data.user_failure_data.description:
        return f"{event.step_key}: {data.user_failure_data.description}"
    if data.error is not None:
        return f"{event.step_key}: {data.error.message.strip()}"
    return None


def first_step_error(
    events: Iterable[DagsterEvent], checks: Iterable[AssetCheckEvaluation] = ()
) -> str:
    """The first failed step's error of a run; a failed blocking check speaks for itself."""
    failed = [c for c in checks if c.blocking and not c.passed]
    if failed:
        return "; ".join(
            f"check {c.check_name} on {c.asset_key.to_user_string()} failed: {c.description}"
            for c in failed
        )
    return next((e for e in map(step_error, events) if e), "the run failed")


def run_check_evaluations(context: RunFailureSensorContext) -> list[AssetCheckEvaluation]:
    """The asset check evaluations of the failed run, from the instance's event log."""
    records = context.instance.get_records_for_run(
        context.dagster_run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    return [
        r.event_log_entry.dagster_event.event_specific_data
        for r in records
        if r.event_log_entry.dagster_event is not None
    ]


@run_failure_sensor(
    name="import_failure_sensor",
    default_status=DefaultSensorStatus.RUNNING,
    description="Marks an import job FAILED, with the error, when its run fails for good.",
)
def import_failure_sensor(context: RunFailureSensorContext, database: DatabaseResource) -> None:
    """Mark the run's job FAILED unless Dagster will retry the run; after a crash, run again
    the jobs the dead process had not finished (the one in flight alone, once)."""
    run = context.dagster_run
    if run.tags.get("dagster/will_retry") == "true":
        return
    job_ids = [run.tags["dagster/partition"]] if "dagster/partition" in run.tags else []
    job_ids += batch_job_ids(run.run_config)
    if not job_ids:
        return
    failures = list(context.get_step_failure_events())
    checks = run_check_evaluations(context)
    error = first_step_error(failures, checks)
    engine = database.get_engine()
    if failures or any(c.blocking and not c.passed for c in checks):
        # A step raised (its job marked FAILED or retried by the step) or a check failed.
        for job_id in job_ids:
            if mark_failed(engine, job_id, error, only_running=True):
                context.log.info(f"{job_id}: marked FAILED after run {run.run_id} failed")
        return
    # No step failed: the process died (a native abort, an OOM kill). The jobs it had not
    # finished go back; one tenant's hostile file fails only its own job.
    reason = (context.failure_event.message or "the run's process died").strip()
    with engine.begin() as conn:
        # A run of one job had it in flight, whatever its status says.
        alone = [run.tags["dagster/partition"]] if "dagster/partition" in run.tags else []
        outcome = after_crash(conn, job_ids, reason, alone)
        for job_id, status in outcome.items():
            if status is not JobStatus.FAILED:
                job = get_job(conn, job_id)
                request_run(conn, job.tenant_id, job_id, import_job.name, f"crash:{run.run_id}")
    for job_id, status in outcome.items():
        context.log.info(f"{job_id}: {status.value} after run {run.run_id} died ({reason})")
