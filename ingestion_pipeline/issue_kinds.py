"""Every kind of issue a row can have, with the message a reviewer reads: one registry.

Messages are templates over what the issue is about (`{value}`, `{field}`, ...); validation
turns them into SQL, and a problem code whose kind is not here stops validation with an error
instead of being shown under some other kind's words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ingestion_pipeline.constants import IssueKind


@dataclass(frozen=True)
class KindSpec:
    """One issue kind: its public name, when it arises, and its message template."""

    kind: str
    arises: str
    message: str
    # Found by the row rules on one row (the code `kind:field` staged with it), not across rows.
    row_rule: bool = False


# Placeholders: value (the row's value of the field), field, dataset, expected (the type or
# the allowed values), max_length, copies (rows sharing a key), key (the key's value), parent
# (a referenced dataset), detail (the third part of a malformed_record code).
KINDS: dict[str, KindSpec] = {
    spec.kind: spec
    for spec in (
        KindSpec(
            IssueKind.MISSING_FIELD.value,
            "a required field is blank",
            "{field} is required but empty",
            row_rule=True,
        ),
        KindSpec(
            IssueKind.INVALID_EMAIL.value,
            "an email field does not hold an address",
            '"{value}" is not a valid email address',
            row_rule=True,
        ),
        KindSpec(
            IssueKind.INVALID_VALUE.value,
            "a value is not of the field's type or not one of its allowed values",
            '{dataset}.{field} "{value}" is not {expected}',
            row_rule=True,
        ),
        KindSpec(
            IssueKind.VALUE_TOO_LONG.value,
            "a value is longer than the field allows",
            "{field} is longer than {max_length} characters",
            row_rule=True,
        ),
        KindSpec(
            IssueKind.MALFORMED_RECORD.value,
            "a record that is not an object, holds NUL bytes or has values past the header's "
            "last column (a record with fewer fields is padded, not an issue)",
            "{detail}",
            row_rule=True,
        ),
        KindSpec(
            IssueKind.DUPLICATE_EMAIL.value,
            "several rows of a contacts file share an email",
            "{key} appears on {copies} rows of this file",
        ),
        KindSpec(
            IssueKind.DUPLICATE_KEY.value,
            "several rows of a file share the natural key",
            "{dataset}.{field} {key} appears on {copies} rows of this file",
        ),
        KindSpec(
            IssueKind.EXISTING_CONTACT.value,
            "the tenant already has a contact with this email",
            "a contact with email {key} already exists",
        ),
        KindSpec(
            IssueKind.EXISTING_KEY.value,
            "the tenant already has a row with this key (merge policy insert)",
            "{dataset}.{field} {key} already exists",
        ),
        KindSpec(
            IssueKind.MISSING_REFERENCE.value,
            "a reference to a key the tenant does not have",
            "{dataset}.{field} {value} not in {parent}",
        ),
    )
}

# The kinds whose codes the row rules stage with each row (schemas.row_problems).
ROW_RULE_KINDS: tuple[str, ...] = tuple(k for k, spec in KINDS.items() if spec.row_rule)

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class UnknownIssueKindError(LookupError):
    """A problem code whose kind the registry does not know."""


def spec(kind: str) -> KindSpec:
    """The registered kind; raises UnknownIssueKindError for any other."""
    try:
        return KINDS[kind]
    except KeyError:
        raise UnknownIssueKindError(
            f"issue kind {kind!r} is not registered (known: {', '.join(sorted(KINDS))})"
        ) from None


def template_parts(kind: str) -> list[tuple[str, str]]:
    """The message template as ("text", literal) and ("var", name) parts, in order."""
    parts: list[tuple[str, str]] = []
    template = spec(kind).message
    last = 0
    for match in _PLACEHOLDER.finditer(template):
        if match.start() > last:
            parts.append(("text", template[last : match.start()]))
        parts.append(("var", match.group(1)))
        last = match.end()
    if last < len(template):
        parts.append(("text", template[last:]))
    return parts
