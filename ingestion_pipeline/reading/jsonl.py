"""NDJSON and JSON-array uploads, streamed record by record into the same chunks as CSV."""

from __future__ import annotations

import codecs
import io
import json
from collections.abc import Iterator
from typing import Any, BinaryIO

import pandas as pd

from ingestion_pipeline.constants import CANONICAL_FIELDS, EMAIL
from ingestion_pipeline.reading.detect import FileFormat, canonical_field, detect_encoding
from ingestion_pipeline.reading.errors import UnreadableFileError, records_from
from ingestion_pipeline.reading.records import CHUNK_COLUMNS, Chunk, PrefixedReader

JSON_EXTENSIONS = (".json", ".ndjson", ".jsonl")
# A JSON-array element larger than this is treated as malformed, so a broken file cannot make
# the reader buffer the rest of it.
MAX_RECORD_CHARS = 16 * 1024 * 1024
_READ_CHARS = 1024 * 1024


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False)


class JsonContactFile:
    """Reads `[{...}, ...]` or one object per line; the same interface as ContactFile."""

    def __init__(self, stream: BinaryIO, file_name: str, counter) -> None:
        self.file_name = file_name
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
        self.format = FileFormat(
            encoding=encoding,
            delimiter="json" if self.array else "ndjson",
            header=(),
            fields={},
        )

    @property
    def bytes_read(self) -> int:
        return self._counter.count

    def _records(self) -> Iterator[tuple[dict[str, Any] | None, str | None, str | None]]:
        """(object, None, None) per good record; (None, raw text, error) per malformed one."""
        if self.array:
            yield from self._array_records()
            return
        for line in self._text:
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
                    self.file_name, "the JSON array is cut off", record=self.records_read + 1
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
                        record=self.records_read + 1,
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

    def _check_first(self, record: dict[str, Any]) -> None:
        claims: dict[str, list[str]] = {}
        for key in record:
            name = canonical_field(str(key))
            if name:
                claims.setdefault(name, []).append(str(key))
        shown = ", ".join(map(str, list(record)[:12]))
        if EMAIL not in claims:
            raise UnreadableFileError(
                self.file_name, f"no email field found; the first record has: {shown}"
            )
        doubled = {n: keys for n, keys in claims.items() if len(keys) > 1}
        if doubled:
            detail = "; ".join(f"{n}: {', '.join(k)}" for n, k in doubled.items())
            raise UnreadableFileError(
                self.file_name, f"several keys claim the same field ({detail})"
            )

    def chunks(self, chunk_size: int) -> Iterator[Chunk]:
        """Yield chunks of at most `chunk_size` records with CHUNK_COLUMNS plus parse_error."""
        batch: list[dict[str, Any]] = []
        for value, raw, error in self._records():
            if value is not None and self.records_read == 0 and not batch:
                self._check_first(value)
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
            row.update({name: None for name in CANONICAL_FIELDS})
            row["extra"] = json.dumps({"_raw": raw}, ensure_ascii=False)
            return row
        extra: dict[str, Any] = {}
        for key, item in value.items():
            name = canonical_field(str(key))
            if name and row.get(name) is None:
                text = _text(item)
                row[name] = text.strip() or None if text is not None else None
            else:
                extra[str(key)] = item
        for name in CANONICAL_FIELDS:
            row.setdefault(name, None)
        row["extra"] = json.dumps(extra, ensure_ascii=False) if extra else None
        return row

    def _chunk(self, batch: list[dict[str, Any]]) -> Chunk:
        with records_from(self.file_name, batch[0]["row_number"]):
            frame = pd.DataFrame(batch, columns=[*CHUNK_COLUMNS, "parse_error"])
            for name in (*CANONICAL_FIELDS, "extra", "parse_error"):
                frame[name] = frame[name].astype("str")
        return Chunk(frame=frame, bytes_read=self.bytes_read)
