"""Row rules as pandera schemas built from the dataset declarations: required fields present,
values of their type, within their length and allowed values; and `judge_rows`, the one
function that normalizes and judges rows, whether read from a file or fixed by a reviewer."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pandas as pd
import pandera.pandas as pa

from ingestion_pipeline.constants import IssueKind
from ingestion_pipeline.datasets import (
    CONTACTS,
    DECIMAL_PRECISION,
    Dataset,
    Field,
    FieldType,
    Normalization,
)
from ingestion_pipeline.emails import is_valid_email, normalize_email
from ingestion_pipeline.normalize import normalize_series

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# At most 18 digits: every such integer fits PostgreSQL's bigint.
_INTEGER = r"[+-]?\d{1,18}"
_DECIMAL = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?"
_DECIMAL_PARTS = r"[+-]?(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d{1,3}))?"
_DATE = r"\d{4}-\d{2}-\d{2}"
_TIMESTAMP = _DATE + r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?"
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")


def _is_json(values: pd.Series) -> pd.Series:
    def parses(text: str) -> bool:
        try:
            json.loads(text)
        except ValueError:
            return False
        return True

    # A missing value passes (whether it may be missing is another rule).
    return values.isna() | values.map(parses, na_action="ignore").eq(True)


def _fits_decimal(values: pd.Series, scale: int | None) -> pd.Series:
    """True where a value is a decimal number with at most `scale` decimal places and at most
    DECIMAL_PRECISION digits in all (trailing zeros after the point and exponents counted as
    PostgreSQL counts them: 19.900 and 1.99e1 have two places)."""
    shaped = values.str.fullmatch(_DECIMAL).fillna(False).astype(bool)
    if scale is None:
        return shaped
    parts = values.where(shaped).str.extract(_DECIMAL_PARTS)
    whole, fraction = parts[0].fillna(""), parts[1].fillna("")
    digits = whole + fraction
    exponent = pd.to_numeric(parts[2], errors="coerce").fillna(0).astype(int)
    point = whole.str.len() + exponent  # digits before the decimal point once shifted
    places = (digits.str.rstrip("0").str.len() - point).clip(lower=0)
    leading_zeros = digits.str.len() - digits.str.lstrip("0").str.len()
    integer_digits = (point - leading_zeros).clip(lower=0)
    return shaped & (places <= scale) & (integer_digits <= DECIMAL_PRECISION - scale)


def _type_verdict(field: Field, values: pd.Series) -> pd.Series:
    """True where a (normalized, non-missing) value is of the field's type."""
    kind = field.type
    if kind is FieldType.EMAIL:
        return is_valid_email(values)
    if kind is FieldType.UUID:
        return values.str.fullmatch(_UUID)
    if kind is FieldType.INTEGER:
        return values.str.fullmatch(_INTEGER)
    if kind is FieldType.DECIMAL:
        return _fits_decimal(values, field.scale)
    if kind is FieldType.BOOLEAN:
        return values.isin(("true", "false"))
    if kind in (FieldType.DATE, FieldType.TIMESTAMP):
        pattern = _DATE if kind is FieldType.DATE else _TIMESTAMP
        shaped = values.str.fullmatch(pattern).fillna(False).astype(bool)
        # The shape alone lets 2025-13-45 through; the calendar decides.
        parsed = pd.to_datetime(values.where(shaped), format="ISO8601", errors="coerce", utc=True)
        return shaped & parsed.notna()
    if kind is FieldType.JSON:
        return _is_json(values)
    return pd.Series(True, index=values.index)


def _column(field: Field) -> pa.Column:
    checks = []
    if field.required:
        checks.append(pa.Check(lambda s: s.notna(), name="required", ignore_na=False))
    if field.type is not FieldType.TEXT:
        checks.append(
            pa.Check(
                lambda s, f=field: s.isna() | _type_verdict(f, s).fillna(False).astype(bool),
                name="type",
                ignore_na=False,
            )
        )
    if field.max_length is not None:
        checks.append(
            pa.Check(
                lambda s, n=field.max_length: s.isna() | (s.str.len() <= n),
                name="max_length",
                ignore_na=False,
            )
        )
    if field.allowed:
        checks.append(
            pa.Check(
                lambda s, a=field.allowed: s.isna() | s.isin(a), name="allowed", ignore_na=False
            )
        )
    return pa.Column(str, checks=checks, nullable=True, coerce=True)


@cache
def row_schema(dataset: Dataset) -> pa.DataFrameSchema:
    """The dataset's row rules as a pandera schema over its (normalized) fields."""
    return pa.DataFrameSchema(
        {f.name: _column(f) for f in dataset.fields}, strict=False, name=f"{dataset.name}_row"
    )


def _kind(field: Field, check: str) -> str:
    if check == "required":
        return IssueKind.MISSING_FIELD.value
    if check == "max_length":
        return IssueKind.VALUE_TOO_LONG.value
    if check == "type" and field.type is FieldType.EMAIL:
        return IssueKind.INVALID_EMAIL.value
    return IssueKind.INVALID_VALUE.value


def row_problems(frame: pd.DataFrame, dataset: Dataset = CONTACTS) -> pd.Series:
    """Judge `frame` (the dataset's fields, normalized) by the dataset's row schema and return
    each row's problems.

    Each value is a PostgreSQL text[] literal of `kind:field` codes in field order, then check
    order, so the same row always yields the same literal; `{}` for a clean row. The schema's
    checks run through pandera's check API, each over the whole column; pandera's error report
    (a frame of every failure case, built per check and concatenated) would cost three times
    the checks themselves on a 1M-row file, and only the verdicts are needed.
    """
    failed_by_code: dict[str, np.ndarray] = {}
    fields = {f.name: f for f in dataset.fields}
    for name, column in row_schema(dataset).columns.items():
        values = frame[name].astype("str")
        for check in column.checks:
            passed = check(values).check_output.to_numpy(dtype=bool, na_value=False)
            if passed.all():
                continue
            code = f"{_kind(fields[name], check.name)}:{name}"
            earlier = failed_by_code.get(code)
            failed_by_code[code] = ~passed if earlier is None else earlier | ~passed
    problems = np.full(len(frame), "{}", dtype=object)
    if failed_by_code:
        failing = np.logical_or.reduce(list(failed_by_code.values()))
        rows = np.flatnonzero(failing)
        joined = np.full(len(rows), "", dtype=object)
        for code, failed in failed_by_code.items():
            joined = joined + np.where(failed[rows], code + ",", "")
        problems[rows] = ["{" + text[:-1] + "}" for text in joined]
    return pd.Series(problems, index=frame.index, dtype="str")


def normalize_field(field: Field, values: pd.Series) -> pd.Series:
    """A field's values as stored and compared: trimmed, NFC, then by its normalization."""
    text = normalize_series(values)
    if field.type is FieldType.EMAIL:
        return normalize_email(text)
    if field.normalization is Normalization.LOWER or field.type is FieldType.BOOLEAN:
        text = text.str.lower()
    elif field.normalization is Normalization.UPPER:
        text = text.str.upper()
    if field.type is FieldType.BOOLEAN:
        text = text.mask(text.isin(_TRUE), "true").mask(text.isin(_FALSE), "false")
    return text


def judge_rows(frame: pd.DataFrame, dataset: Dataset) -> pd.DataFrame:
    """The rows' fields normalized, with their `problems` (and, for contacts, the email as
    typed beside `email_normalized`): what staging stores and what a reviewer's fix becomes.

    Changes and returns `frame` itself: both callers own the frame they pass.
    """
    out = frame
    if dataset.staged_in_columns:
        # Contacts show the address as typed and compare it normalized.
        for name in dataset.field_names:
            out[name] = normalize_series(out[name])
        key = dataset.key
        out[f"{key}_normalized"] = normalize_email(out[key])
        checked = out[list(dataset.field_names)].assign(**{key: out[f"{key}_normalized"]})
    else:
        for f in dataset.fields:
            out[f.name] = normalize_field(f, out[f.name])
        checked = out
    out["problems"] = row_problems(checked, dataset)
    return out
