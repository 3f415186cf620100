"""The one place that turns environment variables into settings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CHUNK_SIZE = 25_000
DEFAULT_SENSOR_MAX_RUNS = 200
DEFAULT_BATCH_SIZE = 50
DEFAULT_MAX_UPLOAD_BYTES = 1024**3
DEFAULT_PART_SIZE = 8 * 1024**2


def project_root() -> Path:
    """The checkout this package runs from, or the working directory for an installed copy."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "pyproject.toml").exists() else Path.cwd()


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline reads from the environment, with its defaults applied."""

    database_url: str | None
    dagster_postgres_url: str | None
    landing_zone: str
    data_dir: Path
    chunk_size: int
    aws_endpoint_url: str | None
    aws_region: str | None
    sensor_max_runs: int
    # A sensor tick with more new uploads than this sends them in batch runs of this many.
    batch_size: int = DEFAULT_BATCH_SIZE
    # Where the lake's data files go (a folder or s3://bucket/prefix); empty: no lake.
    lake_warehouse: str | None = None
    # The Iceberg catalog: an http(s) REST catalog, or a SQLAlchemy PostgreSQL URL; empty: the
    # project's own database.
    lake_catalog_uri: str | None = None
    # The HTTP service: the largest upload it takes in one request, the part size of resumable
    # sessions (S3 wants 5 MiB or more), and how webhooks are retried.
    api_max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    api_part_size: int = DEFAULT_PART_SIZE
    webhook_retry_seconds: float = 2.0
    webhook_max_attempts: int = 12
    # The warm lane: uploads up to this many bytes (and reprocessing of jobs up to this many
    # rows) are run by `ingestion-pipeline worker` processes in-process, woken at once; 0 sends
    # every job through the sensors and the run queue. A claim is held for the lease; a worker
    # that dies loses its jobs to another when the lease runs out.
    warm_max_bytes: int = 16 * 1024 * 1024
    warm_max_rows: int = 50_000
    warm_lease_seconds: int = 60
    # A small job no worker claimed for this long (none running) goes to the run queue.
    warm_fallback_seconds: int = 30

    @property
    def embedded_database(self) -> bool:
        return not self.database_url


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from `environ` (default: the process environment)."""
    env = os.environ if environ is None else environ
    root = project_root()
    data_dir = Path(env.get("INGESTION_DATA_DIR") or root / ".data")
    landing = env.get("LANDING_ZONE") or str(root / "landing")
    return Settings(
        database_url=env.get("DATABASE_URL") or None,
        dagster_postgres_url=env.get("DAGSTER_POSTGRES_URL") or None,
        landing_zone=landing,
        data_dir=data_dir,
        chunk_size=_positive_int(env, "IMPORT_CHUNK_SIZE", DEFAULT_CHUNK_SIZE),
        aws_endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
        aws_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        sensor_max_runs=_positive_int(env, "UPLOAD_SENSOR_MAX_RUNS", DEFAULT_SENSOR_MAX_RUNS),
        batch_size=_positive_int(env, "UPLOAD_BATCH_SIZE", DEFAULT_BATCH_SIZE),
        lake_warehouse=env.get("LAKE_WAREHOUSE") or None,
        lake_catalog_uri=env.get("LAKE_CATALOG_URI") or None,
        api_max_upload_bytes=_positive_int(env, "API_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES),
        api_part_size=_positive_int(env, "API_PART_SIZE", DEFAULT_PART_SIZE),
        webhook_retry_seconds=float(env.get("WEBHOOK_RETRY_SECONDS") or 2.0),
        webhook_max_attempts=_positive_int(env, "WEBHOOK_MAX_ATTEMPTS", 12),
        warm_max_bytes=_whole(env, "WARM_LANE_MAX_BYTES", 16 * 1024 * 1024),
        warm_max_rows=_whole(env, "WARM_LANE_MAX_ROWS", 50_000),
        warm_lease_seconds=_positive_int(env, "WARM_LANE_LEASE_SECONDS", 60),
        warm_fallback_seconds=_whole(env, "WARM_LANE_FALLBACK_SECONDS", 30),
    )


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    return _whole(env, name, default, minimum=1)


def _whole(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    """A whole number of at least `minimum` (0 turns a feature off where that is allowed)."""
    raw = env.get(name) or str(default)
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


class StorageSettingsError(ValueError):
    """Settings that leave Dagster's storage undecided."""


def check_storage_settings(settings: Settings) -> None:
    """Dagster's tables (and its own alembic_version) need a database apart from ours: with
    DATABASE_URL, DAGSTER_POSTGRES_URL must be set too."""
    if settings.database_url and not settings.dagster_postgres_url:
        raise StorageSettingsError(
            "DAGSTER_POSTGRES_URL is not set: with DATABASE_URL set, give Dagster's storage a "
            "database of its own (see README, Deploying)"
        )
