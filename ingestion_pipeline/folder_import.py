"""A whole folder imported in one command (`ingestion-pipeline import DIR --tenant T`).

Which dataset a file holds is read from where it is, never guessed: a folder named after a
declared dataset (`DIR/orders/...`, as in the landing zone's uploads/<tenant>/<dataset>/), else
a file name that starts with one (`orders_2025.ndjson`, `order_items.csv`), else the dataset
the command was given (`--dataset`); a file that names none is listed and skipped. Every file
is registered first, then all of them are imported together in one batch run, parents before
children, so the order of the files does not matter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePath
from typing import Any

from sqlalchemy.engine import Engine

from ingestion_pipeline.constants import TENANT_TAG, JobStatus
from ingestion_pipeline.datasets import DATASETS, LOAD_ORDER, dataset_named
from ingestion_pipeline.db.import_jobs import ImportJob, NewJob, get_job, register_jobs
from ingestion_pipeline.landing import (
    InvalidKeyError,
    LandingZone,
    job_id_for,
    put_file,
    upload_key,
)
from ingestion_pipeline.settings import Settings

# What may follow a dataset's name at the start of a file name: `orders_2025`, `orders-may`,
# `orders.csv`, `orders 2025`.
NAME_SEPARATORS = "_-. "
NAMES_NO_DATASET = (
    "names no dataset: put it in a folder named after one ({}), start its name with one "
    "(orders_2025.csv), or give --dataset"
)


@dataclass(frozen=True)
class FolderFile:
    """One file under the folder: its dataset and how that was decided, or why it is skipped."""

    path: Path
    relative: str
    dataset: str | None
    decided_by: str
    skipped: str | None = None


def dataset_of(relative: PurePath) -> tuple[str | None, str]:
    """The dataset a file names by where it is: (dataset, how), or (None, "") if it names none.

    The innermost folder named after a declared dataset wins; then the longest declared name
    the file name starts with, followed by a separator or nothing else.
    """
    for folder in reversed(relative.parent.parts):
        if folder in DATASETS:
            return folder, f"folder {folder}/"
    name = relative.name.lower()
    for dataset in sorted(DATASETS, key=len, reverse=True):
        rest = name[len(dataset) :]
        if name.startswith(dataset) and (not rest or rest[0] in NAME_SEPARATORS):
            return dataset, "file name"
    return None, ""


def folder_files(root: Path, tenant: str, fallback: str | None = None) -> list[FolderFile]:
    """Every file under `root` (hidden ones left out), in path order, with its dataset."""
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        dataset, how = dataset_of(relative)
        if dataset is None and fallback is not None:
            dataset, how = fallback, "--dataset"
        skipped = None
        if dataset is None:
            skipped = NAMES_NO_DATASET.format(", ".join(f"{d}/" for d in LOAD_ORDER))
        else:
            try:
                upload_key(tenant, path.name, dataset)
            except InvalidKeyError as exc:
                skipped = str(exc)
        found.append(FolderFile(path, relative.as_posix(), dataset, how, skipped))
    return found


def in_load_order(files: list[FolderFile]) -> list[FolderFile]:
    """The files to import, parents' datasets before their children's (then by path)."""
    wanted = [f for f in files if f.skipped is None]
    return sorted(wanted, key=lambda f: (LOAD_ORDER.index(f.dataset or ""), f.relative))


def plan(engine: Engine, tenant: str, file: FolderFile) -> dict[str, Any]:
    """What importing `file` would do, reading only its header and samples: its dataset, its
    format, and the mapping the run would use (remembered for the tenant, or automatic) and
    whether it would wait for a person to confirm it. Nothing is written."""
    from ingestion_pipeline.importer import choose_mapping
    from ingestion_pipeline.reading import UnreadableFileError, open_upload
    from ingestion_pipeline.reading.open import format_name

    assert file.dataset is not None
    planned: dict[str, Any] = {
        "file": file.relative,
        "dataset": file.dataset,
        "decided_by": file.decided_by,
    }
    try:
        with file.path.open("rb") as stream:
            reader = open_upload(stream, file.path.name, dataset_named(file.dataset))
            fmt, suggestion = reader.format, reader.suggestion
            planned["format"] = format_name(reader, file.path.name)
    except UnreadableFileError as exc:
        return {**planned, "error": str(exc)}
    job = provisional_job(tenant, file)
    decision = choose_mapping(engine, job, fmt, suggestion)
    mapping = decision.mapping
    planned.update(
        {
            "encoding": fmt.encoding,
            "delimiter": fmt.delimiter_name if planned["format"] in ("csv", "tsv") else None,
            "sheet": fmt.sheet,
            "header": list(fmt.header),
            "mapping_source": decision.source,
            "mapping": {name: list(cols) for name, cols in mapping.fields.items()},
            "decided": dict(mapping.methods),
            "unmapped": list(mapping.unmapped),
            "needs_mapping": decision.needs_person,
            "described": mapping.describe(),
        }
    )
    return planned


def provisional_job(tenant: str, file: FolderFile) -> ImportJob:
    """The job `file` would be, before it is registered (for the mapping rules)."""
    now = datetime.now(timezone.utc)
    dataset = file.dataset or ""
    return ImportJob(
        job_id="(dry run)",
        tenant_id=tenant,
        source_key=upload_key(tenant, file.path.name, dataset),
        source_etag="",
        file_name=file.path.name,
        dataset=dataset,
        status=JobStatus.PENDING,
        total_rows=None,
        processed_rows=0,
        issue_count=0,
        contacts_created=0,
        rows_inserted=0,
        rows_updated=0,
        rows_unchanged=0,
        encoding=None,
        delimiter=None,
        error=None,
        created_at=now,
        updated_at=now,
        started_at=None,
        finished_at=None,
        mapping=None,
        layout=None,
    )


def register(
    engine: Engine, zone: LandingZone, tenant: str, files: list[FolderFile]
) -> list[ImportJob]:
    """Put every file into the landing zone (uploads/<tenant>/[<dataset>/]<name>) and register
    its job, in the order given; a file already imported finds its job again."""
    new = []
    for file in files:
        assert file.dataset is not None
        key = upload_key(tenant, file.path.name, file.dataset)
        info = put_file(zone, key, file.path)
        job_id = job_id_for(tenant, key, info.etag)
        new.append(NewJob(job_id, tenant, key, info.etag, file.path.name, file.dataset, info.size))
    with engine.begin() as conn:
        register_jobs(conn, new)
        jobs = [get_job(conn, n.job_id) for n in new]
    return [j for j in jobs if j is not None]


def run_batch(settings: Settings, tenant: str, jobs: list[ImportJob], log_level: str) -> bool:
    """Import `jobs` in this order in one import_batch_job run on the instance (in-process, as a
    warm-lane worker runs it); whether the run succeeded. Each job's outcome is its status."""
    from ingestion_pipeline.batch import BATCH_OP, STEP_LOG, import_batch_job, pooled_storage
    from ingestion_pipeline.definitions import build_definitions
    from ingestion_pipeline.instance import get_instance
    from ingestion_pipeline.partitions import partitions_name
    from ingestion_pipeline.resources import build_resources

    waiting = [j for j in jobs if j.status is not JobStatus.COMPLETED]
    if not waiting:
        return True
    instance = get_instance(settings)
    pooled_storage(instance)
    for dataset in LOAD_ORDER:
        keys = [j.job_id for j in waiting if j.dataset == dataset]
        if keys:
            instance.add_dynamic_partitions(partitions_name(dataset), keys)
    job_def = build_definitions(build_resources(settings)).resolve_job_def(import_batch_job.name)
    # The steps' JSON lines (a batch writes them to stderr) only with --verbose, as for a file.
    STEP_LOG.setLevel(logging.INFO if log_level == "INFO" else logging.WARNING)
    result = job_def.execute_in_process(
        run_config={
            "ops": {BATCH_OP: {"config": {"job_ids": [j.job_id for j in waiting]}}},
            "loggers": {"console": {"config": {"log_level": log_level}}},
        },
        instance=instance,
        tags={TENANT_TAG: tenant, "batch_size": str(len(waiting))},
        raise_on_error=False,
    )
    return result.success
