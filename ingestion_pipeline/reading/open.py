"""Pick the reader for an upload: gzip or not, a workbook, JSON or delimited text."""

from __future__ import annotations

import gzip
import io
from pathlib import PurePosixPath
from typing import BinaryIO

from ingestion_pipeline.datasets import CONTACTS, Dataset
from ingestion_pipeline.reading.errors import UnreadableFileError
from ingestion_pipeline.reading.jsonl import JSON_EXTENSIONS, JsonFile
from ingestion_pipeline.reading.records import ByteCounter, DelimitedFile
from ingestion_pipeline.reading.spreadsheet import SPREADSHEET_EXTENSIONS, SpreadsheetFile
from ingestion_pipeline.reading.vcard import VCARD_EXTENSIONS, VCardFile

GZIP_MAGIC = b"\x1f\x8b"
# A compressed upload may expand to this many bytes at most, and past DECOMPRESSED_FREE bytes
# to at most MAX_RATIO times the compressed bytes read: exports compress 5-20x, a bomb 1000x.
MAX_DECOMPRESSED = 20 * 1024**3
DECOMPRESSED_FREE = 64 * 1024**2
MAX_RATIO = 100


class DecompressionLimit(ByteCounter):
    """A decompressed stream that stops with an UnreadableFileError past the size or ratio
    limits, while it is being read (nothing past the limit is ever held)."""

    def __init__(self, inner: BinaryIO, compressed: ByteCounter, file_name: str) -> None:
        super().__init__(inner)
        self._compressed = compressed
        self._file_name = file_name

    def readinto(self, buffer) -> int:  # type: ignore[override]
        n = super().readinto(buffer)
        ratio = self.count / max(1, self._compressed.count)
        if self.count > MAX_DECOMPRESSED or (self.count > DECOMPRESSED_FREE and ratio > MAX_RATIO):
            raise UnreadableFileError(
                self._file_name,
                f"decompresses to more than {self.count // 1024**2} MiB from "
                f"{self._compressed.count // 1024} KiB ({ratio:.0f}x): a compression bomb, not "
                f"an export (limits: {MAX_RATIO}x past {DECOMPRESSED_FREE // 1024**2} MiB, "
                f"{MAX_DECOMPRESSED // 1024**3} GiB in all)",
            )
        return n


UploadFile = DelimitedFile | JsonFile | SpreadsheetFile | VCardFile


def open_upload(stream: BinaryIO, file_name: str, dataset: Dataset = CONTACTS) -> UploadFile:
    """Detect the format of `stream` and return a reader over its records of `dataset`.

    A gzip stream (by its magic bytes) is decompressed on the fly; the name without `.gz`
    then says whether it holds a workbook, vCards (contacts only), JSON or delimited text.
    """
    counter = ByteCounter(stream)
    buffered = io.BufferedReader(counter, buffer_size=1024 * 1024)
    inner_name = file_name
    source: BinaryIO = buffered
    if buffered.peek(2)[:2] == GZIP_MAGIC:
        inflated = DecompressionLimit(
            gzip.GzipFile(fileobj=buffered, mode="rb"), counter, file_name
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
