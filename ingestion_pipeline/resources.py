"""Dagster resources for the two outside systems, and the one function that picks them."""

import warnings
from pathlib import Path

from dagster import ConfigurableResource, EnvVar
from pydantic import PrivateAttr
from sqlalchemy.engine import Engine

from ingestion_pipeline.db.engine import embedded_url, get_engine
from ingestion_pipeline.landing import LandingZone, LocalLandingZone, S3LandingZone
from ingestion_pipeline.settings import Settings, load_settings


class DatabaseResource(ConfigurableResource):
    """PostgreSQL through SQLAlchemy; an embedded server under `data_dir` when `url` is empty."""

    url: str | None = None
    data_dir: str = ".data"

    _embedded: str | None = PrivateAttr(default=None)

    def get_engine(self) -> Engine:
        if self.url:
            return get_engine(self.url)
        # Asking pgserver for the embedded server costs ~10 ms; it is asked again only when the
        # server was stopped since (its pid file is gone), so that it is started once more.
        running = (Path(self.data_dir) / "pgdata" / "postmaster.pid").exists()
        if self._embedded is None or not running:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
                self._embedded = embedded_url(Path(self.data_dir))
        return get_engine(self._embedded)


class LandingZoneResource(ConfigurableResource):
    """Where uploads arrive: `s3://bucket[/prefix]` or a local folder."""

    url: str
    endpoint_url: str | None = None
    region_name: str | None = None
    max_attempts: int = 5

    _zone: LandingZone | None = PrivateAttr(default=None)

    def get_zone(self) -> LandingZone:
        if self._zone is None:
            self._zone = open_landing_zone(
                self.url, self.endpoint_url, self.region_name, self.max_attempts
            )
        return self._zone


def open_landing_zone(
    url: str,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    max_attempts: int = 5,
) -> LandingZone:
    """A LandingZone for `url`; S3 clients come from dagster-aws with retrying config."""
    if url.startswith("s3://"):
        from dagster_aws.s3.utils import construct_s3_client

        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"LANDING_ZONE {url!r} names no bucket")
        client = construct_s3_client(
            max_attempts=max_attempts, region_name=region_name, endpoint_url=endpoint_url
        )
        return S3LandingZone(bucket, prefix, client)
    if "://" in url:
        raise ValueError(f"LANDING_ZONE must be s3://bucket[/prefix] or a folder, got {url!r}")
    return LocalLandingZone(url)


def build_resources(settings: Settings | None = None) -> dict[str, ConfigurableResource]:
    """The resources for the current environment: a DATABASE_URL and S3 for production,
    the embedded PostgreSQL and ./landing otherwise."""
    settings = settings or load_settings()
    database = (
        DatabaseResource(url=EnvVar("DATABASE_URL"), data_dir=str(settings.data_dir))
        if settings.database_url
        else DatabaseResource(data_dir=str(settings.data_dir))
    )
    landing = LandingZoneResource(
        url=settings.landing_zone,
        endpoint_url=settings.aws_endpoint_url,
        region_name=settings.aws_region,
    )
    return {"database": database, "landing_zone": landing}


def database_engine(settings: Settings | None = None) -> Engine:
    """The engine for the current environment, outside a Dagster run (CLI, tests, benchmarks)."""
    settings = settings or load_settings()
    return DatabaseResource(url=settings.database_url, data_dir=str(settings.data_dir)).get_engine()


def landing_zone(settings: Settings | None = None) -> LandingZone:
    """The landing zone for the current environment, outside a Dagster run."""
    settings = settings or load_settings()
    return open_landing_zone(settings.landing_zone, settings.aws_endpoint_url, settings.aws_region)
