"""The raw upload: one object version in the landing zone, and how its columns map to fields."""

from collections.abc import Iterator

from dagster import (
    AssetExecutionContext,
    AssetObservation,
    Failure,
    MaterializeResult,
    MetadataValue,
)

from ingestion_pipeline.assets.common import (
    failing_job,
    import_step,
    job_for,
    job_metadata,
    log_json,
)
from ingestion_pipeline.constants import JobStatus
from ingestion_pipeline.importer import (
    MappingDecision,
    decide_mapping,
    mark_processing,
    record_mapping,
    refuse_persons_file,
)
from ingestion_pipeline.resources import DatabaseResource, LandingZoneResource
from ingestion_pipeline.review_files import MappingFileError, mapping_key


def mapping_metadata(decision: MappingDecision) -> dict:
    """What the UI shows of a mapping: each field's columns and how they were decided."""
    mapping = decision.mapping
    fmt = decision.file_format
    layout = decision.layout
    metadata = {
        "mapping": MetadataValue.md(
            "| field | columns | decided by |\n| --- | --- | --- |\n"
            + "\n".join(
                f"| {name} | {', '.join(cols)} | {mapping.methods.get(name, '')} |"
                for name, cols in mapping.fields.items()
            )
        ),
        "mapping_source": decision.source,
        "export_profile": mapping.profile or "",
        "unmapped_fields": ", ".join(mapping.unmapped),
        "header_signature": layout["signature"],
        "lines_skipped_before_header": len(fmt.preamble),
    }
    if fmt.preamble:
        metadata["skipped_before_header"] = MetadataValue.json(layout["skipped_before_header"])
    if fmt.sheet:
        metadata["sheet"] = fmt.sheet
    return metadata


@import_step(
    "raw_upload",
    output_required=False,
    kinds={"s3", "csv"},
)
def raw_upload(
    context: AssetExecutionContext,
    database: DatabaseResource,
    landing_zone: LandingZoneResource,
) -> Iterator[MaterializeResult]:
    """The uploaded file of one import job, with its detected layout and mapping;
    left unmaterialized while the job waits for a person to confirm the mapping."""
    engine = database.get_engine()
    job, route = job_for(context, engine)
    metadata = job_metadata(job, route)
    metadata["etag"] = job.source_etag
    if not route.inspects_upload:
        log_json(context, job, "raw_upload", event="skipped", route=route.value)
        yield MaterializeResult(metadata={**metadata, "status": job.status.value})
        return

    zone = landing_zone.get_zone()
    with failing_job(engine, job.job_id, unstage=True):
        info = zone.stat(job.source_key)
        try:
            decision = decide_mapping(engine, zone, job)
        except MappingFileError as exc:
            # The file is fine; the person's mapping is not: the job keeps waiting.
            refuse_persons_file(engine, job.job_id, str(exc))
            raise Failure(
                description=str(exc),
                metadata={"job_id": job.job_id, "mapping_file": mapping_key(job.job_id)},
                allow_retries=False,
            ) from exc
        record_mapping(engine, job.job_id, decision)
    fmt = decision.file_format
    details = mapping_metadata(decision)
    if decision.needs_person:
        log_json(
            context,
            job,
            "raw_upload",
            event="needs_mapping",
            unmapped=decision.mapping.unmapped,
            header=list(fmt.header),
        )
        context.log_event(
            AssetObservation(
                asset_key=context.asset_key,
                partition=context.partition_key,
                metadata={
                    **metadata,
                    **details,
                    "status": JobStatus.NEEDS_MAPPING.value,
                    "samples": MetadataValue.json(decision.layout["samples"]),
                    "next_step": (
                        f"ingestion-pipeline map {job.job_id} FIELD=COLUMN ..., or upload "
                        f"{mapping_key(job.job_id)}"
                    ),
                },
            )
        )
        return
    mark_processing(engine, job.job_id)
    log_json(
        context,
        job,
        "raw_upload",
        event="inspected",
        encoding=fmt.encoding,
        delimiter=fmt.delimiter_name,
        columns=len(fmt.header),
        mapping_source=decision.source,
        size_bytes=info.size if info else 0,
    )
    yield MaterializeResult(
        metadata={
            **metadata,
            **details,
            "location": zone.describe(job.source_key),
            "size_bytes": info.size if info else 0,
            "encoding": fmt.encoding,
            "delimiter": fmt.delimiter_name,
            "column_count": len(fmt.header),
            "columns": MetadataValue.json(
                {"header": list(fmt.header), "fields": decision.mapping.fields}
            ),
            "status": "PROCESSING",
        }
    )
