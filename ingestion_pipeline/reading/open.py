"""Pick the reader for an upload: gzip or not, a workbook, JSON or delimited text."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import PurePosixPath
from typing import BinaryIO

from ingestion_pipeline.datasets import CONTACTS, Dataset
from ingestion_pipeline.reading.jsonl import JSON_EXTENSIONS, JsonFile
from ingestion_pipeline.reading.limits import ExpansionLimit
from ingestion_pipeline.reading.records import ByteCounter, DelimitedFile
from ingestion_pipeline.reading.spreadsheet import SPREADSHEET_EXTENSIONS, SpreadsheetFile
from ingestion_pipeline.reading.vcard import VCARD_EXTENSIONS, VCardFile

GZIP_MAGIC = b"\x1f\x8b"
# For the tests of crash isolation only: a file whose name ends with this value makes the
# process abort as a native reader would (unset everywhere else).
ABORT_ON_ENV = "INGESTION_PIPELINE_TEST_ABORT_ON"


UploadFile = DelimitedFile | JsonFile | SpreadsheetFile | VCardFile


def format_name(reader: UploadFile, file_name: str) -> str:
    """What a person calls the file's format: csv, tsv, json, ndjson, vcf, or the workbook's
    extension (xlsx, xlsm, xls, ods)."""
    if isinstance(reader, DelimitedFile):
        return "tsv" if reader.format.delimiter == "\t" else "csv"
    if isinstance(reader, JsonFile):
        return "json" if reader.array else "ndjson"
    if isinstance(reader, VCardFile):
        return "vcf"
    name = file_name[:-3] if file_name.lower().endswith(".gz") else file_name
    return PurePosixPath(name).suffix.lower().lstrip(".")


def open_upload(stream: BinaryIO, file_name: str, dataset: Dataset = CONTACTS) -> UploadFile:
    """Detect the format of `stream` and return a reader over its records of `dataset`.

    A gzip stream (by its magic bytes) is decompressed on the fly; the name without `.gz`
    then says whether it holds a workbook, vCards (contacts only), JSON or delimited text.
    """
    abort_on = os.environ.get(ABORT_ON_ENV)
    if abort_on and file_name.endswith(abort_on):
        os.abort()
    counter = ByteCounter(stream)
    buffered = io.BufferedReader(counter, buffer_size=1024 * 1024)
    inner_name = file_name
    source: BinaryIO = buffered
    if buffered.peek(2)[:2] == GZIP_MAGIC:
        inflated = ExpansionLimit(
            gzip.GzipFile(fileobj=buffered, mode="rb"),  # type: ignore[arg-type]
            lambda: counter.count,
            file_name,
        )
        source = io.BufferedReader(inflated, buffer_size=1024 * 1024)  # type: ignore[assignment]
        if inner_name.lower().endswith(".gz"):
            inner_name = inner_name[:-3]
    suffix = PurePosixPath(inner_name).suffix.lower()
    if suffix in JSON_EXTENSIONS:
        return JsonFile(source, file_name, counter, dataset=dataset)
    if suffix in SPREADSHEET_EXTENSIONS:
        return SpreadsheetFile(source, file_name, counter, dataset=dataset)
    if suffix in VCARD_EXTENSIONS:
        return VCardFile(source, file_name, counter, dataset=dataset)
    return DelimitedFile(source, file_name, counter, dataset=dataset)
