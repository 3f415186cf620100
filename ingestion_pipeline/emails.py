"""Email syntax verdicts at vectorized speed, agreeing with the email-validator library.

Plain ASCII addresses (the overwhelming majority) are accepted by a regular expression that only
matches what email-validator also accepts; everything else (quoted local parts, IDNA domains,
special-use TLDs, over-long parts, garbage) is judged by the library itself, one by one.
"""

from __future__ import annotations

from functools import lru_cache

import pandas as pd
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

_ATEXT = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
FAST_PATH = rf"{_ATEXT}+(?:\.{_ATEXT}+)*@(?:{_LABEL}\.)+[a-z]{{2,}}"
_SPECIAL_TLDS = sorted(name for name in SPECIAL_USE_DOMAIN_NAMES if "." not in name)
# Cases the library must judge even when the fast expression matches: a special-use TLD, a local
# part over 64 characters, a label over 63, a punycode (IDNA) label.
_NEEDS_LIBRARY = rf"\.(?:{'|'.join(_SPECIAL_TLDS)})$|^[^@]{{65,}}@|[^.@]{{64,}}|(?:^|[.@])xn--"


def normalize_email(values: pd.Series) -> pd.Series:
    """Trimmed, lowercased addresses; blanks become missing."""
    return values.str.strip().str.lower().replace("", None)


@lru_cache(maxsize=65_536)
def library_verdict(address: str) -> str | None:
    """None when email-validator accepts `address`, else its reason."""
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc)
    return None


def is_valid_email(values: pd.Series) -> pd.Series:
    """True for each normalized address email-validator would accept; missing values are False."""
    present = values.notna()
    text = values.where(present, "")
    fast = text.str.fullmatch(FAST_PATH) & (text.str.len() <= 254)
    fast &= ~text.str.contains(_NEEDS_LIBRARY, regex=True)
    verdict = fast.astype(bool)
    rest = text[present & ~verdict]
    # Without quotes, no '@', several, or white space is invalid whoever judges it.
    surely_invalid = ~rest.str.contains('"', regex=False) & (
        (rest.str.count("@") != 1) | rest.str.contains(r"\s", regex=True)
    )
    slow = rest.index[~surely_invalid]
    if len(slow):
        verdict[slow] = [library_verdict(a) is None for a in text[slow]]
    return verdict.astype(bool)
