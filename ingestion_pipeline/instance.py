"""The Dagster instance the CLI shares with `dagster dev`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dagster import DagsterInstance

from ingestion_pipeline.settings import Settings, project_root


def ensure_dagster_home(settings: Settings) -> Path:
    """Use $DAGSTER_HOME, or <data dir>/dagster_home with the project's dagster.yaml in it."""
    if os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"])
    home = (settings.data_dir / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = project_root() / "dagster.yaml"
    if config.exists():
        target = home / "dagster.yaml"
        if not target.exists() or target.read_bytes() != config.read_bytes():
            shutil.copyfile(config, target)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def get_instance(settings: Settings) -> DagsterInstance:
    """The persistent instance, so runs started here show in the UI."""
    ensure_dagster_home(settings)
    return DagsterInstance.get()
