"""NDJSON and JSON-array uploads, streamed record by record into the same chunks as CSV."""

from __future__ import annotations

import codecs
import io
import itertools
import json
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import pandas as pd

from ingestion_pipeline.constants import FIRST_NAME, FULL_NAME, LAST_NAME
from ingestion_pipeline.datasets import CONTACTS, Dataset
from ingestion_pipeline.reading.detect import SAMPLE_RECORDS, FileFormat, detect_encoding
from ingestion_pipeline.reading.errors import (
    LineTooLongError,
    UnreadableFileError,
    bounded_lines,
    records_from,
)
from ingestion_pipeline.reading.mapping import (
    ColumnMapping,
    is_contacts,
    require_columns,
    split_full_name,
    suggest_mapping,
)
from ingestion_pipeline.reading.records import Chunk, PrefixedReader, chunk_columns

JSON_EXTENSIONS = (".json", ".ndjson", ".jsonl")
# A JSON-array element larger than this is treated as malformed, so a broken file cannot make
# the reader buffer the rest of it.
MAX_RECORD_CHARS = 16 * 1024 * 1024
_READ_CHARS = 1024 * 1024


def _cell(value: Any) -> str:
    text = _text(value)
    return "" if text is None else text


def _text(value: Any) -> str | None:
    """A JSON value as the text staged for it: numbers and booleans, objects and arrays (a
    JSON-typed field) as their JSON text."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False)


class JsonFile:
    """Reads `[{...}, ...]` or one object per line; the same interface as DelimitedFile."""

    def __init__(
        self, stream: BinaryIO, file_name: str, counter, *, dataset: Dataset = CONTACTS
    ) -> None:
        self.file_name = file_name
        self.dataset = dataset
        self._counter = counter
        head = stream.read(64 * 1024)
        encoding = detect_encoding(head, file_name)
        if encoding not in ("utf-8", "utf-8-sig", "utf-16", "utf-32", "utf-16-le", "utf-16-be"):
            raise UnreadableFileError(
                file_name, f"JSON must be UTF-8, UTF-16 or UTF-32, not {encoding}"
            )
        text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(head)
        first = text.lstrip("\ufeff \t\r\n")[:1]
        if first not in ("[", "{"):
            raise UnreadableFileError(
                file_name, "this is not JSON: expected an array of objects or one object per line"
            )
        self.array = first == "["
        self._text = io.TextIOWrapper(
            io.BufferedReader(PrefixedReader(head, stream)), encoding=encoding, newline=""
        )
        self.records_read = 0
        self._parsed = 0  # records parsed, read-ahead included: errors name the next one
        self.footer: list[str] = []
        # A JSON record has keys, not positions: it is never shorter than a header.
        self.short_records = 0
        self.short_record_rows: list[int] = []
        # The first records are read ahead: their keys are the header the mapping works on.
        self._source = self._records()
        self._head = list(itertools.islice(self._source, SAMPLE_RECORDS))
        keys: dict[str, None] = {}
        for value, _, _ in self._head:
            keys.update(dict.fromkeys(map(str, value or {})))
        header = tuple(keys)
        samples = tuple(
            tuple(_cell(value.get(k)) for k in header) for value, _, _ in self._head if value
        )
        self.format = FileFormat(
            encoding=encoding,
            delimiter="json" if self.array else "ndjson",
            header=header,
            samples=samples,
        )
        self.suggestion = suggest_mapping(header, samples, dataset)
        require_columns(self.file_name, header, samples, dataset, keys=True)
        self.use_mapping(self.suggestion)

    def use_mapping(self, mapping: ColumnMapping) -> None:
        """Read with `mapping` (its columns are the records' keys)."""
        mapping.check_read_as(self.file_name, self.dataset)
        unknown = [
            c for cols in mapping.fields.values() for c in cols if c not in self.format.header
        ]
        if unknown:
            raise UnreadableFileError(
                self.file_name, f"the mapping names key {unknown[0]!r}, not in the records"
            )
        self.mapping = mapping
        self._primary = mapping.stored_columns()

    @property
    def bytes_read(self) -> int:
        return self._counter.count

    def _records(self) -> Iterator[tuple[dict[str, Any] | None, str | None, str | None]]:
        """(object, None, None) per good record; (None, raw text, error) per malformed one."""
        try:
            for record in self._parse():
                self._parsed += 1
                yield record
        except LineTooLongError as exc:
            raise UnreadableFileError(
                self.file_name, str(exc), record=self._parsed + 1, line=exc.line
            ) from exc

    def _parse(self) -> Iterator[tuple[dict[str, Any] | None, str | None, str | None]]:
        if self.array:
            yield from self._array_records()
            return
        for line in bounded_lines(self._text):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield None, line.rstrip("\r\n"), f"not valid JSON ({exc.msg})"
                continue
            if isinstance(value, dict):
                yield value, None, None
            else:
                yield None, line.rstrip("\r\n"), f"a JSON {type(value).__name__}, not an object"

    def _array_records(self) -> Iterator[tuple[dict[str, Any] | None, str | None, str | None]]:
        decoder = json.JSONDecoder()
        buffer = self._text.read(_READ_CHARS).lstrip("\ufeff \t\r\n")
        pos = 1  # past '['
        eof = False
        while True:
            while True:
                while pos < len(buffer) and buffer[pos] in " \t\r\n,":
                    pos += 1
                if pos < len(buffer) or eof:
                    break
                more = self._text.read(_READ_CHARS)
                eof = not more
                buffer, pos = buffer[pos:] + more, 0
            if pos >= len(buffer):
                raise UnreadableFileError(
                    self.file_name, "the JSON array is cut off", record=self._parsed + 1
                )
            if buffer[pos] == "]":
                return
            try:
                value, end = decoder.raw_decode(buffer, pos)
            except json.JSONDecodeError as exc:
                if eof or len(buffer) - pos > MAX_RECORD_CHARS:
                    raise UnreadableFileError(
                        self.file_name,
                        f"invalid JSON ({exc.msg})",
                        record=self._parsed + 1,
                    ) from exc
                more = self._text.read(_READ_CHARS)
                eof = not more
                buffer, pos = buffer[pos:] + more, 0
                continue
            raw = buffer[pos:end]
            pos = end
            if pos > _READ_CHARS:
                buffer, pos = buffer[pos:], 0
            if isinstance(value, dict):
                yield value, None, None
            else:
                yield None, raw, f"a JSON {type(value).__name__}, not an object"

    def chunks(self, chunk_size: int) -> Iterator[Chunk]:
        """Yield chunks of at most `chunk_size` records: chunk_columns(dataset) plus
        parse_error."""
        batch: list[dict[str, Any]] = []
        for value, raw, error in itertools.chain(self._head, self._source):
            batch.append(self._row(value, raw, error))
            if len(batch) >= chunk_size:
                yield self._chunk(batch)
                batch = []
        if batch:
            yield self._chunk(batch)

    def _row(self, value: dict[str, Any] | None, raw: str | None, error: str | None) -> dict:
        self.records_read += 1
        row: dict[str, Any] = {"row_number": self.records_read, "parse_error": error}
        if value is None:
            row.update(dict.fromkeys(self.dataset.field_names))
            row["extra"] = json.dumps({"_raw": raw}, ensure_ascii=False)
            return row
        for name in self.dataset.field_names:
            row[name] = self._first_filled(value, self.mapping.fields.get(name, ()))
        if (
            FULL_NAME in self.mapping.fields
            and is_contacts(self.dataset)
            and (row[FIRST_NAME] is None or row[LAST_NAME] is None)
        ):
            first, last = split_full_name(self._first_filled(value, self.mapping.fields[FULL_NAME]))
            row[FIRST_NAME] = row[FIRST_NAME] or first
            row[LAST_NAME] = row[LAST_NAME] or last
        primary = set(self._primary.values())
        extra = {str(k): item for k, item in value.items() if str(k) not in primary}
        row["extra"] = json.dumps(extra, ensure_ascii=False) if extra else None
        return row

    @staticmethod
    def _first_filled(value: dict[str, Any], keys: Iterable[str]) -> str | None:
        for key in keys:
            text = _text(value.get(key))
            if text is not None and text.strip():
                return text.strip()
        return None

    def _chunk(self, batch: list[dict[str, Any]]) -> Chunk:
        with records_from(self.file_name, batch[0]["row_number"]):
            frame = pd.DataFrame(batch, columns=[*chunk_columns(self.dataset), "parse_error"])
            for name in (*self.dataset.field_names, "extra", "parse_error"):
                frame[name] = frame[name].astype("str")
        return Chunk(frame=frame, bytes_read=self.bytes_read)
