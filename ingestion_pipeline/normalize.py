"""The one normalization every field value goes through, uploaded or fixed by a reviewer:
surrounding white space trimmed, one Unicode spelling (NFC), blank as missing."""

from __future__ import annotations

import unicodedata

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def normalize_text(value: str | None) -> str | None:
    """One value: trimmed, NFC ("é" typed as e + combining accent is the single character)."""
    if value is None:
        return None
    text = unicodedata.normalize("NFC", value.strip())
    return text or None


def normalize_series(values: pd.Series) -> pd.Series:
    """normalize_text over a column, vectorized."""
    text = values.astype("str").str.strip()
    # Arrow's kernel, not pandas' str.normalize (Python, value by value): the same NFC for
    # every code point (compared with unicodedata over all of them), ten times faster.
    nfc = pc.utf8_normalize(pa.array(text, type=pa.large_string()), form="NFC")
    text = text_column(nfc, text.index)
    return text.mask(text == "", None)


def text_column(values: pa.Array, index: pd.Index) -> pd.Series:
    """Arrow text as a pandas str column on `index`, placed by position (a Series built from
    another Series would be aligned to its index instead)."""
    return pd.Series(values.to_pandas(types_mapper=pd.ArrowDtype).array, index=index).astype("str")
