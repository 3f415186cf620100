"""Excel and OpenDocument workbooks (.xlsx, .xlsm, .xls, .ods), read as the same record chunks
as delimited text: the sheet is the one whose header looks most like the dataset's. Sheets are
streamed row by row (reading.sheets): memory follows the chunk, not what the file declares."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

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
from ingestion_pipeline.reading.sheets import MAX_COLUMNS, open_workbook

SPREADSHEET_EXTENSIONS: tuple[str, ...] = (".xlsx", ".xlsm", ".xls", ".ods")
# Workbook readers need a seekable file: the upload is spooled to disk, in memory up to this.
_SPOOL_MEMORY = 8 * 1024 * 1024
SHEET_CHUNK_ROWS = 10_000
# Values right of the header are kept as column_N up to this many columns past it (the width
# of a whole Excel 97 sheet); one further right is refused by its cell, never padded out.
COLUMNS_PAST_HEADER = 256


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
        self._book = open_workbook(self._spool, file_name)
        best = None
        for name in self._book.sheets:
            numbered = list(
                itertools.islice(self._book.rows(name), HEADER_SEARCH_RECORDS + SAMPLE_RECORDS + 1)
            )
            head = [cells for _, cells in numbered]
            index, score = locate_header(head, dataset)
            if index >= 0 and (best is None or score > best[0]):
                best = (score, name, numbered)
        if best is None:
            raise UnreadableFileError(file_name, "no sheet of the workbook has a header row")
        _, self._sheet, numbered = best
        index, header, preamble, samples = layout_from_records(
            [cells for _, cells in numbered],
            [number for number, _ in numbered],
            complete=True,
            dataset=dataset,
        )
        self.format = FileFormat(
            encoding="workbook",
            delimiter="sheet",
            header=header,
            header_index=index,
            preamble=preamble,
            samples=samples,
            sheet=self._sheet,
        )
        self._start()

    @property
    def bytes_read(self) -> int:
        return self._counter.count

    def _batches(self, size: int) -> Iterator[list[list[str]]]:
        size = min(size, SHEET_CHUNK_ROWS)
        width = len(self.format.header)
        limit = min(MAX_COLUMNS, width + COLUMNS_PAST_HEADER)
        rows = self._book.rows(self._sheet, limit)
        while True:
            batch = [_trimmed(cells, width) for _, cells in itertools.islice(rows, size)]
            if not batch:
                self._book.close()
                self._spool.close()
                return
            yield batch


def _trimmed(record: list[str], width: int) -> list[str]:
    """Empty cells past the header's width are the sheet's used range, not ragged data."""
    end = len(record)
    while end > width and not record[end - 1].strip():
        end -= 1
    return record[:end]
