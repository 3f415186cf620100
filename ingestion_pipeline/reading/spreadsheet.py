"""Excel and OpenDocument workbooks (.xlsx, .xlsm, .xls, .ods), read as the same record chunks
as delimited text: the sheet is the one whose header looks most like the dataset's."""

from __future__ import annotations

import datetime as dt
import itertools
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any, BinaryIO

from python_calamine import CalamineError, CalamineWorkbook, SheetTypeEnum, SheetVisibleEnum

from ingestion_pipeline.datasets import CONTACTS, Dataset
from ingestion_pipeline.reading.detect import (
    HEADER_SEARCH_RECORDS,
    SAMPLE_RECORDS,
    FileFormat,
    layout_from_records,
    locate_header,
)
from ingestion_pipeline.reading.errors import UnreadableFileError
from ingestion_pipeline.reading.records import ByteCounter, TabularFile

SPREADSHEET_EXTENSIONS: tuple[str, ...] = (".xlsx", ".xlsm", ".xls", ".ods")
# Workbook readers need a seekable file: the upload is spooled to disk, in memory up to this.
_SPOOL_MEMORY = 8 * 1024 * 1024
SHEET_CHUNK_ROWS = 10_000


def cell_text(value: Any) -> str:
    """A cell as a person sees it: whole numbers without '.0', dates as ISO 8601 text."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0):
            return value.date().isoformat()
        return value.isoformat(timespec="seconds")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


class SpreadsheetFile(TabularFile):
    """An open workbook: the chosen sheet's format and an iterator over record chunks."""

    position_name = "sheet row"

    def __init__(
        self,
        stream: BinaryIO,
        file_name: str,
        counter: ByteCounter,
        *,
        dataset: Dataset = CONTACTS,
    ) -> None:
        self.file_name = file_name
        self.dataset = dataset
        self._counter = counter
        # Closed when the last batch has been read (or with the process).
        self._spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)  # noqa: SIM115
        shutil.copyfileobj(stream, self._spool, 1024 * 1024)
        if not self._spool.tell():
            raise UnreadableFileError(file_name, "the file is empty")
        self._spool.seek(0)
        try:
            book = CalamineWorkbook.from_filelike(self._spool)
        except (CalamineError, ValueError, OSError) as exc:
            raise UnreadableFileError(
                file_name, f"not a readable workbook ({type(exc).__name__}: {exc})"
            ) from exc
        best = None
        for meta in book.sheets_metadata:
            if meta.typ != SheetTypeEnum.WorkSheet or meta.visible != SheetVisibleEnum.Visible:
                continue
            sheet = book.get_sheet_by_name(meta.name)
            head = [
                [cell_text(c) for c in row]
                for row in itertools.islice(
                    sheet.iter_rows(), HEADER_SEARCH_RECORDS + SAMPLE_RECORDS + 1
                )
            ]
            index, score = locate_header(head, dataset)
            if index >= 0 and (best is None or score > best[0]):
                best = (score, sheet, head)
        if best is None:
            raise UnreadableFileError(file_name, "no sheet of the workbook has a header row")
        _, self._sheet, head = best
        first_row = self._sheet.start[0] + 1 if self._sheet.start else 1
        lines = list(range(first_row, first_row + len(head)))
        index, header, preamble, samples = layout_from_records(
            head, lines, complete=True, dataset=dataset
        )
        self.format = FileFormat(
            encoding="workbook",
            delimiter="sheet",
            header=header,
            header_index=index,
            preamble=preamble,
            samples=samples,
            sheet=self._sheet.name,
        )
        self._start()

    @property
    def bytes_read(self) -> int:
        return self._counter.count

    def _batches(self, size: int) -> Iterator[list[list[str]]]:
        # The sheet's cells are in memory already: smaller chunks keep the total bounded.
        size = min(size, SHEET_CHUNK_ROWS)
        rows = self._sheet.iter_rows()
        width = len(self.format.header)
        while True:
            batch = [
                _trimmed([cell_text(c) for c in row], width) for row in itertools.islice(rows, size)
            ]
            if not batch:
                self._spool.close()
                return
            yield batch


def _trimmed(record: list[str], width: int) -> list[str]:
    """Empty cells past the header's width are the sheet's used range, not ragged data."""
    end = len(record)
    while end > width and not record[end - 1].strip():
        end -= 1
    return record[:end]
