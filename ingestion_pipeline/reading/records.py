"""Stream a delimited upload as DataFrame chunks of its dataset's fields, memory bounded by
the chunk size."""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ingestion_pipeline.constants import EMAIL, FIRST_NAME, FULL_NAME, LAST_NAME
from ingestion_pipeline.datasets import CONTACTS, Dataset
from ingestion_pipeline.normalize import text_column
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
    export_profile,
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


@dataclass
class Records:
    """Records as read, before the mapping: cells stripped (blank ones None) in columns
    0..n-1, blank records dropped, each numbered; `fields` holds how many fields each record
    had when they do not all match the header."""

    cells: pd.DataFrame
    row_number: np.ndarray
    fields: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.cells)

    def take(self, start: int, stop: int) -> Records:
        fields = None if self.fields is None else self.fields[start:stop]
        cells = self.cells.iloc[start:stop].reset_index(drop=True)
        return Records(cells, self.row_number[start:stop], fields)

    def then(self, later: Records, width: int) -> Records:
        """These records followed by `later`'s."""
        fields = None
        if self.fields is not None or later.fields is not None:
            fields = np.concatenate(
                [
                    part.fields if part.fields is not None else np.full(len(part), width)
                    for part in (self, later)
                ]
            )
        return Records(
            pd.concat([self.cells, later.cells], ignore_index=True),
            np.concatenate([self.row_number, later.row_number]),
            fields,
        )

    def record(self, position: int) -> list[str]:
        """One record's cells as text ("" for a blank cell)."""
        return ["" if pd.isna(v) else v for v in self.cells.iloc[position].tolist()]


# A record after the data that is not data: summary lines ("Total", "Grand Total", a count) or
# a legal line. Only a trailing run of such records with no email (no key) is a footer.
_SUMMARY_WORD = re.compile(
    r"^\s*(grand\s+total|sub-?total|totals?|summe|gesamt|insgesamt|total\s+g[ée]n[ée]ral|"
    r"count|anzahl|sum|record\s+count|rows?)\b",
    re.IGNORECASE,
)


# A member with a null value in a JSON object of text values: a string before ':null' can only
# be a key, since every quote inside a string is escaped.
_NULL_MEMBER = re.compile(r',"(?:[^"\\]|\\.)*":null|"(?:[^"\\]|\\.)*":null,')


def json_lines(text: str) -> list[str]:
    """The records of JSON Lines text: split at line feeds only (JSON escapes those inside
    strings, but not U+2028 and the other breaks str.splitlines also splits at)."""
    return text.removesuffix("\n").split("\n")


def json_objects(values: pd.DataFrame) -> pd.Series:
    """Each row's non-blank values as one JSON object of text (None where all are blank): a
    blank cell adds no key, whichever chunk its row fell in."""
    has_any = values.notna().any(axis=1)
    columns = [pa.array(values[name], type=pa.large_string()) for name in values.columns]
    if any(pc.any(pc.match_substring_regex(c, "[\\x00-\\x1f]")).as_py() for c in columns):
        # Control characters take JSON's \u escapes: pandas writes those.
        lines = values.to_json(orient="records", lines=True, force_ascii=False)
        lines = _NULL_MEMBER.sub("", lines)
        return pd.Series(json_lines(lines), index=values.index, dtype="str").where(has_any, None)

    def text(value: str) -> pa.Scalar:
        return pa.scalar(value, type=pa.large_string())

    # Members joined one column at a time, a comma only between two present ones (pyarrow's
    # null_handling="skip" drops whole rows when given one column).
    joined = pa.repeat(text(""), len(values))
    for name, column in zip(values.columns, columns, strict=True):
        escaped = pc.replace_substring(pc.replace_substring(column, "\\", "\\\\"), '"', '\\"')
        key = json.dumps(str(name), ensure_ascii=False)
        member = pc.binary_join_element_wise(text(f'{key}:"'), escaped, text('"'), text(""))
        present = pc.is_valid(member)
        comma = pc.if_else(pc.and_(present, pc.not_equal(joined, text(""))), text(","), text(""))
        member = pc.fill_null(member, text(""))
        joined = pc.binary_join_element_wise(joined, comma, member, text(""))
    objects = pc.binary_join_element_wise(text("{"), joined, text("}"), text(""))
    return text_column(objects, values.index).where(has_any, None)


# How many row numbers of records shorter than the header are kept as examples (all are counted).
SHORT_ROWS_KEPT = 20
# The columns of one multi-valued field of a Google export: "E-mail 1 - Type" and
# "E-mail 1 - Value" (the current export says "- Label"), "Address 1 - Street", ...
_VALUE_GROUP = re.compile(r"^(?P<group>.+ \d+) - (?P<part>.+)$")
_TYPE_PARTS = ("type", "label")
# Google marks the primary value's type with this ("* Work", or "*" alone when unlabelled).
_PRIMARY_MARK = "*"
# Where the values a multi-valued cell holds besides its primary one are kept in extra.
OTHER_VALUES = "{column} (other values)"


def _value_groups(header: Sequence[str]) -> tuple[tuple[int | None, tuple[int, ...]], ...]:
    """Per group of Google's numbered columns: its type column and all its columns."""
    groups: dict[str, tuple[list[int | None], list[int]]] = {}
    for position, name in enumerate(header):
        match = _VALUE_GROUP.match(name)
        if match is None:
            continue
        kind, columns = groups.setdefault(match["group"].casefold(), ([None], []))
        if kind[0] is None and match["part"].strip().casefold() in _TYPE_PARTS:
            kind[0] = position
        columns.append(position)
    return tuple((kind[0], tuple(columns)) for kind, columns in groups.values())


def _contains(column: pd.Series, text: str) -> np.ndarray:
    """Per cell, whether it holds `text` (a blank cell does not)."""
    values = pa.array(column, type=pa.large_string(), from_pandas=True)
    return pc.fill_null(pc.match_substring(values, text), False).to_numpy(zero_copy_only=False)


class TabularFile:
    """Records of cells (CSV or a spreadsheet sheet) read as chunks with a column mapping.

    Subclasses set `format` and yield raw records from `_batches`; this class skips what is
    above the header, holds back a trailing run of footer lines until the end shows whether
    data follows them, and turns records into chunk frames by the mapping.

    A record with fewer fields than the header is padded with blanks (Outlook leaves trailing
    empty fields out): `short_records` counts them and `short_record_rows` names the first
    SHORT_ROWS_KEPT. A record with values past the header is kept with a `record_problem`.
    """

    file_name: str
    format: FileFormat
    dataset: Dataset
    # "line" for text files, "sheet row" for spreadsheets: how errors name a position.
    position_name = "line"

    def _start(self) -> None:
        # records_read counts the records handed out in chunks; _numbered the records read
        # (a held footer line included), which numbers them and the errors met while reading.
        self.records_read = 0
        self._numbered = 0
        self.footer: list[str] = []
        self.short_records = 0
        self.short_record_rows: list[int] = []
        header, samples = self.format.header, self.format.samples
        self.suggestion: ColumnMapping = suggest_mapping(header, samples, self.dataset)
        require_columns(self.file_name, header, samples, self.dataset)
        # An export that joins several values in one cell (Google's " ::: "), whatever the
        # mapping: the detected profile decides, not the columns a person chose.
        profile = export_profile(header) if is_contacts(self.dataset) else None
        self._separator = profile.multi_value_separator if profile is not None else None
        self._value_groups = _value_groups(header) if self._separator else ()
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

    def _record_batches(self, size: int) -> Iterator[Records]:
        """The records below the header, in batches of at most `size`."""
        return self._records_of(self._batches(size), self.format.header_index + 1)

    def _records_of(self, batches: Iterator[list[list[str]]], skip: int) -> Iterator[Records]:
        """Batches of raw records as Records, the first `skip` records left out."""
        for batch in batches:
            if skip:
                taken = min(skip, len(batch))
                batch, skip = batch[taken:], skip - taken
            records = [r for r in batch if any(c.strip() for c in r)]
            if not records:
                continue
            with records_from(self.file_name, self._numbered + 1):
                found = self._records(self._prepare_records(records))
            if len(found):
                yield found

    def _records(self, records: list[list[str]]) -> Records:
        width = len(self.format.header)
        lengths = set(map(len, records))
        fields = None
        if lengths != {width}:
            fields = np.array([len(r) for r in records], dtype="int64")
            longest = max(lengths)
            records = [r + [""] * (longest - len(r)) for r in records]
        return self._numbered_records(pd.DataFrame(records, dtype="str"), fields)

    def _numbered_records(self, cells: pd.DataFrame, fields: np.ndarray | None) -> Records:
        cells = cells.apply(lambda s: s.str.strip()).replace("", None)
        # A line of nothing but delimiters or spaces is a blank line too.
        keep = cells.notna().any(axis=1).to_numpy()
        if not keep.all():
            cells = cells[keep].reset_index(drop=True)
            fields = None if fields is None else fields[keep]
        start = self._numbered + 1
        self._numbered += len(cells)
        return Records(cells, np.arange(start, start + len(cells), dtype="int64"), fields)

    def chunks(self, chunk_size: int) -> Iterator[Chunk]:
        """Yield chunks of at most `chunk_size` records; blank lines are not records."""
        width = len(self.format.header)
        held: Records | None = None
        for found in self._record_batches(chunk_size):
            records = found if held is None else held.then(found, width)
            cut = len(records)
            while cut and self._footer_like(records.record(cut - 1)):
                cut -= 1
            records, held = records.take(0, cut), records.take(cut, len(records))
            if not len(records):
                continue
            with records_from(self.file_name, int(records.row_number[0])):
                frame = self._frame(records)
            yield Chunk(frame=frame, bytes_read=self.bytes_read)
        if held is not None:
            self.footer = [" ".join(c for c in held.record(i) if c) for i in range(len(held))]

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

    def _frame(self, records: Records) -> pd.DataFrame:
        width = len(self.format.header)
        raw = records.cells
        others = None
        if self._value_groups:
            raw, others = self._split_multi_values(raw)
        out = pd.DataFrame(index=raw.index)
        out["row_number"] = records.row_number
        self.records_read += len(raw)
        for name in self.dataset.field_names:
            out[name] = self._first_filled(raw, self._positions.get(name, ()))
        if FULL_NAME in self._positions and is_contacts(self.dataset):
            # Whole names fill first and last name where those are blank (split_full_name).
            full = self._first_filled(raw, self._positions[FULL_NAME])
            need = full.notna() & (out[FIRST_NAME].isna() | out[LAST_NAME].isna())
            people = self._person_rows(raw)
            if people is not None:
                need &= people
            if need.any():
                parts = full[need].map(split_full_name)
                for position, name in enumerate((FIRST_NAME, LAST_NAME)):
                    split = parts.map(lambda pair, p=position: pair[p]).astype("str")
                    out.loc[need, name] = out.loc[need, name].fillna(split)
        extra_cols = [(name, i) for name, i in self._extras if i in raw.columns]
        # Values past the header's width (ragged rows) are kept as column_N, never dropped.
        extra_cols += [(f"column_{i + 1}", i) for i in raw.columns if i >= width]
        extras = raw[[i for _, i in extra_cols]]
        extras.columns = [name for name, _ in extra_cols]
        if others is not None:
            extras = pd.concat([extras, others], axis=1)
        # Columns empty in the whole chunk (a trailing ';;' on every line) add nothing.
        extras = extras.dropna(axis=1, how="all")
        if len(extras.columns):
            out["extra"] = json_objects(extras)
        else:
            out["extra"] = pd.Series(None, index=raw.index, dtype="str")
        if records.fields is not None:
            fields = pd.Series(records.fields, index=raw.index)
            # Fewer fields than the header: trailing empty fields left out, as Outlook does.
            # The record is padded with blanks (done by _records) and counted, not flagged.
            short = (fields < width).to_numpy()
            if short.any():
                self.short_records += int(short.sum())
                room = SHORT_ROWS_KEPT - len(self.short_record_rows)
                if room > 0:
                    self.short_record_rows += records.row_number[short][:room].tolist()
            # Values past the header (trailing delimiters are fine) have no column: the record
            # is kept, its surplus values in extra as column_N, with an issue saying so.
            past = raw[[i for i in raw.columns if i >= width]].notna().any(axis=1)
            if past.any():
                out["record_problem"] = (fields.astype(str) + f"/{width}").where(past, None)
        return out

    def _person_rows(self, raw: pd.DataFrame) -> pd.Series | None:
        """Rows whose whole name may be split into first and last name (None: all)."""
        return None

    def _split_multi_values(self, raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """Cells of an export that joins several values of one field (Google: "a ::: b", its
        type cell "* Work ::: Home") keep their primary value: the one whose type is marked
        `*`, else the first. The other values go to extra as OTHER_VALUES, joined as the
        export joined them. Only the cells holding the separator are split, row by row."""
        separator = self._separator
        assert separator is not None
        header = self.format.header
        others: dict[str, pd.Series] = {}
        copied = False
        for type_position, positions in self._value_groups:
            present = [p for p in positions if p in raw.columns]
            joined = {p: _contains(raw[p], separator) for p in present}
            rows = np.logical_or.reduce(list(joined.values())) if joined else None
            if rows is None or not rows.any():
                continue
            if not copied:
                raw, copied = raw.copy(), True
            primary = self._primary_positions(raw, type_position, rows)
            for p in present:
                hit = joined[p]
                if not hit.any():
                    continue
                index = raw.index[hit]
                kept, rest = [], []
                for cell, at in zip(
                    raw.loc[index, p].str.split(separator, regex=False),
                    primary.loc[index],
                    strict=True,
                ):
                    values = [v.strip() for v in cell]
                    at = at if at < len(values) else 0
                    kept.append(values[at] or None)
                    rest.append(separator.join(v for i, v in enumerate(values) if v and i != at))
                raw.loc[index, p] = kept
                others[OTHER_VALUES.format(column=header[p])] = pd.Series(
                    [v or None for v in rest], index=index, dtype=object
                )
        if not others:
            return raw, None
        return raw, pd.DataFrame(others, index=raw.index)

    def _primary_positions(
        self, raw: pd.DataFrame, type_position: int | None, rows: np.ndarray
    ) -> pd.Series:
        """Per row of `rows`, which of a joined cell's values is the primary one: the one whose
        type (in a type cell joined alike) is marked `*`, else the first."""
        primary = pd.Series(0, index=raw.index[rows], dtype="int64")
        if type_position is None or type_position not in raw.columns:
            return primary
        types = raw.loc[primary.index, type_position]
        joined = types[_contains(types, self._separator or "")]
        for row, labels in joined.str.split(self._separator, regex=False).items():
            marked = [i for i, kind in enumerate(labels) if kind.strip().startswith(_PRIMARY_MARK)]
            if marked:
                primary[row] = marked[0]
        return primary

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
    """An open delimited text file: its detected format and an iterator over record chunks.

    A UTF-8 file is parsed by Arrow's CSV reader in blocks of whole records, each block only
    after a scan shows its quoting is well formed; from the first block that is not (or that
    Arrow refuses: ragged records, bytes that are not UTF-8, a record longer than a block) to
    the end, Python's strict reader takes over, which names the line of any error. Both give
    the same records for the same bytes.
    """

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
        self._stream = stream
        self._head = _read_at_least(stream, SAMPLE_BYTES)
        self.format = detect_format(
            self._head, file_name, complete=len(self._head) < SAMPLE_BYTES, dataset=dataset
        )
        self._escapes_seen = _escapes[0]
        # Lines consumed before the strict reader took over, for the line numbers it reports.
        self._line_base = 0
        self.arrow_block_bytes = ARROW_BLOCK_BYTES
        # The record from which Python's strict reader read the file (None: Arrow read it all).
        self.strict_from: int | None = None
        self._start()

    @property
    def bytes_read(self) -> int:
        """Bytes taken from the stored object so far (read-ahead included)."""
        return self._counter.count

    def _record_batches(self, size: int) -> Iterator[Records]:
        if self.format.encoding not in ("utf-8", "utf-8-sig") or not self.arrow_block_bytes:
            self.strict_from = 1
            return super()._record_batches(size)
        return self._arrow_record_batches(size)

    def _batches(self, size: int) -> Iterator[list[list[str]]]:
        return self._strict_batches(
            self._head, self.format.encoding, size, self.format.header_index + 1
        )

    def _strict_batches(
        self, prefix: bytes, encoding: str, size: int, skip: int
    ) -> Iterator[list[list[str]]]:
        """Python's strict reader over `prefix` and the rest of the stream, whose first `skip`
        records are above the header."""
        text = io.TextIOWrapper(
            io.BufferedReader(PrefixedReader(prefix, self._stream), buffer_size=1024 * 1024),
            encoding=encoding,
            errors=_ESCAPE_HANDLER,
            newline="",
        )
        # strict: a quote left open or a stray character after a closing quote is an error
        # naming its line, not a silent merge of the rest of the file into one field.
        reader = csv.reader(
            bounded_lines(text),
            delimiter=self.format.delimiter,
            quotechar='"',
            doublequote=True,
            strict=True,
        )
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
            line = exc.line if isinstance(exc, LineTooLongError) else end_line + 1
            raise UnreadableFileError(
                self.file_name,
                _describe_csv_error(exc) if isinstance(exc, csv.Error) else str(exc),
                record=self._numbered + done + 1,
                line=self._line_base + line,
            ) from exc
        return batch

    def _arrow_record_batches(self, size: int) -> Iterator[Records]:
        """Blocks of whole records parsed by Arrow, until one is not plainly well formed;
        from there on, the strict reader's batches."""
        buffer = self._head
        if self.format.encoding == "utf-8-sig" and buffer.startswith(codecs.BOM_UTF8):
            buffer = buffer[len(codecs.BOM_UTF8) :]
        start = _records_end(buffer, self.format.header_index + 1)
        if start is None or _line_breaks(buffer[:start]) != buffer[:start].count(b"\n"):
            # A header Arrow's block cutting cannot find by line feeds: all strict.
            self.strict_from = 1
            yield from super()._record_batches(size)
            return
        self._line_base = _line_breaks(buffer[:start])
        buffer = buffer[start:]
        end_of_file = False
        delimiter = self.format.delimiter.encode()
        while True:
            while not end_of_file and len(buffer) < self.arrow_block_bytes:
                more = self._stream.read(self.arrow_block_bytes)
                end_of_file = not more
                buffer += more
            if not buffer:
                return
            block = self.arrow_block_bytes
            if end_of_file and len(buffer) <= block:
                cut: int | None = len(buffer)
            else:
                cut = _last_record_end(buffer, block)
            cells = None
            if cut:
                cells = _arrow_cells(buffer[:cut], delimiter, len(self.format.header))
            if cells is None:
                self.strict_from = self._numbered + 1
                yield from self._records_of(self._strict_batches(buffer, "utf-8", size, 0), 0)
                return
            self._line_base += _line_breaks(buffer[:cut])
            buffer = buffer[cut:]
            for first in range(0, len(cells), size):
                found = self._numbered_records(cells.iloc[first : first + size], None)
                if len(found):
                    yield found

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
                    record=self._numbered + position + 1 - blank,
                )
            repaired.append([_redecode(cell, fallback) for cell in record])
        return repaired


# Arrow parses this many bytes of whole records at a time (a few chunks' worth at most).
ARROW_BLOCK_BYTES = 4 * 1024 * 1024


def _line_breaks(data: bytes) -> int:
    """Line breaks as Python's reader counts lines: LF, CRLF and a lone CR."""
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


def _records_end(data: bytes, records: int) -> int | None:
    """The offset just past the first `records` lines that end outside quotes, if found."""
    position = quotes = 0
    for _ in range(records):
        while True:
            feed = data.find(b"\n", position)
            if feed < 0:
                return None
            quotes += data.count(b'"', position, feed)
            position = feed + 1
            if quotes % 2 == 0:
                break
    return position


def _last_record_end(data: bytes, limit: int) -> int | None:
    """The offset just past the last line feed in the first `limit` bytes of `data` that is
    outside quotes (an even count of quote characters before it; doubled quotes count two)."""
    end = min(limit, len(data))
    quotes = data.count(b'"', 0, end)
    while True:
        feed = data.rfind(b"\n", 0, end)
        if feed < 0:
            return None
        quotes -= data.count(b'"', feed, end)
        if quotes % 2 == 0:
            return feed + 1
        end = feed


@cache
def _quoted_field(delimiter: bytes) -> re.Pattern[bytes]:
    """A quoted field that starts a field and is closed where a field ends, its quotes doubled
    inside: the only place a strict reader allows a quote character (besides the middle of an
    unquoted field, which Arrow reads the same way but which goes to the strict reader too)."""
    d = re.escape(delimiter)
    # The pattern starts with the quote (the engine then jumps from quote to quote); the
    # lookbehind then checks the character before it.
    return re.compile(rb'"(?<![^' + d + rb'\r\n]")[^"]*(?:""[^"]*)*"(?=[' + d + rb"\r\n]|\Z)")


def _arrow_cells(block: bytes, delimiter: bytes, width: int) -> pd.DataFrame | None:
    """A block of whole records parsed by Arrow as columns 0..width-1 of text; None when a
    strict reader might read it otherwise or Arrow refuses it."""
    if b'"' in block and b'"' in _quoted_field(delimiter).sub(b"", block):
        return None
    names = [str(i) for i in range(width)]
    try:
        table = pacsv.read_csv(
            io.BytesIO(block),
            read_options=pacsv.ReadOptions(
                column_names=names, use_threads=False, block_size=len(block) + 1
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter.decode(),
                quote_char='"',
                double_quote=True,
                escape_char=False,
                newlines_in_values=True,
                ignore_empty_lines=True,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    cells = table.to_pandas()
    cells.columns = range(width)
    return cells


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
