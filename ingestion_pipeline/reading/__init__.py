"""Reading uploads of any declared dataset as people export them. Plain Python: no Dagster."""

from ingestion_pipeline.reading.detect import FileFormat, detect_format
from ingestion_pipeline.reading.errors import UnreadableFileError
from ingestion_pipeline.reading.jsonl import JsonFile
from ingestion_pipeline.reading.mapping import canonical_field
from ingestion_pipeline.reading.open import UploadFile, open_upload
from ingestion_pipeline.reading.records import Chunk, DelimitedFile, chunk_columns

__all__ = [
    "Chunk",
    "DelimitedFile",
    "FileFormat",
    "JsonFile",
    "UnreadableFileError",
    "UploadFile",
    "canonical_field",
    "chunk_columns",
    "detect_format",
    "open_upload",
]
