"""What the first bytes of an upload tell, at once: the answer to the upload request.

Computed from the stored object before any run, by the readers the run uses (`open_upload`
reads the header and its sample, never the records' chunks) and the mapping rules the run
applies (`importer.choose_mapping`), so the answer says what the run will decide. Plain
Python over a landing zone and an engine: the HTTP upload calls it, and a page can.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import logging
import zlib
from typing import Any, BinaryIO
from xml.parsers import expat

from sqlalchemy.engine import Engine

from ingestion_pipeline.constants import FIRST_NAME, FULL_NAME, LAST_NAME
from ingestion_pipeline.datasets import dataset_named
from ingestion_pipeline.db.import_jobs import ImportJob
from ingestion_pipeline.importer import choose_mapping
from ingestion_pipeline.landing import LandingZone
from ingestion_pipeline.reading import FileFormat, UnreadableFileError, open_upload
from ingestion_pipeline.reading.jsonl import JsonFile
from ingestion_pipeline.reading.mapping import (
    ColumnMapping,
    Method,
    is_contacts,
    mappable_fields,
)
from ingestion_pipeline.reading.open import GZIP_MAGIC, UploadFile, format_name
from ingestion_pipeline.reading.records import DelimitedFile
from ingestion_pipeline.reading.sheets import XlsxBook
from ingestion_pipeline.reading.spreadsheet import SpreadsheetFile
from ingestion_pipeline.reading.vcard import VCardFile

log = logging.getLogger(__name__)

# The stored bytes kept as they pass to the reader (what it reads ahead before it knows the
# header: a gzip upload this small is kept whole, trailer included), and how much text the row
# estimate averages over.
HEAD_BYTES = 1024 * 1024
ESTIMATE_BYTES = 64 * 1024
# The data records shown beside the header (a person mapping columns reads them).
SAMPLES = 5


def first_answer(landing: LandingZone, job: ImportJob, engine: Engine) -> dict[str, Any]:
    """The job's file as its first bytes tell: format, encoding and delimiter (or sheet),
    header, lines skipped above it, an estimate of its rows, the mapping the run will use with
    how each field was decided, and whether the job will wait for a person (NEEDS_MAPPING).

    A file the reader refuses is `{"error": <the reader's message>}`: the run fails with the
    same message."""
    try:
        return _answer(landing, job, engine)
    except UnreadableFileError as exc:
        return {"error": str(exc)}
    except Exception as exc:  # the upload stands whatever happens here; the run tells more
        log.exception("first answer of job %s", job.job_id)
        return {"error": f"{job.file_name}: could not be inspected ({type(exc).__name__})"}


def _answer(landing: LandingZone, job: ImportJob, engine: Engine) -> dict[str, Any]:
    with landing.open(job.source_key, job.source_etag) as stored:
        head = _Head(stored, HEAD_BYTES)
        reader = open_upload(head, job.file_name, job.declaration)  # type: ignore[arg-type]
    size = job.source_size
    if size is None:
        info = landing.stat(job.source_key)
        size = info.size if info is not None else len(head.kept)
    decision = choose_mapping(engine, job, reader.format, reader.suggestion)
    gzipped = head.kept[:2] == GZIP_MAGIC
    fmt = reader.format
    rows, basis = _row_estimate(reader, head.kept, size, gzipped)
    text = not isinstance(reader, SpreadsheetFile)
    return {
        "format": format_name(reader, job.file_name),
        "compression": "gzip" if gzipped else None,
        "size_bytes": size,
        "encoding": fmt.encoding if text else None,
        "delimiter": fmt.delimiter_name if isinstance(reader, DelimitedFile) else None,
        "sheet": fmt.sheet,
        "header": list(fmt.header),
        "skipped_before_header": [{"line": n, "text": t[:200]} for n, t in fmt.preamble],
        "samples": [[str(v)[:200] for v in r] for r in fmt.samples[:SAMPLES]],
        "row_estimate": rows,
        "row_estimate_basis": basis,
        "mapping": mapping_answer(decision.mapping, decision.source),
        "needs_mapping": decision.needs_person,
    }


def mapping_answer(mapping: ColumnMapping, source: str) -> dict[str, Any]:
    """Per field, its column(s) and how they were decided (`remembered`, `person`,
    `profile: <tool>`, `alias`, `name`, `values`, `split`); the required fields left without
    a column, and those a person left empty on purpose."""
    fields: dict[str, dict[str, Any]] = {}
    split = FULL_NAME in mapping.fields and is_contacts(mapping.dataset)
    for name in mappable_fields(dataset_named(mapping.dataset)):
        if name in mapping.fields:
            fields[name] = {
                "columns": list(mapping.fields[name]),
                "method": mapping.methods.get(name, ""),
            }
        elif split and name in (FIRST_NAME, LAST_NAME):
            fields[name] = {"columns": list(mapping.fields[FULL_NAME]), "method": Method.SPLIT}
    return {
        "source": source,
        "profile": mapping.profile,
        "fields": fields,
        "unmapped": mapping.unmapped,
        "empty": list(mapping.empty),
    }


class _Head(io.RawIOBase):
    """The stored object as the reader reads it, its first `keep` bytes kept on the side."""

    def __init__(self, stream: BinaryIO, keep: int) -> None:
        self._stream = stream
        self._keep = keep
        self.kept = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self._stream.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        if len(self.kept) < self._keep:
            self.kept += data[: self._keep - len(self.kept)]
        return n


# --- The row estimate -------------------------------------------------------------------------


def _row_estimate(
    reader: UploadFile, kept: bytes, size: int, gzipped: bool
) -> tuple[int | None, str]:
    """(estimated data rows or None, how it was estimated)."""
    if isinstance(reader, SpreadsheetFile):
        return _sheet_rows(reader)
    if isinstance(reader, JsonFile) and reader.array:
        return None, "not estimated for a JSON array: counted when the file is read"
    size_note = ""
    if gzipped:
        raw, total, complete, size_note = _inflated_head(kept, size)
        if raw is None:
            return None, "the compressed start of the file could not be inflated"
    else:
        raw, total = kept[:ESTIMATE_BYTES], size
        complete = size <= ESTIMATE_BYTES and len(kept) >= size
    fmt = reader.format
    text = codecs.getincrementaldecoder(fmt.encoding)(errors="replace").decode(raw, final=complete)
    text = text.lstrip("\ufeff")
    if isinstance(reader, DelimitedFile):
        start, ends = _delimited_records(text, fmt)
    elif isinstance(reader, VCardFile):
        start, ends = 0, _card_ends(text)
    else:
        start, ends = 0, _line_ends(text)
    if complete:
        return len(ends), "counted: the whole file is in the sample"
    # The last record may be cut where the sample ends: it is not averaged.
    ends = [end for end in ends if end < len(text)]
    if not ends:
        return None, "no whole record in the first bytes"
    width = _byte_length(text[start : ends[-1]], fmt.encoding) / len(ends)
    before = _byte_length(text[:start], fmt.encoding)
    rows = max(len(ends), round((total - before) / width))
    per = f"{width:,.1f} bytes per record (the first {len(ends):,})"
    return rows, f"{total:,} bytes{size_note} / {per}"


def _inflated_head(kept: bytes, size: int) -> tuple[bytes | None, int, bool, str]:
    """The first inflated bytes of a gzip upload, its uncompressed size, whether it ends
    within them, and where the size comes from when it does not."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        raw = inflater.decompress(kept, ESTIMATE_BYTES)
    except zlib.error:
        return None, 0, False, ""
    if inflater.eof:
        return raw, len(raw), True, ""
    if len(kept) >= size >= 18:
        # The whole file is at hand: its trailer states the uncompressed size (modulo 4 GiB,
        # of the last member: trusted only when it is no less than what was inflated).
        stated = int.from_bytes(kept[size - 4 : size], "little")
        if stated >= len(raw):
            return raw, stated, False, " (uncompressed, as the gzip trailer states)"
    used = len(kept) - len(inflater.unconsumed_tail)
    total = round(size * len(raw) / max(1, used))
    return raw, total, False, " (uncompressed, estimated from the first bytes' compression ratio)"


def _delimited_records(text: str, fmt: FileFormat) -> tuple[int, list[int]]:
    """Where the data starts in `text` and where each non-blank data record ends, parsed
    like the format was detected (the header is record `header_index`)."""
    consumed = 0

    def lines():
        nonlocal consumed
        for line in io.StringIO(text, newline=""):
            consumed += len(line)
            yield line

    reader = csv.reader(lines(), delimiter=fmt.delimiter)
    start, ends = 0, []
    try:
        for index, record in enumerate(reader):
            if index <= fmt.header_index:
                start = consumed
            elif any(cell.strip() for cell in record):
                ends.append(consumed)
    except csv.Error:  # a quote the sample cuts open: the records before it count
        pass
    return start, ends


def _line_ends(text: str) -> list[int]:
    ends, position = [], 0
    for line in io.StringIO(text, newline=""):
        position += len(line)
        if line.strip():
            ends.append(position)
    return ends


def _card_ends(text: str) -> list[int]:
    ends, position = [], 0
    for line in io.StringIO(text, newline=""):
        position += len(line)
        if line.strip().upper() == "END:VCARD":
            ends.append(position)
    return ends


def _byte_length(text: str, encoding: str) -> int:
    # The BOM codecs would write one per call: their plain forms measure the text alone.
    plain = {"utf-8-sig": "utf-8", "utf-16": "utf-16-le", "utf-32": "utf-32-le"}
    return len(text.encode(plain.get(encoding, encoding), errors="replace"))


_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class _Stop(Exception):
    """Stops parsing the sheet at its `<dimension>` or its first row."""


def _sheet_rows(reader: SpreadsheetFile) -> tuple[int | None, str]:
    """The rows below the header as the sheet's `<dimension>` declares them (an Excel sheet
    states it before its rows; other workbooks are counted only when read)."""
    book = getattr(reader, "_book", None)
    sheet = reader.format.sheet
    if not isinstance(book, XlsxBook) or sheet not in book.sheets:
        return None, "this workbook does not state its row count: counted when the file is read"
    found: dict[str, str] = {}

    def start(name: str, attrs: dict[str, str]) -> None:
        local = name.rpartition(" ")[2]
        if local == "dimension":
            found["ref"] = attrs.get("ref", "")
        if local in ("dimension", "sheetData"):
            raise _Stop

    def refuse(*_: object) -> None:
        raise _Stop

    parser = expat.ParserCreate(namespace_separator=" ")
    parser.StartElementHandler = start
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    with contextlib.suppress(_Stop, UnreadableFileError):
        book.feed(book.sheets[sheet], parser)
    first, _, last = found.get("ref", "").upper().replace("$", "").partition(":")
    first, last = first.lstrip(_LETTERS), last.lstrip(_LETTERS)
    if not (first.isdigit() and last.isdigit()):
        return None, "the sheet does not state its size: counted when the file is read"
    fmt = reader.format
    header_row = max([int(first), *(n + 1 for n, _ in fmt.preamble)])
    rows = int(last) - header_row
    if rows < len(fmt.samples):
        return None, "the sheet's stated size is smaller than its rows: counted when read"
    return rows, f"the sheet's stated last row ({last}) less the header and the lines above it"
