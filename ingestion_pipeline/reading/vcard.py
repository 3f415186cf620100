"""vCard files (.vcf), the only contacts export of Apple Contacts and iCloud (and one of
Google's and Outlook's): each card becomes one record with fixed columns, streamed card by
card into the same chunks as CSV. Cards hold contacts: no other dataset is read from them."""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from typing import BinaryIO

import pandas as pd

from ingestion_pipeline.datasets import CONTACTS, Dataset
from ingestion_pipeline.reading.detect import SAMPLE_RECORDS, FileFormat, detect_encoding
from ingestion_pipeline.reading.errors import (
    LineTooLongError,
    UnreadableFileError,
    bounded_lines,
)
from ingestion_pipeline.reading.mapping import is_contacts
from ingestion_pipeline.reading.records import ByteCounter, PrefixedReader, TabularFile

VCARD_EXTENSIONS: tuple[str, ...] = (".vcf", ".vcard")
# The columns a card is read into; repeated properties fill "Email 2", "Phone 3" and so on.
REPEATED = {"EMAIL": ("Email", 3), "TEL": ("Phone", 3)}
SINGLE = {
    "FN": "Full Name",
    "TITLE": "Title",
    "ADR": "Address",
    "BDAY": "Birthday",
    "URL": "URL",
    "NOTE": "Note",
}
VCARD_HEADER: tuple[str, ...] = (
    "Email",
    "Email 2",
    "Email 3",
    "First Name",
    "Last Name",
    "Company",
    "Department",
    "Full Name",
    "Title",
    "Phone",
    "Phone 2",
    "Phone 3",
    "Address",
    "Birthday",
    "URL",
    "Note",
    "Show As",
)
# Apple's Contacts (Address Book) marks a card that stands for a company, not a person, with
# X-ABShowAs:COMPANY: its N is empty and its FN is the company's name, not a person's.
SHOW_AS = "X-ABSHOWAS"
COMPANY_CARD = "COMPANY"
# A card with more content lines than this is not a contact card.
MAX_CARD_LINES = 10_000


def _unescape(value: str) -> str:
    return (
        value.replace("\\n", "\n")
        .replace("\\N", "\n")
        .replace("\\,", ",")
        .replace("\\;", ";")
        # Apple escapes colons too ("http\\://www.apple.ch").
        .replace("\\:", ":")
    ).replace("\\\\", "\\")


def _components(value: str) -> list[str]:
    """Split a structured value (N, ORG, ADR) on ';' that are not escaped."""
    parts, current, escaped = [], [], False
    for char in value:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ";":
            parts.append(_unescape("".join(current)))
            current = []
        else:
            current.append(char)
    parts.append(_unescape("".join(current)))
    return parts


class VCardFile(TabularFile):
    """An open vCard file: one record per BEGIN:VCARD ... END:VCARD."""

    def __init__(
        self,
        stream: BinaryIO,
        file_name: str,
        counter: ByteCounter,
        *,
        dataset: Dataset = CONTACTS,
    ) -> None:
        if not is_contacts(dataset):
            raise UnreadableFileError(file_name, f"vCard files hold contacts, not {dataset.name}")
        self.file_name = file_name
        self.dataset = dataset
        self._counter = counter
        head = stream.read(64 * 1024)
        encoding = detect_encoding(head, file_name)
        text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(head)
        if not text.lstrip("\ufeff \t\r\n").upper().startswith("BEGIN:VCARD"):
            raise UnreadableFileError(file_name, "this is not a vCard file (no BEGIN:VCARD)")
        self._text = io.TextIOWrapper(
            io.BufferedReader(PrefixedReader(head, stream)), encoding=encoding, errors="replace"
        )
        self._cards = self._parse()
        self._head = [card for _, card in zip(range(SAMPLE_RECORDS), self._cards, strict=False)]
        self.format = FileFormat(
            encoding=encoding,
            delimiter="vcard",
            header=VCARD_HEADER,
            header_index=-1,
            samples=tuple(tuple(card) for card in self._head),
        )
        self._start()

    @property
    def bytes_read(self) -> int:
        return self._counter.count

    def _person_rows(self, raw: pd.DataFrame) -> pd.Series | None:
        """Cards of people: a company card's full name is the company's, never split into a
        person's first and last name (its names stay blank; its company comes from ORG)."""
        position = VCARD_HEADER.index("Show As")
        if position not in raw.columns:
            return None
        return raw[position].str.upper().ne(COMPANY_CARD)

    def _batches(self, size: int) -> Iterator[list[list[str]]]:
        batch = list(self._head)
        for card in self._cards:
            batch.append(card)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _lines(self) -> Iterator[tuple[int, str]]:
        """Unfolded content lines with the line number each starts on."""
        pending, start = None, 0
        for number, raw in enumerate(bounded_lines(self._text), start=1):
            line = raw.rstrip("\r\n").lstrip("\ufeff")
            if line[:1] in (" ", "\t") and pending is not None:
                pending += line[1:]
                continue
            if pending is not None:
                yield start, pending
            pending, start = line, number
        if pending is not None:
            yield start, pending

    def _parse(self) -> Iterator[list[str]]:
        done = 0
        try:
            for record in self._cards_read():
                yield record
                done += 1
        except LineTooLongError as exc:
            raise UnreadableFileError(
                self.file_name, str(exc), record=done + 1, line=exc.line
            ) from exc

    def _cards_read(self) -> Iterator[list[str]]:
        card: dict[str, list[str]] | None = None
        started = count = 0
        for number, line in self._lines():
            if not line.strip():
                continue
            name, _, value = line.partition(":")
            prop = name.split(";")[0].split(".")[-1].upper()
            if prop == "BEGIN" and value.strip().upper() == "VCARD":
                card, started, count = {}, number, count + 1
                continue
            if card is None:
                raise UnreadableFileError(
                    self.file_name,
                    f"a line outside BEGIN:VCARD ... END:VCARD: {line[:60]!r}",
                    record=count + 1,
                    line=number,
                )
            if prop == "END":
                yield self._record(card)
                card = None
                continue
            card.setdefault(prop, [])
            if len(card[prop]) < MAX_CARD_LINES:
                # The preferred value first, as the person's main address or number.
                preferred = "PREF" in name.upper()
                card[prop].insert(0, value) if preferred else card[prop].append(value)
        if card is not None:
            raise UnreadableFileError(
                self.file_name, "the last card has no END:VCARD", record=count, line=started
            )

    @staticmethod
    def _record(card: dict[str, list[str]]) -> list[str]:
        values = dict.fromkeys(VCARD_HEADER, "")
        for prop, (column, many) in REPEATED.items():
            for i, value in enumerate(card.get(prop, [])[:many]):
                values[column if i == 0 else f"{column} {i + 1}"] = _unescape(value)
        for prop, column in SINGLE.items():
            if card.get(prop):
                parts = _components(card[prop][0]) if prop == "ADR" else [card[prop][0]]
                values[column] = (
                    ", ".join(p for p in parts if p) if prop == "ADR" else (_unescape(parts[0]))
                )
        if card.get("N"):
            family, given, *_ = [*_components(card["N"][0]), "", ""]
            values["Last Name"], values["First Name"] = family, given
        if card.get("ORG"):
            company, *units = _components(card["ORG"][0])
            values["Company"], values["Department"] = company, "; ".join(u for u in units if u)
        if card.get(SHOW_AS):
            values["Show As"] = _unescape(card[SHOW_AS][0]).strip().upper()
            if values["Show As"] == COMPANY_CARD and not values["Company"]:
                # A company card with no ORG is named by its FN.
                values["Company"] = values["Full Name"]
        return [values[column] for column in VCARD_HEADER]
