"""Reading contact files as people export them. Plain Python: no Dagster import."""

from ingestion_pipeline.reading.detect import FileFormat, detect_format
from ingestion_pipeline.reading.errors import UnreadableFileError
from ingestion_pipeline.reading.jsonl import JsonContactFile
from ingestion_pipeline.reading.mapping import canonical_field
from ingestion_pipeline.reading.open import open_contact_file
from ingestion_pipeline.reading.records import CHUNK_COLUMNS, Chunk, ContactFile

__all__ = [
    "CHUNK_COLUMNS",
    "Chunk",
    "ContactFile",
    "FileFormat",
    "JsonContactFile",
    "UnreadableFileError",
    "canonical_field",
    "detect_format",
    "open_contact_file",
]
