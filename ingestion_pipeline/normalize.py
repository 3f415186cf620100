"""The one normalization every field value goes through, uploaded or fixed by a reviewer:
surrounding white space trimmed, one Unicode spelling (NFC), blank as missing."""

from __future__ import annotations

import unicodedata

import pandas as pd


def normalize_text(value: str | None) -> str | None:
    """One value: trimmed, NFC ("é" typed as e + combining accent is the single character)."""
    if value is None:
        return None
    text = unicodedata.normalize("NFC", value.strip())
    return text or None


def normalize_series(values: pd.Series) -> pd.Series:
    """normalize_text over a column, vectorized."""
    text = values.astype("str").str.strip()
    # ASCII text is NFC already; normalizing goes value by value in Python, so only the rest.
    other = ~text.str.isascii().fillna(True).astype(bool)
    if other.any():
        text = text.mask(other, text[other].str.normalize("NFC"))
    return text.mask(text == "", None)
