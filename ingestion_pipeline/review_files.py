"""The review file round trip: rows with issues out as CSV, decisions back in.

Plain Python (no Dagster import): the CLI, the assets and the tests share it.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ingestion_pipeline.constants import REVIEWS_PREFIX
from ingestion_pipeline.datasets import CONTACTS, Dataset
from ingestion_pipeline.reading import UnreadableFileError, open_upload

ROW_COLUMN = "row"
PROBLEMS_COLUMN = "problems"
ACTION_COLUMN = "action"
REVIEW_COLUMNS: tuple[str, ...] = (
    ROW_COLUMN,
    *CONTACTS.field_names,
    PROBLEMS_COLUMN,
    ACTION_COLUMN,
)


def review_columns(dataset: Dataset) -> tuple[str, ...]:
    """The review file's header: row, the dataset's fields, problems, action."""
    return (ROW_COLUMN, *dataset.field_names, PROBLEMS_COLUMN, ACTION_COLUMN)


ACTIONS = ("fix", "discard")
ISSUES_FILE = "issues.csv"
DECISIONS_FILE = "decisions.csv"
MAPPING_FILE = "mapping.json"
# A mapping file is a small JSON object; anything larger is not one.
MAX_MAPPING_BYTES = 64 * 1024

# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def issues_key(job_id: str) -> str:
    return f"{REVIEWS_PREFIX}{job_id}/{ISSUES_FILE}"


def decisions_key(job_id: str) -> str:
    return f"{REVIEWS_PREFIX}{job_id}/{DECISIONS_FILE}"


def mapping_key(job_id: str) -> str:
    return f"{REVIEWS_PREFIX}{job_id}/{MAPPING_FILE}"


def parse_review_key(key: str) -> tuple[str, str] | None:
    """(job id, file name) of a reviews/<job_id>/decisions.csv or mapping.json key, else None."""
    if not key.startswith(REVIEWS_PREFIX):
        return None
    parts = key[len(REVIEWS_PREFIX) :].split("/")
    if len(parts) == 2 and parts[1] in (DECISIONS_FILE, MAPPING_FILE) and parts[0]:
        return parts[0], parts[1]
    return None


def parse_decisions_key(key: str) -> str | None:
    """The job id of a reviews/<job_id>/decisions.csv key, else None."""
    parsed = parse_review_key(key)
    return parsed[0] if parsed and parsed[1] == DECISIONS_FILE else None


class MappingFileError(ValueError):
    """A mapping file that cannot be applied; names the file and what is wrong."""


def parse_mapping_file(stream: BinaryIO, file_name: str) -> dict[str, Any]:
    """Read reviews/<job_id>/mapping.json: `{"email": "E-mail 1 - Value", "company": null,
    "first_name": ["Given Name", "First Name"], ...}` (field -> column, columns or null)."""
    data = stream.read(MAX_MAPPING_BYTES + 1)
    if len(data) > MAX_MAPPING_BYTES:
        raise MappingFileError(f"{file_name}: larger than {MAX_MAPPING_BYTES} bytes")
    try:
        value = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MappingFileError(f"{file_name}: not valid UTF-8 JSON ({exc})") from exc
    if isinstance(value, dict) and isinstance(value.get("fields"), dict):
        value = value["fields"]  # the shape `import --json` shows as suggested_mapping
    if not isinstance(value, dict):
        raise MappingFileError(f"{file_name}: expected an object of field -> column")
    for name, columns in value.items():
        items = columns if isinstance(columns, list) else [columns]
        if not all(c is None or isinstance(c, str) for c in items):
            raise MappingFileError(
                f"{file_name}: field {name!r}: a column name, a list of them, or null"
            )
    return value


def neutralize(value: str | None) -> str:
    """Make a cell safe to open in a spreadsheet, reversibly (see `restore`)."""
    if not value:
        return ""
    if value.startswith(_FORMULA_STARTS) or value.startswith("'"):
        return "'" + value
    return value


def restore(value: str | None) -> str | None:
    """Undo `neutralize`: one leading apostrophe is removed."""
    if value and value.startswith("'"):
        return value[1:] or None
    return value


def write_issues_csv(
    rows: Iterable[Mapping[str, Any]], out: BinaryIO, dataset: Dataset = CONTACTS
) -> None:
    """The review file: one line per row with issues, UTF-8 with a BOM so Excel reads it right.

    Rows are written as they come, so a job with a million problem rows needs no more memory
    than one with ten.
    """
    out.write(codecs.BOM_UTF8)
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(review_columns(dataset))
    for row in rows:
        writer.writerow(
            [
                row["row_number"],
                *(neutralize(row[name]) for name in dataset.field_names),
                neutralize(row["problems"]),
                "",
            ]
        )
    text.flush()
    text.detach()


def render_issues_csv(rows: Iterable[Mapping[str, Any]], dataset: Dataset = CONTACTS) -> bytes:
    """The review file as bytes (see write_issues_csv)."""
    buffer = io.BytesIO()
    write_issues_csv(rows, buffer, dataset)
    return buffer.getvalue()


@dataclass(frozen=True)
class Decision:
    """One reviewer decision on one record."""

    row_number: int
    action: str
    changes: dict[str, str | None] = field(default_factory=dict)


class DecisionFileError(ValueError):
    """A decisions file that cannot be applied; names the file, the record and the field."""


def parse_decisions(
    stream: BinaryIO, file_name: str, dataset: Dataset = CONTACTS
) -> list[Decision]:
    """Read a decisions file (the review file with `action` filled in) into decisions.

    Lines with an empty action are left alone. For `fix`, the dataset's fields on the line
    become the row's values; for `discard`, the row is set aside.
    """
    try:
        source = open_upload(stream, file_name, dataset)
        if ROW_COLUMN not in {name.casefold() for name in source.format.header}:
            raise DecisionFileError(f"{file_name}: no '{ROW_COLUMN}' column")
        decisions: dict[int, Decision] = {}
        for chunk in source.chunks(10_000):
            for record in chunk.frame.to_dict("records"):
                decision = _decision(record, file_name, dataset)
                if decision is not None:
                    decisions[decision.row_number] = decision
    except UnreadableFileError as exc:
        raise DecisionFileError(str(exc)) from exc
    return [decisions[n] for n in sorted(decisions)]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _decision(record: dict[str, Any], file_name: str, dataset: Dataset) -> Decision | None:
    extra = {k.casefold(): v for k, v in json.loads(record["extra"] or "{}").items()}
    where = f"{file_name}, record {record['row_number']}"
    action = (_text(extra.get(ACTION_COLUMN)) or "").strip().lower()
    if not action:
        return None
    if action not in ACTIONS:
        raise DecisionFileError(
            f"{where}: action must be one of {', '.join(ACTIONS)} or empty, got {action!r}"
        )
    raw_row = _text(extra.get(ROW_COLUMN))
    try:
        row_number = int(raw_row or "")
    except ValueError:
        raise DecisionFileError(f"{where}: row must be a record number, got {raw_row!r}") from None
    if action == "discard":
        return Decision(row_number, action)
    changes = {name: restore(_text(record[name])) for name in dataset.field_names}
    return Decision(row_number, action, changes)
