"""Workbook sheets read row by row with bounded memory, whatever the file declares.

Excel (.xlsx/.xlsm) and OpenDocument (.ods) workbooks are zip archives of XML: each part is
inflated under the same expansion limits as a gzip upload and parsed by expat as a stream,
so memory depends on the chunk being read, not on the sheet's size or its `<dimension>`.
A cell is refused past Excel's own limit of 32,767 characters while it is being read, and a
value far to the right of the header (a cell at XFD1048576) is refused by name instead of
being padded out. Legacy .xls (BIFF, at most 65,536 x 256 cells by its format) is read by
xlrd, which holds only the cells a sheet stores, from files up to MAX_XLS_BYTES.
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
import zipfile
from array import array
from collections.abc import Iterator
from functools import lru_cache
from typing import Any, BinaryIO
from xml.parsers import expat

from ingestion_pipeline.reading.errors import UnreadableFileError
from ingestion_pipeline.reading.limits import ExpansionLimit

# Excel's limits: a cell holds at most 32,767 characters; a sheet has 16,384 columns and
# 1,048,576 rows.
MAX_CELL_CHARS = 32_767
MAX_COLUMNS = 16_384
MAX_ROWS = 1_048_576
# LibreOffice's sheets reach 16,777,216 rows.
MAX_ODS_ROWS = 16 * MAX_ROWS
# Distinct strings a workbook may share (each costs 8 bytes of offset in memory); the text
# itself moves to a temporary file past STRINGS_IN_MEMORY bytes.
MAX_SHARED_STRINGS = 8 * 1024 * 1024
STRINGS_IN_MEMORY = 32 * 1024 * 1024
_FEED_BYTES = 1024 * 1024

Row = tuple[int, list[str]]


def column_name(index: int) -> str:
    """The letters of a 0-based column index (0 -> A, 16383 -> XFD)."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(65 + rest) + name
    return name


@lru_cache(maxsize=4096)
def _column_index(letters: str) -> int:
    index = 0
    for ch in letters:
        index = index * 26 + ord(ch) - 64
    return index - 1


class CellTooLong(UnreadableFileError):
    """A cell over Excel's limit, named by sheet and reference."""

    def __init__(self, file_name: str, sheet: str, ref: str) -> None:
        super().__init__(
            file_name,
            f"sheet {sheet!r}, cell {ref}: more than {MAX_CELL_CHARS:,} characters (the most a "
            "spreadsheet cell can hold): not an export",
        )


class TooFarRight(UnreadableFileError):
    """A value past the columns a sheet may use."""

    def __init__(self, file_name: str, sheet: str, ref: str, limit: int) -> None:
        super().__init__(
            file_name,
            f"sheet {sheet!r}, cell {ref}: a value past column {column_name(limit - 1)}, far to "
            "the right of the header (values are kept up to "
            f"{limit:,} columns): not a table of records",
        )


def _refuse_dtd(*_: object) -> None:
    raise ValueError("a document type declaration (spreadsheet programs write none)")


def _parser(namespaces: bool = True) -> Any:
    parser = expat.ParserCreate(namespace_separator=" " if namespaces else None)
    parser.buffer_text = True
    parser.buffer_size = 64 * 1024
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    return parser


class ZipBook:
    """A workbook's zip archive, its members read under the expansion limits."""

    def __init__(self, spool: BinaryIO, file_name: str) -> None:
        self.file_name = file_name
        try:
            self._zip = zipfile.ZipFile(spool)
        except (zipfile.BadZipFile, ValueError, OSError) as exc:
            raise UnreadableFileError(file_name, f"not a readable workbook ({exc})") from exc
        self.names = set(self._zip.namelist())

    def parse(self, member: str, parser: Any, what: str = "") -> Iterator[None]:
        """Feed `member` to `parser` block by block, under the expansion limits; yields after
        each block, so that a caller hands out what the block closed before the next."""
        what = what or f"the workbook part {member} "
        try:
            info = self._zip.getinfo(member)
            with self._zip.open(info) as raw:
                stream = ExpansionLimit(
                    raw,  # type: ignore[arg-type]
                    lambda: info.compress_size,
                    self.file_name,
                    what,
                )
                while block := stream.read(_FEED_BYTES):
                    parser.Parse(block, False)
                    yield
                parser.Parse(b"", True)
                yield
        except UnreadableFileError:
            raise
        except (expat.ExpatError, zipfile.BadZipFile, ValueError, KeyError, OSError) as exc:
            raise UnreadableFileError(
                self.file_name, f"not a readable workbook: {what.strip()}: {exc}"
            ) from exc

    def feed(self, member: str, parser: Any) -> None:
        """Parse the whole of `member` with `parser`."""
        for _ in self.parse(member, parser):
            pass

    def elements(self, member: str, wanted: set[str]) -> list[tuple[str, dict[str, str]]]:
        """The (local name, attributes) of the elements named in `wanted`, in order."""
        found: list[tuple[str, dict[str, str]]] = []

        def start(name: str, attrs: dict[str, str]) -> None:
            local = name.rpartition(" ")[2]
            if local in wanted:
                found.append((local, {k.rpartition(" ")[2]: v for k, v in attrs.items()}))
                if len(found) > 100_000:
                    raise ValueError(f"more than 100,000 <{local}> elements")

        parser = _parser()
        parser.StartElementHandler = start
        self.feed(member, parser)
        return found

    def close(self) -> None:
        self._zip.close()


class _Oversized(Exception):
    """A shared string past the cell limit: stops reading the table where it stands."""


class StringTable:
    """A workbook's shared strings: UTF-8 text in one buffer (spilled to a temporary file
    past STRINGS_IN_MEMORY bytes) and an offset per string, never a Python object each."""

    def __init__(self) -> None:
        self._ends = array("q", [0])
        self._text = bytearray()
        self._spilled = False
        self._file: Any = None
        # The index of a string over the cell limit: reading the table stopped there, and a
        # cell that uses it or a later one is refused by name.
        self.oversized_from: int | None = None

    def __len__(self) -> int:
        return len(self._ends) - 1

    def add(self, text: str) -> None:
        if len(self._ends) > MAX_SHARED_STRINGS:
            raise ValueError(f"more than {MAX_SHARED_STRINGS:,} distinct strings")
        data = text.encode("utf-8", "surrogatepass")
        self._ends.append(self._ends[-1] + len(data))
        self._text += data
        if len(self._text) > STRINGS_IN_MEMORY:
            if self._file is None:
                self._file = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the table)
            self._file.write(self._text)
            self._text = bytearray()
            self._spilled = True

    def finish(self) -> None:
        if self._spilled and self._text:
            self._file.write(self._text)
            self._text = bytearray()
        if self._file is not None:
            self._file.flush()

    def __getitem__(self, index: int) -> str:
        start, end = self._ends[index], self._ends[index + 1]
        if self._spilled:
            self._file.seek(start)
            data = self._file.read(end - start)
        else:
            data = self._text[start:end]
        return data.decode("utf-8", "surrogatepass")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


# --- Excel (.xlsx, .xlsm) -------------------------------------------------------------------

_MAIN = (
    "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
    "http://purl.oclc.org/ooxml/spreadsheetml/main",
)
_WORKSHEET_REL = "/worksheet"
# Built-in number formats that show dates or times (ECMA-376 18.8.30, with the CJK ones).
_DATE_FORMATS = {*range(14, 23), *range(27, 37), 45, 46, 47, *range(50, 59)}
_TIME_FORMATS = {18, 19, 20, 21, 45, 46, 47}
_QUOTED = re.compile(r'"[^"]*"|\\.|\[(?!h\]|hh\]|m\]|mm\]|s\]|ss\])[^\]]*\]', re.IGNORECASE)


def _format_kind(code: str) -> str | None:
    """'datetime', 'time' or None for a custom number format code."""
    bare = _QUOTED.sub("", code.split(";")[0]).lower()
    if "general" in bare:
        return None
    has_date = any(ch in bare for ch in "dy") or ("m" in bare and "h" not in bare)
    has_time = any(ch in bare for ch in "hs")
    if has_date:
        return "datetime"
    return "time" if has_time else None


def excel_date_text(serial: float, kind: str, date1904: bool) -> str:
    """An Excel date serial as the ISO 8601 text a person sees (a date alone at midnight)."""
    if kind == "time" or (0 <= serial < 1 and kind != "datetime"):
        seconds = round((serial % 1) * 86400)
        return (dt.datetime(2000, 1, 1) + dt.timedelta(seconds=seconds)).time().isoformat()
    # Excel counts 1900-02-29, which never was: serials before it are a day off.
    base = dt.datetime(1904, 1, 1) if date1904 else dt.datetime(1899, 12, 31 if serial < 60 else 30)
    try:
        value = base + dt.timedelta(seconds=round(serial * 86400))
    except OverflowError:
        return repr(serial)
    if value.time() == dt.time(0):
        return value.date().isoformat()
    return value.isoformat(timespec="seconds")


def number_text(text: str) -> str:
    """A stored number as a person sees it: whole numbers without '.0'."""
    value = float(text)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class XlsxBook(ZipBook):
    """An Excel workbook: its visible worksheets by name, each read as a stream of rows."""

    def __init__(self, spool: BinaryIO, file_name: str) -> None:
        super().__init__(spool, file_name)
        workbook = self._workbook_path()
        folder = workbook.rpartition("/")[0]
        rels = self._relationships(f"{folder}/_rels/{workbook.rpartition('/')[2]}.rels", folder)
        self.date1904 = False
        self.sheets: dict[str, str] = {}
        for name, attrs in self.elements(workbook, {"sheet", "workbookPr"}):
            if name == "workbookPr":
                self.date1904 = attrs.get("date1904", "0").lower() in ("1", "true")
            elif attrs.get("state", "visible") == "visible":
                target = rels.get(attrs.get("id", ""))
                if target and target[0].endswith(_WORKSHEET_REL) and target[1] in self.names:
                    self.sheets[attrs.get("name", "")] = target[1]
        self._strings: StringTable | None = None
        self._styles: list[str | None] | None = None

    def _workbook_path(self) -> str:
        if "_rels/.rels" in self.names:
            for _, attrs in self.elements("_rels/.rels", {"Relationship"}):
                if attrs.get("Type", "").endswith("/officeDocument"):
                    return attrs.get("Target", "").lstrip("/")
        if "xl/workbook.xml" in self.names:
            return "xl/workbook.xml"
        raise UnreadableFileError(self.file_name, "not a readable workbook (no workbook part)")

    def _relationships(self, member: str, folder: str) -> dict[str, tuple[str, str]]:
        if member not in self.names:
            return {}
        found = {}
        for _, attrs in self.elements(member, {"Relationship"}):
            target = attrs.get("Target", "")
            path = target.lstrip("/") if target.startswith("/") else f"{folder}/{target}"
            found[attrs.get("Id", "")] = (attrs.get("Type", ""), _normpath(path))
        return found

    def strings(self) -> StringTable:
        """The shared strings, read once (a string over the cell limit is marked, and refused
        when a cell uses it)."""
        if self._strings is not None:
            return self._strings
        table = StringTable()
        member = next((n for n in ("xl/sharedStrings.xml",) if n in self.names), None)
        if member is not None:
            parts: list[str] = []
            state = {"length": 0, "text": False, "phonetic": 0}

            def start(name: str, _attrs: dict[str, str]) -> None:
                local = name.rpartition(" ")[2]
                if local == "si":
                    parts.clear()
                    state["length"] = 0
                elif local == "t":
                    state["text"] = True
                elif local == "rPh":
                    state["phonetic"] += 1

            def end(name: str) -> None:
                local = name.rpartition(" ")[2]
                if local == "t":
                    state["text"] = False
                elif local == "rPh":
                    state["phonetic"] -= 1
                elif local == "si":
                    table.add("".join(parts))

            def text(data: str) -> None:
                if state["text"] and not state["phonetic"]:
                    state["length"] += len(data)
                    if state["length"] > MAX_CELL_CHARS:
                        raise _Oversized
                    parts.append(data)

            parser = _parser()
            parser.StartElementHandler = start
            parser.EndElementHandler = end
            parser.CharacterDataHandler = text
            try:
                self.feed(member, parser)
            except _Oversized:
                table.oversized_from = len(table)
        table.finish()
        self._strings = table
        return table

    def styles(self) -> list[str | None]:
        """For each cell style index: 'datetime', 'time' or None (a number)."""
        if self._styles is not None:
            return self._styles
        member = "xl/styles.xml"
        custom: dict[int, str] = {}
        kinds: list[str | None] = []
        if member in self.names:
            in_xfs = False

            def start(name: str, attrs: dict[str, str]) -> None:
                nonlocal in_xfs
                local = name.rpartition(" ")[2]
                if local == "numFmt":
                    custom[int(attrs.get("numFmtId", "0"))] = attrs.get("formatCode", "")
                elif local == "cellXfs":
                    in_xfs = True
                elif local == "xf" and in_xfs:
                    if len(kinds) > 100_000:
                        raise ValueError("more than 100,000 cell styles")
                    fmt = int(attrs.get("numFmtId", "0"))
                    if fmt in custom:
                        kinds.append(_format_kind(custom[fmt]))
                    elif fmt in _DATE_FORMATS:
                        kinds.append("time" if fmt in _TIME_FORMATS else "datetime")
                    else:
                        kinds.append(None)

            def end(name: str) -> None:
                nonlocal in_xfs
                if name.rpartition(" ")[2] == "cellXfs":
                    in_xfs = False

            parser = _parser()
            parser.StartElementHandler = start
            parser.EndElementHandler = end
            self.feed(member, parser)
        self._styles = kinds
        return kinds

    def rows(self, sheet: str, max_columns: int = MAX_COLUMNS) -> Iterator[Row]:
        """(sheet row number, cells as text) of each row the sheet stores, in order."""
        return _XlsxSheet(self, sheet, max_columns).rows()


def _normpath(path: str) -> str:
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    return "/".join(parts)


class _SheetStream:
    """Rows of one sheet, parsed block by block: the handlers collect the rows that close in
    a block into `done`, and they are handed out before the next block is parsed."""

    book: Any
    sheet: str
    member: str
    done: list[Any]

    def _parser(self) -> Any:
        raise NotImplementedError

    def rows(self) -> Iterator[Row]:
        for _ in self.book.parse(self.member, self._parser(), f"sheet {self.sheet!r} "):
            yield from self._handed_out()

    def _handed_out(self) -> Iterator[Row]:
        done, self.done = self.done, []
        return iter(done)


class _XlsxSheet(_SheetStream):
    """One worksheet's XML, its cells turned into text as a person sees them."""

    def __init__(self, book: XlsxBook, sheet: str, max_columns: int) -> None:
        self.book = book
        self.sheet = sheet
        self.member = book.sheets[sheet]
        self.max_columns = max_columns
        self.done = []

    def _parser(self) -> Any:
        # Closures over locals, not methods: the handlers run several times per cell, and
        # this is where a million-row sheet spends its time.
        book, sheet, max_columns = self.book, self.sheet, self.max_columns
        file_name, strings, styles = book.file_name, book.strings(), book.styles()
        oversized, date1904, n_strings, n_styles = (
            strings.oversized_from,
            book.date1904,
            len(strings),
            len(styles),
        )
        kinds: dict[str, str] = {}

        def kind_of(name: str) -> str:
            local = name.rpartition(":")[2]
            kinds[name] = local
            return local

        row: list[str] = []
        row_number = 0
        column = -1
        ref = ""
        cell_type = "n"
        style = 0
        text: list[str] = []
        length = 0
        collecting = False
        inline = False
        phonetic = 0

        def start(name: str, attrs: dict[str, str]) -> None:
            nonlocal row, row_number, column, ref, cell_type, style, text, length
            nonlocal collecting, inline, phonetic
            kind = kinds.get(name) or kind_of(name)
            if kind == "c":
                ref = attrs.get("r", "")
                if ref:
                    letters = ref.rstrip("0123456789")
                    column = _column_index(letters)
                    if not letters or column >= MAX_COLUMNS or not letters.isalpha():
                        raise UnreadableFileError(file_name, f"sheet {sheet!r}: a cell at {ref!r}")
                else:
                    column += 1
                    ref = f"{column_name(column)}{row_number}"
                cell_type = attrs.get("t", "n")
                style = int(attrs.get("s", 0))
                text = []
                length = 0
            elif kind == "v":
                collecting = True
            elif kind == "t":
                collecting = inline and not phonetic
            elif kind == "row":
                number = attrs.get("r")
                row_number = int(number) if number else row_number + 1
                if not 0 < row_number <= MAX_ROWS:
                    raise UnreadableFileError(
                        file_name, f"sheet {sheet!r}: a row numbered {number}"
                    )
                row = []
                column = -1
            elif kind == "is":
                inline = True
            elif kind == "rPh":
                phonetic += 1

        def end(name: str) -> None:
            nonlocal collecting, inline, phonetic
            kind = kinds.get(name) or kind_of(name)
            if kind == "c":
                if text:
                    value = cell_value("".join(text))
                    if value:
                        if column >= max_columns:
                            raise TooFarRight(file_name, sheet, ref, max_columns)
                        size = len(row)
                        if column == size:
                            row.append(value)
                        elif column > size:
                            row.extend([""] * (column - size))
                            row.append(value)
                        else:
                            row[column] = value
            elif kind == "v" or kind == "t":
                collecting = False
            elif kind == "row":
                self.done.append((row_number, row))
            elif kind == "is":
                inline = False
            elif kind == "rPh":
                phonetic -= 1

        def data(chars: str) -> None:
            nonlocal length
            if collecting:
                length += len(chars)
                if length > MAX_CELL_CHARS:
                    raise CellTooLong(file_name, sheet, ref)
                text.append(chars)

        def cell_value(raw: str) -> str:
            if cell_type == "inlineStr" or cell_type == "str":
                return raw
            if cell_type == "s":
                index = int(raw)
                if oversized is not None and index >= oversized:
                    if index == oversized:
                        raise CellTooLong(file_name, sheet, ref)
                    raise UnreadableFileError(
                        file_name,
                        f"sheet {sheet!r}, cell {ref}: its text is shared after one of more than "
                        f"{MAX_CELL_CHARS:,} characters (the most a spreadsheet cell can hold)",
                    )
                if not 0 <= index < n_strings:
                    raise UnreadableFileError(
                        file_name,
                        f"sheet {sheet!r}, cell {ref}: shared string {index} does not exist",
                    )
                return strings[index]
            if cell_type == "n":
                kind = styles[style] if style < n_styles else None
                try:
                    if kind is not None:
                        return excel_date_text(float(raw), kind, date1904)
                    return number_text(raw)
                except ValueError:
                    return raw
            if cell_type == "b":
                return "TRUE" if raw.strip() in ("1", "true") else "FALSE"
            return raw

        parser = _parser(namespaces=False)
        parser.StartElementHandler = start
        parser.EndElementHandler = end
        parser.CharacterDataHandler = data
        return parser


# --- OpenDocument (.ods) --------------------------------------------------------------------

_TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
_OFFICE = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
_TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_ISO_DURATION = re.compile(r"^-?PT?(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?$")


def _ods_value(attrs: dict[str, str], text: str) -> str:
    kind = attrs.get(f"{_OFFICE} value-type")
    if kind in ("float", "percentage", "currency"):
        raw = attrs.get(f"{_OFFICE} value")
        if raw is not None:
            try:
                return number_text(raw)
            except ValueError:
                return raw
    elif kind == "date":
        raw = attrs.get(f"{_OFFICE} date-value", "")
        date, _, time = raw.partition("T")
        if not time or time.strip("0:.") == "":
            return date
        return f"{date}T{time.split('.')[0]}"
    elif kind == "time":
        match = _ISO_DURATION.match(attrs.get(f"{_OFFICE} time-value", ""))
        if match:
            h, m, s = (float(g or 0) for g in match.groups())
            return f"{int(h):02d}:{int(m):02d}:{round(s):02d}"
    elif kind == "boolean":
        return "TRUE" if attrs.get(f"{_OFFICE} boolean-value") == "true" else "FALSE"
    return text


class OdsBook(ZipBook):
    """An OpenDocument spreadsheet: its tables by name, each read as a stream of rows (all
    tables live in one content part, so reading one table parses the part up to its end)."""

    def __init__(self, spool: BinaryIO, file_name: str) -> None:
        super().__init__(spool, file_name)
        if "content.xml" not in self.names:
            raise UnreadableFileError(file_name, "not a readable workbook (no content.xml)")
        self.sheets = {
            attrs.get("name", ""): "content.xml"
            for _, attrs in self.elements("content.xml", {"table"})
        }

    def rows(self, sheet: str, max_columns: int = MAX_COLUMNS) -> Iterator[Row]:
        """(sheet row number, cells as text) of each row of table `sheet` with a value."""
        return _OdsTable(self, sheet, max_columns).rows()


class _OdsTable(_SheetStream):
    """The expat handlers of one table of content.xml."""

    def __init__(self, book: OdsBook, sheet: str, max_columns: int) -> None:
        self.book = book
        self.sheet = sheet
        self.member = "content.xml"
        self.max_columns = max_columns
        self.done: list[Row] = []
        self.row: list[str] = []
        self.row_number = 0
        self.row_repeat = 1
        self.column = 0
        self.inside = False
        self.finished = False
        self.cell: dict[str, str] | None = None
        self.paragraphs: list[list[str]] = []
        self.length = 0
        self.annotation = 0

    def start(self, name: str, attrs: dict[str, str]) -> None:
        if self.finished:
            return
        if name == f"{_TABLE} table":
            self.inside = attrs.get(f"{_TABLE} name") == self.sheet
        elif not self.inside:
            return
        elif name in (f"{_TABLE} table-cell", f"{_TABLE} covered-table-cell"):
            self.cell = attrs
            self.paragraphs = []
            self.length = 0
        elif self.cell is not None and not self.annotation:
            if name == f"{_TEXT} p":
                self.paragraphs.append([])
            elif name == f"{_TEXT} s":
                self._text(" " * int(attrs.get(f"{_TEXT} c", "1")))
            elif name == f"{_TEXT} tab":
                self._text("\t")
            elif name == f"{_TEXT} line-break":
                self._text("\n")
            elif name == f"{_OFFICE} annotation":
                self.annotation += 1
        elif name == f"{_OFFICE} annotation":
            self.annotation += 1
        elif name == f"{_TABLE} table-row":
            self.row = []
            self.column = 0
            self.row_repeat = int(attrs.get(f"{_TABLE} number-rows-repeated", "1"))

    def end(self, name: str) -> None:
        if self.finished or not self.inside:
            return
        if name == f"{_OFFICE} annotation":
            self.annotation -= 1
        elif name in (f"{_TABLE} table-cell", f"{_TABLE} covered-table-cell"):
            attrs = self.cell or {}
            self.cell = None
            repeat = int(attrs.get(f"{_TABLE} number-columns-repeated", "1"))
            text = "\n".join("".join(p) for p in self.paragraphs)
            value = _ods_value(attrs, text)
            if value:
                if self.column + repeat > self.max_columns:
                    ref = f"{column_name(min(self.column + repeat, MAX_COLUMNS) - 1)}"
                    raise TooFarRight(
                        self.book.file_name,
                        self.sheet,
                        f"{ref}{self.row_number + 1}",
                        self.max_columns,
                    )
                self.row.extend([""] * (self.column - len(self.row)))
                self.row.extend([value] * repeat)
            self.column += repeat
        elif name == f"{_TABLE} table-row":
            start = self.row_number + 1
            self.row_number += self.row_repeat
            if self.row:
                if self.row_number > MAX_ODS_ROWS:
                    raise UnreadableFileError(
                        self.book.file_name,
                        f"sheet {self.sheet!r}: values in row {self.row_number:,}, past the "
                        f"{MAX_ODS_ROWS:,} rows a sheet can have",
                    )
                # A repeated row with values is that many rows, expanded as they are handed out.
                self.done.append((start, self.row, self.row_repeat))
        elif name == f"{_TABLE} table":
            self.finished = True

    def _parser(self) -> Any:
        parser = _parser()
        parser.StartElementHandler = self.start
        parser.EndElementHandler = self.end
        parser.CharacterDataHandler = self.data
        return parser

    def _handed_out(self) -> Iterator[Row]:
        done, self.done = self.done, []
        for start, row, repeat in done:
            for number in range(start, start + repeat):
                yield number, row

    def data(self, text: str) -> None:
        if self.cell is not None and self.paragraphs and not self.annotation:
            self._text(text)

    def _text(self, text: str) -> None:
        self.length += len(text)
        if self.length > MAX_CELL_CHARS:
            ref = f"{column_name(self.column)}{self.row_number + 1}"
            raise CellTooLong(self.book.file_name, self.sheet, ref)
        if not self.paragraphs:
            self.paragraphs.append([])
        self.paragraphs[-1].append(text)


# --- Legacy Excel (.xls) --------------------------------------------------------------------

# xlrd holds a whole .xls in memory, about 15x its size: larger ones are refused by name.
MAX_XLS_BYTES = 16 * 1024 * 1024


class XlsBook:
    """A legacy Excel workbook (BIFF): its visible worksheets, read from the cells stored."""

    def __init__(self, spool: BinaryIO, file_name: str) -> None:
        import xlrd

        self.file_name = file_name
        spool.seek(0, 2)
        size = spool.tell()
        if size > MAX_XLS_BYTES:
            raise UnreadableFileError(
                file_name,
                f"a legacy .xls workbook of {size // 1024**2} MiB (at most "
                f"{MAX_XLS_BYTES // 1024**2} MiB are read): save it as .xlsx or CSV",
            )
        spool.seek(0)
        try:
            self._book = xlrd.open_workbook(
                file_contents=spool.read(), on_demand=True, ragged_rows=True
            )
        except (xlrd.XLRDError, ValueError, IndexError, KeyError, AssertionError) as exc:
            raise UnreadableFileError(file_name, f"not a readable workbook ({exc})") from exc
        self.date_mode = self._book.datemode
        self.sheets = {
            name: name
            for index, name in enumerate(self._book.sheet_names())
            if self._book.sheet_by_index(index).visibility == 0
        }

    def rows(self, sheet: str, max_columns: int = MAX_COLUMNS) -> Iterator[Row]:
        """(sheet row number, cells as text) of each row of `sheet` with a value."""
        import xlrd

        data = self._book.sheet_by_name(sheet)
        for index in range(data.nrows):
            cells: list[str] = []
            for column, cell in enumerate(data.row(index)):
                if cell.ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK):
                    continue
                if column >= max_columns:
                    ref = f"{column_name(column)}{index + 1}"
                    raise TooFarRight(self.file_name, sheet, ref, max_columns)
                cells.extend([""] * (column - len(cells)))
                cells.append(self._text(cell))
            yield index + 1, cells

    def _text(self, cell: Any) -> str:
        import xlrd

        if cell.ctype == xlrd.XL_CELL_NUMBER:
            return number_text(repr(cell.value))
        if cell.ctype == xlrd.XL_CELL_DATE:
            kind = "time" if 0 <= cell.value < 1 else "datetime"
            return excel_date_text(cell.value, kind, self.date_mode == 1)
        if cell.ctype == xlrd.XL_CELL_BOOLEAN:
            return "TRUE" if cell.value else "FALSE"
        if cell.ctype == xlrd.XL_CELL_ERROR:
            return xlrd.error_text_from_code.get(cell.value, "#ERROR")
        return str(cell.value)

    def close(self) -> None:
        self._book.release_resources()


def open_workbook(spool: BinaryIO, file_name: str) -> XlsxBook | OdsBook | XlsBook:
    """The workbook in `spool`, by its content: Excel (zip), OpenDocument (zip), or BIFF."""
    head = spool.read(8)
    spool.seek(0)
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return XlsBook(spool, file_name)
    if not head.startswith(b"PK"):
        raise UnreadableFileError(file_name, "not a readable workbook (neither zip nor BIFF)")
    probe = ZipBook(spool, file_name)
    ods = "content.xml" in probe.names and "xl/workbook.xml" not in probe.names
    probe.close()
    spool.seek(0)
    return OdsBook(spool, file_name) if ods else XlsxBook(spool, file_name)
