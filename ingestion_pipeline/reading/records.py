"""Stream a delimited upload as DataFrame chunks of its dataset's fields, memory bounded by
the chunk size."""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import pandas as pd

from ingestion_pipeline.constants import EMAIL, FIRST_NAME, FULL_NAME, LAST_NAME
from ingestion_pipeline.datasets import CONTACTS, Dataset
from ingestion_pipeline.reading.detect import SAMPLE_BYTES, FileFormat, detect_format
from ingestion_pipeline.reading.errors import (
    MAX_LINE_CHARS,
    LineTooLongError,
    UnreadableFileError,
    bounded_lines,
    records_from,
)
from ingestion_pipeline.reading.mapping import (
    ColumnMapping,
    is_contacts,
    looks_like_email,
    require_columns,
    split_full_name,
    suggest_mapping,
)

# Large enough for any real cell (notes fields run to megabytes); csv's default is 128 KiB.
csv.field_size_limit(MAX_LINE_CHARS)


def chunk_columns(dataset: Dataset = CONTACTS) -> tuple[str, ...]:
    """The columns of every chunk of `dataset`, in order (a reader may add its own after)."""
    return ("row_number", *dataset.field_names, "extra")


# Undecodable bytes are kept as lone surrogates (surrogateescape) so the record that holds them
# can be named exactly; the counter says whether any file has met one since a chunk started.
_ESCAPE_HANDLER = "contacts-surrogateescape"
_escapes = [0]
_SURROGATES = re.compile("[\udc80-\udcff]")


_surrogateescape = codecs.lookup_error("surrogateescape")


def _count_and_escape(exc: UnicodeError) -> tuple[str, int]:
    _escapes[0] += 1
    return _surrogateescape(exc)


codecs.register_error(_ESCAPE_HANDLER, _count_and_escape)


class PrefixedReader(io.RawIOBase):
    """A raw stream over bytes already read (`head`), then the rest of `rest`."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


@dataclass
class Chunk:
    """One block of records: a DataFrame with chunk_columns(dataset) and the bytes consumed
    so far."""

    frame: pd.DataFrame
    bytes_read: int


# A record after the data that is not data: summary lines ("Total", "Grand Total", a count) or
# a legal line. Only a trailing run of such records with no email (no key) is a footer.
_SUMMARY_WORD = re.compile(
    r"^\s*(grand\s+total|sub-?total|totals?|summe|gesamt|insgesamt|total\s+g[ée]n[ée]ral|"
    r"count|anzahl|sum|record\s+count|rows?)\b",
    re.IGNORECASE,
)


class TabularFile:
    """Records of cells (CSV or a spreadsheet sheet) read as chunks with a column mapping.

    Subclasses set `format` and yield raw records from `_batches`; this class skips what is
    above the header, holds back a trailing run of footer lines until the end shows whether
    data follows them, and turns records into chunk frames by the mapping.
    """

    file_name: str
    format: FileFormat
    dataset: Dataset
    # "line" for text files, "sheet row" for spreadsheets: how errors name a position.
    position_name = "line"

    def _start(self) -> None:
        self.records_read = 0
        self.footer: list[str] = []
        header, samples = self.format.header, self.format.samples
        self.suggestion: ColumnMapping = suggest_mapping(header, samples, self.dataset)
        require_columns(self.file_name, header, samples, self.dataset)
        self.use_mapping(self.suggestion)

    def use_mapping(self, mapping: ColumnMapping) -> None:
        """Read with `mapping`; a column it names that the header lacks is bad input."""
        mapping.check_read_as(self.file_name, self.dataset)
        try:
            self._positions = mapping.positions(self.format.header)
        except KeyError as exc:
            raise UnreadableFileError(
                self.file_name, f"the mapping names column {exc.args[0]!r}, not in the header"
            ) from None
        self.mapping = mapping
        primary = {self._positions[name][0] for name in mapping.stored_columns()}
        self._extras = tuple(
            (name, i) for i, name in enumerate(self.format.header) if i not in primary
        )

    def _batches(self, size: int) -> Iterator[list[list[str]]]:
        raise NotImplementedError

    def chunks(self, chunk_size: int) -> Iterator[Chunk]:
        """Yield chunks of at most `chunk_size` records; blank lines are not records."""
        skip = self.format.header_index + 1
        held: list[list[str]] = []
        for batch in self._batches(chunk_size):
            if skip:
                taken = min(skip, len(batch))
                batch, skip = batch[taken:], skip - taken
            records = held + [r for r in batch if any(c.strip() for c in r)]
            cut = len(records)
            while cut and self._footer_like(records[cut - 1]):
                cut -= 1
            records, held = records[:cut], records[cut:]
            with records_from(self.file_name, self.records_read + 1):
                frame = self._frame(records)
            if len(frame):
                yield Chunk(frame=frame, bytes_read=self.bytes_read)
        self.footer = [" ".join(c.strip() for c in r if c.strip()) for r in held]

    def _footer_like(self, record: list[str]) -> bool:
        """A record that may be a footer: no email address (another dataset: its key column
        blank), and one value alone or a summary word ("Total" may well stand in the email
        column of a spreadsheet)."""
        if is_contacts(self.dataset):
            emails = self._positions.get(EMAIL, ())
            if any(p < len(record) and looks_like_email(record[p]) for p in emails):
                return False
        else:
            keys = self._positions.get(self.dataset.key, ())
            if any(p < len(record) and record[p].strip() for p in keys):
                return False
        filled = [c for c in record if c.strip()]
        return len(filled) <= 1 or bool(_SUMMARY_WORD.match(filled[0]))

    @property
    def bytes_read(self) -> int:
        raise NotImplementedError

    def _prepare_records(self, records: list[list[str]]) -> list[list[str]]:
        return records

    def _frame(self, records: list[list[str]]) -> pd.DataFrame:
        width = len(self.format.header)
        if not records:
            columns = chunk_columns(self.dataset)
            return pd.DataFrame({name: pd.Series(dtype="str") for name in columns})
        records = self._prepare_records(records)
        lengths = set(map(len, records))
        fields = None
        if lengths != {width}:
            fields = pd.Series([len(r) for r in records], dtype="int64")
            longest = max(lengths)
            records = [r + [""] * (longest - len(r)) for r in records]
        raw = pd.DataFrame(records, dtype="str")
        raw = raw.apply(lambda s: s.str.strip()).replace("", None)
        # A line of nothing but delimiters or spaces is a blank line too.
        keep = raw.notna().any(axis=1)
        raw = raw[keep].reset_index(drop=True)
        out = pd.DataFrame(index=raw.index)
        start = self.records_read + 1
        out["row_number"] = pd.RangeIndex(start, start + len(raw))
        self.records_read += len(raw)
        for name in self.dataset.field_names:
            out[name] = self._first_filled(raw, self._positions.get(name, ()))
        if FULL_NAME in self._positions and is_contacts(self.dataset):
            # Whole names fill first and last name where those are blank (split_full_name).
            full = self._first_filled(raw, self._positions[FULL_NAME])
            need = full.notna() & (out[FIRST_NAME].isna() | out[LAST_NAME].isna())
            if need.any():
                parts = full[need].map(split_full_name)
                for position, name in enumerate((FIRST_NAME, LAST_NAME)):
                    split = parts.map(lambda pair, p=position: pair[p]).astype("str")
                    out.loc[need, name] = out.loc[need, name].fillna(split)
        extra_cols = [(name, i) for name, i in self._extras if i in raw.columns]
        # Values past the header's width (ragged rows) are kept as column_N, never dropped.
        extra_cols += [(f"column_{i + 1}", i) for i in raw.columns if i >= width]
        if extra_cols:
            extras = raw[[i for _, i in extra_cols]]
            extras.columns = [name for name, _ in extra_cols]
            # Columns empty in the whole chunk (a trailing ';;' on every line) add nothing.
            extras = extras.dropna(axis=1, how="all")
        if extra_cols and len(extras.columns):
            has_any = extras.notna().any(axis=1)
            lines = extras.to_json(orient="records", lines=True, force_ascii=False)
            out["extra"] = pd.Series(lines.splitlines(), index=raw.index, dtype="str").where(
                has_any, None
            )
        else:
            out["extra"] = pd.Series(None, index=raw.index, dtype="str")
        if fields is not None:
            # Fewer fields than the header, or values past it (trailing delimiters are fine):
            # the record is kept, with an issue saying its fields do not line up.
            fields = fields[keep.to_numpy()].reset_index(drop=True)
            past = raw[[i for i in raw.columns if i >= width]].notna().any(axis=1)
            ragged = (fields < width) | past
            if ragged.any():
                out["record_problem"] = (fields.astype(str) + f"/{width}").where(ragged, None)
        return out

    @staticmethod
    def _first_filled(raw: pd.DataFrame, positions: tuple[int, ...]) -> pd.Series:
        """Per row, the first non-blank of the columns at `positions` (None if none)."""
        present = [p for p in positions if p in raw.columns]
        if not present:
            return pd.Series(None, index=raw.index, dtype="str")
        value = raw[present[0]]
        for p in present[1:]:
            value = value.fillna(raw[p])
        return value


class DelimitedFile(TabularFile):
    """An open delimited text file: its detected format and an iterator over record chunks."""

    def __init__(
        self,
        stream: BinaryIO,
        file_name: str,
        counter: ByteCounter | None = None,
        *,
        dataset: Dataset = CONTACTS,
    ) -> None:
        self.file_name = file_name
        self.dataset = dataset
        if counter is None:
            counter = ByteCounter(stream)
            stream = io.BufferedReader(counter)
        self._counter = counter
        head = _read_at_least(stream, SAMPLE_BYTES)
        self.format = detect_format(
            head, file_name, complete=len(head) < SAMPLE_BYTES, dataset=dataset
        )
        self._text = io.TextIOWrapper(
            io.BufferedReader(PrefixedReader(head, stream), buffer_size=1024 * 1024),
            encoding=self.format.encoding,
            errors=_ESCAPE_HANDLER,
            newline="",
        )
        self._escapes_seen = _escapes[0]
        self._start()

    @property
    def bytes_read(self) -> int:
        """Bytes taken from the stored object so far (read-ahead included)."""
        return self._counter.count

    def _batches(self, size: int) -> Iterator[list[list[str]]]:
        # strict: a quote left open or a stray character after a closing quote is an error
        # naming its line, not a silent merge of the rest of the file into one field.
        fmt = self.format
        reader = csv.reader(
            bounded_lines(self._text),
            delimiter=fmt.delimiter,
            quotechar='"',
            doublequote=True,
            strict=True,
        )
        skip = fmt.header_index + 1
        while True:
            batch = self._read_batch(reader, size, skip)
            if not batch:
                return
            skip = max(0, skip - len(batch))
            yield batch

    def _read_batch(self, reader: Any, size: int, skip: int) -> list[list[str]]:
        """Up to `size` parsed lines; a CSV syntax error names its record and first line."""
        batch: list[list[str]] = []
        end_line = reader.line_num
        try:
            for record in reader:
                batch.append(record)
                end_line = reader.line_num
                if len(batch) >= size:
                    break
        except (csv.Error, LineTooLongError) as exc:
            done = sum(1 for r in batch[skip:] if any(c.strip() for c in r))
            raise UnreadableFileError(
                self.file_name,
                _describe_csv_error(exc) if isinstance(exc, csv.Error) else str(exc),
                record=self.records_read + done + 1,
                line=exc.line if isinstance(exc, LineTooLongError) else end_line + 1,
            ) from exc
        return batch

    def _prepare_records(self, records: list[list[str]]) -> list[list[str]]:
        if _escapes[0] != self._escapes_seen:
            return self._repair_undecodable(records)
        return records

    def _repair_undecodable(self, records: list[list[str]]) -> list[list[str]]:
        """Read escaped bytes in the fallback encoding, or name the first record holding one."""
        fallback = self.format.fallback_encoding
        repaired = []
        for position, record in enumerate(records):
            if not any(_SURROGATES.search(cell) for cell in record):
                repaired.append(record)
                continue
            if fallback is None:
                column = next(i for i, cell in enumerate(record) if _SURROGATES.search(cell))
                escaped = bytes(ord(ch) - 0xDC00 for ch in _SURROGATES.findall(record[column]))
                header = self.format.header
                name = header[column] if column < len(header) else f"column_{column + 1}"
                # Lines of bare delimiters are not records either.
                blank = sum(1 for r in records[:position] if not any(c.strip() for c in r))
                raise UnreadableFileError(
                    self.file_name,
                    f"invalid {self.format.encoding} bytes ({escaped!r} in {name})",
                    record=self.records_read + position + 1 - blank,
                )
            repaired.append([_redecode(cell, fallback) for cell in record])
        return repaired


def _describe_csv_error(exc: csv.Error) -> str:
    """What Python's csv error means for the person who made the file."""
    text = str(exc)
    if "unexpected end of data" in text:
        return "a quoted field starts here and is never closed (unterminated quote)"
    if "expected after" in text:
        return (
            "a closing quote is followed by more text; a quote inside a quoted field is "
            'written twice ("")'
        )
    if "field larger than field limit" in text:
        return (
            f"a field here is longer than {csv.field_size_limit() // (1024 * 1024)} MiB "
            "(an unterminated quote?)"
        )
    if "NUL" in text:
        return "the record contains a NUL byte (\\x00); contacts files are plain text"
    return f"malformed CSV: {text}"


def _redecode(value: str, encoding: str) -> str:
    return value.encode("utf-8", "surrogateescape").decode(encoding, "replace")


def _read_at_least(stream: BinaryIO, size: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while total < size:
        data = stream.read(size - total)
        if not data:
            break
        parts.append(data)
        total += len(data)
    return b"".join(parts)


class ByteCounter(io.RawIOBase):
    """Counts the bytes read from the stored object (compressed, if it is gzipped)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self._stream.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.count += n
        return n
