"""Settings come from the environment, with defaults and clear errors."""

from __future__ import annotations

import pytest

from ingestion_pipeline.db.engine import normalize_url
from ingestion_pipeline.settings import load_settings


def test_defaults_are_embedded_database_and_local_landing_folder():
    settings = load_settings({})
    assert settings.embedded_database
    assert settings.landing_zone.endswith("landing")
    assert settings.chunk_size == 25_000
    assert settings.sensor_max_runs == 200


def test_values_are_read_from_the_environment():
    settings = load_settings(
        {
            "DATABASE_URL": "postgresql://u@db/x",
            "LANDING_ZONE": "s3://bucket/prefix",
            "IMPORT_CHUNK_SIZE": "1000",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        }
    )
    assert not settings.embedded_database
    assert (settings.landing_zone, settings.chunk_size) == ("s3://bucket/prefix", 1000)
    assert settings.aws_endpoint_url == "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IMPORT_CHUNK_SIZE": "lots"}, "IMPORT_CHUNK_SIZE must be a whole number, got 'lots'"),
        ({"UPLOAD_SENSOR_MAX_RUNS": "0"}, "UPLOAD_SENSOR_MAX_RUNS must be at least 1, got 0"),
    ],
)
def test_bad_values_are_refused_by_name(env, message):
    with pytest.raises(ValueError, match=message):
        load_settings(env)


def test_bare_postgres_urls_are_accepted_and_others_refused():
    assert normalize_url("postgresql://u:p@h:5432/d") == "postgresql+psycopg2://u:p@h:5432/d"
    assert normalize_url("postgres://u@h/d") == "postgresql+psycopg2://u@h/d"
    with pytest.raises(ValueError, match="must be a PostgreSQL URL"):
        normalize_url("mysql://u@h/d")
