"""Work out how a file was exported: its encoding, delimiter and which columns hold which field."""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass

from ingestion_pipeline.datasets import CONTACTS, Dataset
from ingestion_pipeline.reading.errors import UnreadableFileError
from ingestion_pipeline.reading.mapping import header_score

# How much of the file is looked at to decide encoding and delimiter.
SAMPLE_BYTES = 256 * 1024
# European Excel writes ';' so it is tried first; ties go to the earlier candidate.
DELIMITERS: tuple[str, ...] = (";", ",", "\t", "|")

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Control characters that never appear in text exports (tab, CR, LF and form feed do).
_BINARY_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f]")


@dataclass(frozen=True)
class FileFormat:
    """How to read one file: encoding, delimiter, where the header is and what it says."""

    encoding: str
    delimiter: str
    header: tuple[str, ...]
    # Set when the sample was pure ASCII: non-UTF-8 bytes met later are read in this encoding.
    fallback_encoding: str | None = None
    # Records (blank ones included) before the header, and the non-blank ones as text, with
    # their line (or sheet row) numbers: notes or a title above the column names.
    header_index: int = 0
    preamble: tuple[tuple[int, str], ...] = ()
    # The first data records, for the mapping and for the person asked to confirm it.
    samples: tuple[tuple[str, ...], ...] = ()
    sheet: str | None = None

    @property
    def delimiter_name(self) -> str:
        names = {";": "semicolon", ",": "comma", "\t": "tab", "|": "pipe", "json": "json array"}
        return names.get(self.delimiter, self.delimiter)


def detect_encoding(sample: bytes, file_name: str) -> str:
    """Pick the encoding from a BOM, then UTF-8, then cp1252, cp932 (Japanese) and latin-1."""
    for bom, encoding in _BOMS:
        if sample.startswith(bom):
            return encoding
    if not sample.strip():
        raise UnreadableFileError(file_name, "the file is empty")
    if b"\x00" in sample:
        even, odd = sample[0::2], sample[1::2]
        # UTF-16 without a BOM: ASCII text leaves every other byte zero.
        if odd.count(0) > len(odd) * 0.4 and even.count(0) < len(even) * 0.05:
            return "utf-16-le"
        if even.count(0) > len(even) * 0.4 and odd.count(0) < len(odd) * 0.05:
            return "utf-16-be"
        # A stray NUL or two in a text export becomes an issue on its record; many are binary.
        nuls = sample.count(0)
        if nuls > 8 or nuls * 50 > len(sample):
            raise UnreadableFileError(file_name, "this is a binary file, not a text export")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        sample.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        pass
    return "cp932" if _is_japanese_ansi(sample) else "latin-1"


# Hiragana, katakana (full and half width) and the CJK ideographs Japanese text is written in.
_JAPANESE = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f]")


def _is_japanese_ansi(sample: bytes) -> bool:
    """Whether bytes cp1252 cannot decode are Shift_JIS text (cp932, the ANSI code page of
    Japanese Windows, which Outlook and Excel write there): they decode as such, and most of
    what is not ASCII comes out as kana and kanji. Checked only after UTF-8 and cp1252 fail:
    a Western file almost always decodes as cp1252, and one that does not (a stray C1 byte)
    seldom decodes as cp932, let alone into Japanese."""
    try:
        text = codecs.getincrementaldecoder("cp932")().decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    wide = sum(1 for ch in text if ord(ch) > 0x7F)
    return wide > 0 and len(_JAPANESE.findall(text)) * 2 >= wide


def decode_sample(sample: bytes, encoding: str) -> str:
    """Decode the sample, tolerating a multi-byte character cut at its end."""
    decoder = codecs.getincrementaldecoder(encoding)()
    return decoder.decode(sample, final=False)


# How many records at the top of a file may come before its header (notes, a title).
HEADER_SEARCH_RECORDS = 30
SAMPLE_RECORDS = 20


def _records(text: str, delimiter: str, limit: int) -> tuple[list[list[str]], list[int]]:
    """Up to `limit` records of the sample and the line each starts on; a record the sample
    cuts off (or that breaks the CSV syntax) ends the list."""
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    records: list[list[str]] = []
    lines: list[int] = []
    try:
        while len(records) < limit:
            start = reader.line_num + 1
            records.append(next(reader))
            lines.append(start)
    except (csv.Error, StopIteration):
        pass
    return records, lines


def locate_header(records: list[list[str]], dataset: Dataset = CONTACTS) -> tuple[int, int]:
    """(index, score) of the record that is the header of `dataset`: the best-scoring one
    (mapping.header_score) among the first
    HEADER_SEARCH_RECORDS non-blank records, the earliest on a tie; with no score anywhere,
    the first record as wide as the widest."""
    best, best_score = -1, 0
    seen = 0
    for index, record in enumerate(records):
        if not any(cell.strip() for cell in record):
            continue
        seen += 1
        if seen > HEADER_SEARCH_RECORDS:
            break
        score = header_score(record, dataset)
        if score > best_score:
            best, best_score = index, score
    if best >= 0:
        return best, best_score
    filled = [sum(1 for c in r if c.strip()) for r in records[: HEADER_SEARCH_RECORDS * 2]]
    widest = max(filled, default=0)
    if widest == 0:
        return -1, 0
    return next(i for i, n in enumerate(filled) if n == widest), 0


def layout_from_records(
    records: list[list[str]], lines: list[int], complete: bool, dataset: Dataset = CONTACTS
) -> tuple[int, tuple[str, ...], tuple[tuple[int, str], ...], tuple[tuple[str, ...], ...]]:
    """Header index, cleaned header, preamble (line, text) and data samples of `records`."""
    index, _ = locate_header(records, dataset)
    if index < 0:
        return -1, (), (), ()
    header = tuple(_clean_header(records[index]))
    preamble = tuple(
        (lines[i], " ".join(c.strip() for c in r if c.strip()))
        for i, r in enumerate(records[:index])
        if any(c.strip() for c in r)
    )
    data = records[index + 1 :] if complete else records[index + 1 : -1]
    samples = tuple(tuple(r) for r in data if any(c.strip() for c in r))[:SAMPLE_RECORDS]
    return index, header, preamble, samples


def _clean_header(raw: list[str]) -> list[str]:
    names: list[str] = []
    seen: dict[str, int] = {}
    for position, cell in enumerate(raw, start=1):
        name = cell.replace("\ufeff", "").strip().strip('"').strip() or f"column_{position}"
        count = seen.get(name.casefold(), 0) + 1
        seen[name.casefold()] = count
        names.append(name if count == 1 else f"{name}_{count}")
    return names


def detect_format(
    sample: bytes, file_name: str, *, complete: bool = False, dataset: Dataset = CONTACTS
) -> FileFormat:
    """Decide encoding, delimiter and the header from the first bytes of a file.

    The delimiter is the candidate whose header maps to the most fields of `dataset`, so a comma
    inside a semicolon file's header does not fool it the way a frequency count would. The
    header need not be the first line: notes above it are skipped and reported. `complete`
    says the sample is the whole file (its last record is not cut off).
    """
    encoding = detect_encoding(sample, file_name)
    try:
        text = decode_sample(sample, encoding)
    except UnicodeDecodeError as exc:
        raise UnreadableFileError(file_name, f"cannot be decoded as {encoding}: {exc}") from exc
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise UnreadableFileError(file_name, "the file is empty")
    if len(_BINARY_CONTROLS.findall(text[:8192])) > 8:
        raise UnreadableFileError(file_name, "this is a binary file, not a text export")

    best = None
    for delimiter in DELIMITERS:
        records, lines = _records(text, delimiter, HEADER_SEARCH_RECORDS + SAMPLE_RECORDS + 1)
        index, score = locate_header(records, dataset)
        if index < 0:
            continue
        rank = (score, len(records[index]))
        if best is None or rank > best[0]:
            best = (rank, delimiter, records, lines)
    if best is None:
        raise UnreadableFileError(file_name, "no header row found")
    _, delimiter, records, lines = best
    index, header, preamble, samples = layout_from_records(records, lines, complete, dataset)
    return FileFormat(
        encoding=encoding,
        delimiter=delimiter,
        header=header,
        fallback_encoding="cp1252" if encoding == "utf-8" and sample.isascii() else None,
        header_index=index,
        preamble=preamble,
        samples=samples,
    )
