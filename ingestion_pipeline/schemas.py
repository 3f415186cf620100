"""Row rules as a pandera model: required fields present, names of a sane length, and the
email a valid address."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from ingestion_pipeline.constants import (
    CANONICAL_FIELDS,
    COMPANY,
    EMAIL,
    FIRST_NAME,
    LAST_NAME,
    MAX_NAME_LENGTH,
    IssueKind,
)
from ingestion_pipeline.emails import is_valid_email


class ContactRow(pa.DataFrameModel):
    """One staged contact row after trimming (blank cells are missing values)."""

    email: Series[str] = pa.Field(nullable=True, coerce=True)
    first_name: Series[str] = pa.Field(nullable=True, coerce=True)
    last_name: Series[str] = pa.Field(nullable=True, coerce=True)
    company: Series[str] = pa.Field(nullable=True, coerce=True)

    @pa.check(*CANONICAL_FIELDS, name="required", ignore_na=False)
    def required(cls, values: Series[str]) -> Series[bool]:
        return values.notna()

    @pa.check(FIRST_NAME, LAST_NAME, COMPANY, name="max_length", ignore_na=False)
    def max_length(cls, values: Series[str]) -> Series[bool]:
        return values.isna() | (values.str.len() <= MAX_NAME_LENGTH)

    @pa.check(EMAIL, name="email_syntax", ignore_na=False)
    def email_syntax(cls, values: Series[str]) -> Series[bool]:
        return values.isna() | is_valid_email(values)

    class Config:
        strict = False


_KIND_BY_CHECK = {
    "required": IssueKind.MISSING_FIELD.value,
    "email_syntax": IssueKind.INVALID_EMAIL.value,
    "max_length": IssueKind.VALUE_TOO_LONG.value,
}


def row_problems(frame: pd.DataFrame) -> pd.Series:
    """Validate `frame` (canonical columns, email normalized) and return each row's problems.

    Each value is a PostgreSQL text[] literal of `kind:field` codes, `{}` for a clean row.
    """
    problems = pd.Series("{}", index=frame.index, dtype="str")
    try:
        ContactRow.validate(frame[list(CANONICAL_FIELDS)], lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        cases = cases[cases["check"].isin(_KIND_BY_CHECK) & cases["index"].notna()]
        codes = cases["check"].map(_KIND_BY_CHECK) + ":" + cases["column"].astype(str)
        # Keep codes in field order so the same row always yields the same literal.
        order = cases["column"].map({name: i for i, name in enumerate(CANONICAL_FIELDS)})
        ordered = pd.DataFrame(
            {"index": cases["index"].astype(int), "order": order, "code": codes}
        ).sort_values(["index", "order"])
        index = ordered["index"].to_numpy()
        starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
        # np.add.reduceat concatenates the codes of each row without a Python-level groupby.
        joined = np.add.reduceat((ordered["code"] + ",").to_numpy(dtype=object), starts)
        problems.loc[index[starts]] = ["{" + text[:-1] + "}" for text in joined]
    return problems
