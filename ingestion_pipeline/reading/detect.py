"""Work out how a file was exported: its encoding, delimiter and which columns hold which field."""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass, field

from ingestion_pipeline.constants import CANONICAL_FIELDS, EMAIL, HEADER_ALIASES, REQUIRED_FIELDS
from ingestion_pipeline.reading.errors import UnreadableFileError

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
_ALIAS_TO_FIELD: dict[str, str] = {
    alias: name for name, aliases in HEADER_ALIASES.items() for alias in aliases
}
_NOT_ALNUM = re.compile(r"[\W_]+", re.UNICODE)
# Control characters that never appear in text exports (tab, CR, LF and form feed do).
_BINARY_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f]")


@dataclass(frozen=True)
class FileFormat:
    """How to read one file: encoding, delimiter, and the position of every column."""

    encoding: str
    delimiter: str
    header: tuple[str, ...]
    fields: dict[str, int]
    extras: tuple[tuple[str, int], ...] = field(default=())
    # Set when the sample was pure ASCII: non-UTF-8 bytes met later are read in this encoding.
    fallback_encoding: str | None = None

    @property
    def delimiter_name(self) -> str:
        names = {";": "semicolon", ",": "comma", "\t": "tab", "|": "pipe", "json": "json array"}
        return names.get(self.delimiter, self.delimiter)


def header_key(name: str) -> str:
    """Compare header names ignoring case, spaces, punctuation and stray BOMs."""
    return _NOT_ALNUM.sub("", name.replace("\ufeff", "").strip().casefold())


def canonical_field(name: str) -> str | None:
    """The canonical field a header name stands for, if any."""
    return _ALIAS_TO_FIELD.get(header_key(name))


def detect_encoding(sample: bytes, file_name: str) -> str:
    """Pick the encoding from a BOM, then UTF-8, then cp1252 and latin-1."""
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
        return "latin-1"


def decode_sample(sample: bytes, encoding: str) -> str:
    """Decode the sample, tolerating a multi-byte character cut at its end."""
    decoder = codecs.getincrementaldecoder(encoding)()
    return decoder.decode(sample, final=False)


def _first_record(text: str, delimiter: str) -> list[str]:
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        for record in reader:
            if any(cell.strip() for cell in record):
                return record
    except csv.Error:
        return []
    return []


def _clean_header(raw: list[str]) -> list[str]:
    names: list[str] = []
    seen: dict[str, int] = {}
    for position, cell in enumerate(raw, start=1):
        name = cell.replace("\ufeff", "").strip().strip('"').strip() or f"column_{position}"
        count = seen.get(name.casefold(), 0) + 1
        seen[name.casefold()] = count
        names.append(name if count == 1 else f"{name}_{count}")
    return names


def _map_header(header: list[str]) -> tuple[dict[str, int], dict[str, list[str]]]:
    fields: dict[str, int] = {}
    claims: dict[str, list[str]] = {}
    for position, name in enumerate(header):
        canonical = canonical_field(name)
        if canonical is None:
            continue
        claims.setdefault(canonical, []).append(name)
        fields.setdefault(canonical, position)
    return fields, claims


def detect_format(sample: bytes, file_name: str) -> FileFormat:
    """Decide encoding, delimiter and column mapping from the first bytes of a file.

    The delimiter is the candidate whose first record maps to the most contact fields, so a
    comma inside a semicolon file's header does not fool it the way a frequency count would.
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

    best: tuple[tuple[int, int], str, list[str]] | None = None
    for delimiter in DELIMITERS:
        raw = _first_record(text, delimiter)
        if not raw:
            continue
        header = _clean_header(raw)
        fields, _ = _map_header(header)
        score = (len(fields), len(header))
        if best is None or score > best[0]:
            best = (score, delimiter, header)
    if best is None:
        raise UnreadableFileError(file_name, "no header row found")

    _, delimiter, header = best
    fields, claims = _map_header(header)
    shown = ", ".join(header[:12]) + (", ..." if len(header) > 12 else "")
    if EMAIL not in fields:
        raise UnreadableFileError(
            file_name, f"no email column found; the header has: {shown}", record=None
        )
    missing = [name for name in REQUIRED_FIELDS if name not in fields]
    if missing:
        raise UnreadableFileError(
            file_name, f"missing required column(s) {', '.join(missing)}; the header has: {shown}"
        )
    doubled = {name: cols for name, cols in claims.items() if len(cols) > 1}
    if doubled:
        detail = "; ".join(f"{name}: {', '.join(cols)}" for name, cols in doubled.items())
        raise UnreadableFileError(file_name, f"several columns claim the same field ({detail})")

    claimed = set(fields.values())
    extras = tuple((name, i) for i, name in enumerate(header) if i not in claimed)
    return FileFormat(
        encoding=encoding,
        delimiter=delimiter,
        header=tuple(header),
        fields={name: fields[name] for name in CANONICAL_FIELDS},
        extras=extras,
        fallback_encoding="cp1252" if encoding == "utf-8" and sample.isascii() else None,
    )
