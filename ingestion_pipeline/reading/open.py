"""Pick the reader for an upload: gzip or not, a workbook, JSON or delimited text."""

from __future__ import annotations

import gzip
import io
from pathlib import PurePosixPath
from typing import BinaryIO

from ingestion_pipeline.reading.jsonl import JSON_EXTENSIONS, JsonContactFile
from ingestion_pipeline.reading.records import ByteCounter, ContactFile
from ingestion_pipeline.reading.spreadsheet import SPREADSHEET_EXTENSIONS, SpreadsheetFile
from ingestion_pipeline.reading.vcard import VCARD_EXTENSIONS, VCardFile

GZIP_MAGIC = b"\x1f\x8b"

UploadFile = ContactFile | JsonContactFile | SpreadsheetFile | VCardFile


def open_contact_file(stream: BinaryIO, file_name: str) -> UploadFile:
    """Detect the format of `stream` and return a reader over its records.

    A gzip stream (by its magic bytes) is decompressed on the fly; the name without `.gz`
    then says whether it holds a workbook, vCards, JSON or delimited text.
    """
    counter = ByteCounter(stream)
    buffered = io.BufferedReader(counter, buffer_size=1024 * 1024)
    inner_name = file_name
    source: BinaryIO = buffered
    if buffered.peek(2)[:2] == GZIP_MAGIC:
        source = gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[assignment]
        if inner_name.lower().endswith(".gz"):
            inner_name = inner_name[:-3]
    suffix = PurePosixPath(inner_name).suffix.lower()
    if suffix in JSON_EXTENSIONS:
        return JsonContactFile(source, file_name, counter)
    if suffix in SPREADSHEET_EXTENSIONS:
        return SpreadsheetFile(source, file_name, counter)
    if suffix in VCARD_EXTENSIONS:
        return VCardFile(source, file_name, counter)
    return ContactFile(source, file_name, counter)
