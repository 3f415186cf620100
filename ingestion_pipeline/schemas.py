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
from ingestion_pipeline.datasets import CONTACTS, Dataset, Field, FieldType, Normalization
from ingestion_pipeline.emails import is_valid_email, normalize_email
from ingestion_pipeline.normalize import normalize_series

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# At most 18 digits: every such integer fits PostgreSQL's bigint.
_INTEGER = r"[+-]?\d{1,18}"
_DECIMAL = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?"
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
        return values.str.fullmatch(_DECIMAL)
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


_CHECK_ORDER = {"required": 0, "type": 1, "max_length": 2, "allowed": 3}


def row_problems(frame: pd.DataFrame, dataset: Dataset = CONTACTS) -> pd.Series:
    """Validate `frame` (the dataset's fields, normalized) and return each row's problems.

    Each value is a PostgreSQL text[] literal of `kind:field` codes, `{}` for a clean row.
    """
    problems = pd.Series("{}", index=frame.index, dtype="str")
    try:
        row_schema(dataset).validate(frame[list(dataset.field_names)], lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        cases = cases[cases["check"].isin(_CHECK_ORDER) & cases["index"].notna()]
        if cases.empty:
            return problems
        fields = {f.name: f for f in dataset.fields}
        kinds = [_kind(fields[c], k) for c, k in zip(cases["column"], cases["check"], strict=True)]
        codes = pd.Series(kinds, index=cases.index) + ":" + cases["column"].astype(str)
        # Codes in field order, then check order, so the same row always yields the same literal.
        order = cases["column"].map({n: i for i, n in enumerate(dataset.field_names)}) * 10
        order = order + cases["check"].map(_CHECK_ORDER)
        ordered = (
            pd.DataFrame({"index": cases["index"].astype(int), "order": order, "code": codes})
            .drop_duplicates(["index", "code"])
            .sort_values(["index", "order"])
        )
        index = ordered["index"].to_numpy()
        starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
        # np.add.reduceat concatenates the codes of each row without a Python-level groupby.
        joined = np.add.reduceat((ordered["code"] + ",").to_numpy(dtype=object), starts)
        problems.loc[index[starts]] = ["{" + text[:-1] + "}" for text in joined]
    return problems


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
