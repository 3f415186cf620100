"""The Dagster instance the CLI shares with `dagster dev`."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

from dagster import DagsterInstance

from ingestion_pipeline.db.engine import embedded_url, normalize_url
from ingestion_pipeline.settings import Settings, check_storage_settings, project_root

DAGSTER_DATABASE = "dagster"


def dagster_storage_url(settings: Settings) -> str:
    """Where Dagster keeps runs and events: DAGSTER_POSTGRES_URL, or the embedded server."""
    check_storage_settings(settings)
    if settings.dagster_postgres_url:
        return normalize_url(settings.dagster_postgres_url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        return embedded_url(settings.data_dir, database=DAGSTER_DATABASE)


def ensure_dagster_home(settings: Settings) -> Path:
    """Use $DAGSTER_HOME, or <data dir>/dagster_home with the project's dagster.yaml in it.

    When the instance's dagster.yaml reads DAGSTER_POSTGRES_URL and it is not set, it is set
    here for this process (the embedded server's `dagster` database by default).
    """
    if os.environ.get("DAGSTER_HOME"):
        home = Path(os.environ["DAGSTER_HOME"])
    else:
        home = (settings.data_dir / "dagster_home").resolve()
        home.mkdir(parents=True, exist_ok=True)
        config = project_root() / "dagster.yaml"
        if config.exists():
            target = home / "dagster.yaml"
            if not target.exists() or target.read_bytes() != config.read_bytes():
                shutil.copyfile(config, target)
        os.environ["DAGSTER_HOME"] = str(home)
    instance_config = home / "dagster.yaml"
    if instance_config.exists() and "DAGSTER_POSTGRES_URL" in instance_config.read_text():
        os.environ["DAGSTER_POSTGRES_URL"] = dagster_storage_url(settings)
    return home


def get_instance(settings: Settings) -> DagsterInstance:
    """The persistent instance, so runs started here show in the UI."""
    ensure_dagster_home(settings)
    return DagsterInstance.get()
