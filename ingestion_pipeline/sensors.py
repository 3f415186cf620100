"""Sensors: every new upload becomes an import job partition and one run."""

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from ingestion_pipeline.constants import TENANT_TAG, UPLOADS_PREFIX
from ingestion_pipeline.db.jobs import NewJob, register_jobs
from ingestion_pipeline.jobs import import_job
from ingestion_pipeline.landing import InvalidKeyError, ObjectInfo, job_id_for, parse_upload_key
from ingestion_pipeline.partitions import import_jobs_partitions_def
from ingestion_pipeline.resources import DatabaseResource, LandingZoneResource
from ingestion_pipeline.settings import load_settings

# LastModified has one-second resolution and listings can lag writes: objects this close to
# the cursor are looked at again and recognised by key and ETag.
LOOKBACK = timedelta(seconds=10)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass
class UploadCursor:
    """High-water mark of LastModified plus the objects seen within LOOKBACK of it."""

    since: datetime = _EPOCH
    recent: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None) -> "UploadCursor":
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
        return token(obj) not in self.recent

    def advance(self, taken: list[ObjectInfo]) -> None:
        for obj in taken:
            self.since = max(self.since, obj.last_modified)
            self.recent[token(obj)] = obj.last_modified.timestamp()
        horizon = (self.since - LOOKBACK).timestamp()
        self.recent = {k: ts for k, ts in self.recent.items() if ts >= horizon}


def token(obj: ObjectInfo) -> str:
    """The identity of one object version; also the run key, so a version runs once."""
    return f"{obj.key}:{obj.etag}"


@sensor(
    name="upload_sensor",
    job=import_job,
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
    cursor = UploadCursor.parse(context.cursor)
    candidates = sorted(
        (obj for obj in landing_zone.get_zone().list(UPLOADS_PREFIX) if cursor.is_new(obj)),
        key=lambda o: (o.last_modified, o.key),
    )
    taken = candidates[: load_settings().sensor_max_runs]
    if not taken:
        return SkipReason("no new uploads")

    jobs: dict[str, NewJob] = {}
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
        jobs[job_id] = NewJob(job_id, parsed.tenant_id, obj.key, obj.etag, parsed.file_name)

    with database.get_engine().begin() as conn:
        register_jobs(conn, jobs.values())
    cursor.advance(taken)
    if len(candidates) > len(taken):
        context.log.info(f"{len(candidates) - len(taken)} more upload(s) left for the next tick")
    return SensorResult(
        run_requests=[
            RunRequest(
                partition_key=job.job_id,
                run_key=f"{job.source_key}:{job.source_etag}",
                tags={TENANT_TAG: job.tenant_id},
            )
            for job in jobs.values()
        ],
        dynamic_partitions_requests=[import_jobs_partitions_def.build_add_request(list(jobs))]
        if jobs
        else [],
        cursor=cursor.dump(),
    )
