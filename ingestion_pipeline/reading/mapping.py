"""Which columns of an upload hold which field of its dataset.

Contacts are decided from the header names, the known export profiles of the tools people use,
and the values themselves; any other dataset by its declared field names and aliases.

Plain Python, no Dagster: the importer records the mapping a job used, and asks a person when
the required fields cannot be mapped with confidence.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ingestion_pipeline.constants import (
    CANONICAL_FIELDS,
    COMPANY,
    EMAIL,
    FIRST_NAME,
    FULL_NAME,
    HEADER_ALIASES,
    LAST_NAME,
)
from ingestion_pipeline.datasets import CONTACTS, Dataset, dataset_named
from ingestion_pipeline.reading.errors import UnreadableFileError

# The fields a contacts mapping may name: full_name is read, split, and never stored.
MAPPABLE_FIELDS: tuple[str, ...] = (*CANONICAL_FIELDS, FULL_NAME)
_NOT_ALNUM = re.compile(r"[\W_]+", re.UNICODE)
# Good enough to tell an address from a name or a phone number in a sample; the rules judge it.
_EMAIL_LIKE = re.compile(r"^[^@\s<>(),;:\"]+@[^@\s<>(),;:\"]+\.[^@\s<>(),;:\"]+$")
# A column is an email candidate by its values when this share of its sampled values look like
# addresses (exports leave many cells blank: only filled cells count).
EMAIL_VALUE_SHARE = 0.6


class Method:
    """How a field's columns were decided, as recorded on the job."""

    REMEMBERED = "remembered"
    PERSON = "person"
    PROFILE = "profile"
    ALIAS = "alias"
    NAME = "name"
    VALUES = "values"
    SPLIT = "split"


def is_contacts(dataset: Dataset | str) -> bool:
    """Whether `dataset` (or its name) is contacts, the one read with profiles and hints."""
    return (dataset if isinstance(dataset, str) else dataset.name) == CONTACTS.name


def mappable_fields(dataset: Dataset = CONTACTS) -> tuple[str, ...]:
    """The fields a mapping of `dataset` may name (contacts: MAPPABLE_FIELDS)."""
    return MAPPABLE_FIELDS if is_contacts(dataset) else dataset.field_names


def header_key(name: str) -> str:
    """Compare header names ignoring case, spaces, punctuation and stray BOMs."""
    return _NOT_ALNUM.sub("", name.replace("\ufeff", "").strip().casefold())


def header_signature(header: Sequence[str]) -> str:
    """The shape of a header: the same export of the same tool has the same signature."""
    joined = "\x1f".join(header_key(name) for name in header)
    return hashlib.sha256(joined.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Localized:
    """The same export written by a localized version of the tool: its own header names."""

    language: str
    requires: tuple[str, ...]
    fields: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class Profile:
    """A tool's export: recognised by columns it always has; its columns for each field.

    `localized` are the header names of the tool's other languages (each recognised by its
    own columns). `multi_value_separator` joins several values of one cell (Google writes
    every e-mail of one type into one `E-mail N - Value` cell, ` ::: ` between them).
    """

    name: str
    requires: tuple[str, ...]
    fields: Mapping[str, tuple[str, ...]]
    localized: tuple[Localized, ...] = ()
    multi_value_separator: str | None = None


# Google joins the values of one field that share a type (and their types) with this.
GOOGLE_SEPARATOR = " ::: "


def _outlook(
    language: str,
    names: tuple[str, str, str],
    email: tuple[str, ...],
    company: tuple[str, ...],
) -> Localized:
    """Outlook's header in one language, recognised by its first, middle and last name
    columns (every Outlook contacts export has all three, side by side)."""
    first, _, last = names
    fields = {EMAIL: email, FIRST_NAME: (first,), LAST_NAME: (last,), COMPANY: company}
    return Localized(language, names, fields)


# Outlook (desktop, "Export to a file > Comma Separated Values") writes its column names in
# the language of the installation. Spellings from Microsoft's own table of localized Outlook
# CSV headers (Exchange's OutlookCsvLanguageSelect, per culture) and real exports (see
# files/exports/manifest.json); the address columns in the order E-mail, E-mail 2, E-mail 3.
# Spanish and Brazilian Outlook leave "E-mail Address" in English there; the translated
# spellings beside it ("Dirección de correo electrónico", "Endereço de email", the reformed
# "eletrónico") are accepted too, unconfirmed.
OUTLOOK_LOCALIZED: tuple[Localized, ...] = (
    _outlook(
        "de",
        ("Vorname", "Weitere Vornamen", "Nachname"),
        email=("E-Mail-Adresse", "E-Mail 2: Adresse", "E-Mail 3: Adresse"),
        company=("Firma",),
    ),
    _outlook(
        "fr",
        ("Prénom", "Deuxième prénom", "Nom"),
        email=("Adresse de messagerie", "Adresse de messagerie 2", "Adresse de messagerie 3"),
        company=("Société",),
    ),
    _outlook(
        "es",
        ("Nombre", "Segundo nombre", "Apellidos"),
        email=(
            "Dirección de correo electrónico",
            "E-mail Address",
            "Dirección de correo electrónico 2",
            "Dirección del correo electrónico 3",
        ),
        company=("Organización",),
    ),
    _outlook(
        "it",
        ("Nome", "Secondo nome", "Cognome"),
        email=(
            "Indirizzo posta elettronica",
            "Indirizzo posta elettronica 2",
            "Indirizzo posta elettronica 3",
        ),
        company=("Società",),
    ),
    _outlook(
        "pt-BR",
        ("Primeiro nome", "Segundo nome", "Sobrenome"),
        email=("Endereço de email", "E-mail Address", "Endereço de email 2", "Endereço de email 3"),
        company=("Empresa",),
    ),
    _outlook(
        "pt-PT",
        ("Primeiro nome", "Outros nomes/apelidos", "Apelido"),
        email=(
            "Endereço de correio electrónico",
            "Endereço de correio eletrónico",
            "Endereço do correio electrónico 2",
            "Endereço do correio electrónico 3",
        ),
        company=("Empresa",),
    ),
    _outlook(
        "nl",
        ("Voornaam", "Middelste naam", "Achternaam"),
        email=("E-mailadres", "E-mailadres 2", "E-mailadres 3"),
        company=("Bedrijf",),
    ),
    _outlook(
        "ja",
        ("名", "ミドル ネーム", "姓"),
        email=("電子メール アドレス", "電子メール 2 アドレス", "電子メール 3 アドレス"),
        company=("会社名",),
    ),
)


# Exact header spellings of the exports people bring (see README, "Files from the tools people
# use"). Several columns for one field are candidates in order: each row takes the first
# non-blank one. Compared with header_key, so case, spaces and punctuation do not matter.
PROFILES: tuple[Profile, ...] = (
    Profile(
        "Google Contacts",
        ("First Name", "Last Name", "E-mail 1 - Value", "Organization Name"),
        {
            EMAIL: ("E-mail 1 - Value", "E-mail 2 - Value", "E-mail 3 - Value"),
            FIRST_NAME: ("First Name",),
            LAST_NAME: ("Last Name",),
            COMPANY: ("Organization Name",),
        },
        multi_value_separator=GOOGLE_SEPARATOR,
    ),
    Profile(
        "Google Contacts (legacy Google CSV)",
        ("Given Name", "Family Name", "E-mail 1 - Value"),
        {
            EMAIL: ("E-mail 1 - Value", "E-mail 2 - Value", "E-mail 3 - Value"),
            FIRST_NAME: ("Given Name",),
            LAST_NAME: ("Family Name",),
            COMPANY: ("Organization 1 - Name",),
            FULL_NAME: ("Name",),
        },
        multi_value_separator=GOOGLE_SEPARATOR,
    ),
    Profile(
        "Outlook",
        ("First Name", "Last Name", "E-mail Address", "E-mail Type"),
        {
            EMAIL: ("E-mail Address", "E-mail 2 Address", "E-mail 3 Address"),
            FIRST_NAME: ("First Name",),
            LAST_NAME: ("Last Name",),
            COMPANY: ("Company",),
        },
        localized=OUTLOOK_LOCALIZED,
    ),
    Profile(
        "LinkedIn Connections",
        ("First Name", "Last Name", "URL", "Email Address", "Connected On"),
        {
            EMAIL: ("Email Address",),
            FIRST_NAME: ("First Name",),
            LAST_NAME: ("Last Name",),
            COMPANY: ("Company",),
        },
    ),
    Profile(
        "Salesforce Data Loader",
        ("FIRSTNAME", "LASTNAME", "EMAIL", "ACCOUNTID"),
        {
            EMAIL: ("EMAIL",),
            FIRST_NAME: ("FIRSTNAME",),
            LAST_NAME: ("LASTNAME",),
            COMPANY: ("ACCOUNT.NAME", "ACCOUNTNAME", "COMPANYNAME"),
        },
    ),
    Profile(
        "Zoho CRM",
        ("Record Id", "First Name", "Last Name", "Email", "Account Name"),
        {
            EMAIL: ("Email", "Secondary Email"),
            FIRST_NAME: ("First Name",),
            LAST_NAME: ("Last Name",),
            COMPANY: ("Account Name",),
        },
    ),
    Profile(
        "HubSpot",
        ("Record ID", "First Name", "Last Name", "Email"),
        {
            EMAIL: ("Email",),
            FIRST_NAME: ("First Name",),
            LAST_NAME: ("Last Name",),
            COMPANY: ("Company Name", "Associated Company", "Company"),
        },
    ),
    Profile(
        "Mailchimp",
        ("Email Address", "First Name", "Last Name", "MEMBER_RATING"),
        {
            EMAIL: ("Email Address",),
            FIRST_NAME: ("First Name",),
            LAST_NAME: ("Last Name",),
            COMPANY: ("Company", "Company Name"),
        },
    ),
    Profile(
        "Pipedrive",
        ("Person - Name",),
        {
            EMAIL: (
                "Person - Email - Work",
                "Person - Email - Home",
                "Person - Email - Other",
                "Person - Email",
            ),
            FIRST_NAME: ("Person - First name",),
            LAST_NAME: ("Person - Last name",),
            COMPANY: ("Person - Organization", "Organization - Name"),
            FULL_NAME: ("Person - Name",),
        },
    ),
    Profile(
        "Salesforce report",
        ("First Name", "Last Name", "Account Name", "Email"),
        {
            EMAIL: ("Email",),
            FIRST_NAME: ("First Name",),
            LAST_NAME: ("Last Name",),
            COMPANY: ("Account Name",),
        },
    ),
)

_ALIASES: dict[str, str] = {
    header_key(alias): name for name, aliases in HEADER_ALIASES.items() for alias in aliases
}


def canonical_field(name: str) -> str | None:
    """The field a header name stands for by the alias table, if any."""
    return _ALIASES.get(header_key(name))


# Words in a header that say what a column holds when no alias matches exactly, and words
# that say it holds something else about that field (an email's type, a name's phonetic form).
_NAME_HINTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (EMAIL, re.compile(r"e-?mail|courriel|correo")),
    (FIRST_NAME, re.compile(r"first.?name|given.?name|vorname|pr[eé]nom|nombre")),
    (LAST_NAME, re.compile(r"last.?name|surname|family.?name|nachname|apellido")),
    (COMPANY, re.compile(r"company|organi[sz]ation|employer|account.?name|firma|soci[eé]t[eé]")),
    (FULL_NAME, re.compile(r"^(full.?name|name|display.?name|contact.?name|person.?name)$")),
)
_NOT_THE_VALUE = re.compile(
    r"type|label|display|status|opt|bounce|domain|valid|verified|consent|phonetic|yomi|"
    r"\bid\b|date|count|owner|title|department|rating",
    re.IGNORECASE,
)


def split_full_name(value: str | None) -> tuple[str | None, str | None]:
    """First and last name from a full name: "Lee, Ann" -> (Ann, Lee); "Mary Ann Lee" ->
    (Mary Ann, Lee); a single word is a first name with no last name (the rules flag it)."""
    if value is None or not value.strip():
        return None, None
    text = " ".join(value.split())
    if "," in text:
        last, _, first = text.partition(",")
        return first.strip() or None, last.strip() or None
    first, _, last = text.rpartition(" ")
    return (first, last) if first else (last, None)


@dataclass
class ColumnMapping:
    """Columns per field (by header name, candidates in order) and how each was decided."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)
    profile: str | None = None
    # Required fields a person chose to leave unmapped: every row then has an issue on them.
    empty: list[str] = field(default_factory=list)
    dataset: str = CONTACTS.name

    def to_json(self) -> dict:
        data = {
            "fields": self.fields,
            "methods": self.methods,
            "profile": self.profile,
            "empty": self.empty,
        }
        # Contacts mappings stored before datasets existed have no key: keep them identical.
        if not is_contacts(self.dataset):
            data["dataset"] = self.dataset
        return data

    @classmethod
    def from_json(cls, data: Mapping) -> ColumnMapping:
        return cls(
            fields={k: list(v) for k, v in data.get("fields", {}).items()},
            methods=dict(data.get("methods", {})),
            profile=data.get("profile"),
            empty=list(data.get("empty", [])),
            dataset=data.get("dataset") or CONTACTS.name,
        )

    def with_method(self, method: str) -> ColumnMapping:
        """The same columns, every field marked as decided by `method`."""
        return ColumnMapping(
            {k: list(v) for k, v in self.fields.items()},
            {k: method for k in self.fields},
            self.profile,
            list(self.empty),
            self.dataset,
        )

    @property
    def _split_full_name(self) -> bool:
        """Whether contacts' first and last names come from a split of the full_name column."""
        return FULL_NAME in self.fields and is_contacts(self.dataset)

    @property
    def unmapped(self) -> list[str]:
        """Required fields with no column (for contacts, first and last name count as mapped
        by a split of full_name)."""
        return [
            name
            for name in dataset_named(self.dataset).required_fields
            if name not in self.fields
            and name not in self.empty
            and not (self._split_full_name and name in (FIRST_NAME, LAST_NAME))
        ]

    def stored_columns(self) -> dict[str, str]:
        """Each stored field's first column (contacts' full_name is split, not stored: its
        column stays in extra)."""
        split = FULL_NAME if is_contacts(self.dataset) else None
        return {name: cols[0] for name, cols in self.fields.items() if name != split}

    def check_read_as(self, file_name: str, dataset: Dataset) -> None:
        """Refuse to read a file of `dataset` with a mapping made for another dataset."""
        if self.dataset != dataset.name:
            raise UnreadableFileError(
                file_name, f"the mapping is for {self.dataset}, the file is read as {dataset.name}"
            )

    def positions(self, header: Sequence[str]) -> dict[str, tuple[int, ...]]:
        """Column positions per field in `header`; a name not in it raises KeyError."""
        index = {name: i for i, name in enumerate(header)}
        return {name: tuple(index[col] for col in cols) for name, cols in self.fields.items()}

    def describe(self) -> str:
        """`email <- "E-mail 1 - Value" (profile)`, one field a line."""
        dataset = dataset_named(self.dataset)
        lines = []
        for name in mappable_fields(dataset):
            cols = self.fields.get(name)
            if cols:
                shown = ", ".join(f'"{c}"' for c in cols)
                lines.append(f"{name} <- {shown} ({self.methods.get(name, '')})")
            elif name in dataset.required_fields:
                how = "split of full_name" if self._split_full_name else "not mapped"
                if name in (FIRST_NAME, LAST_NAME) and self._split_full_name:
                    lines.append(f"{name} <- {how} ({Method.SPLIT})")
                else:
                    lines.append(f"{name} <- {how}")
        return "\n".join(lines)


def looks_like_email(value: str) -> bool:
    return bool(_EMAIL_LIKE.match(value.strip()))


def email_columns_by_value(header: Sequence[str], samples: Sequence[Sequence[str]]) -> list[str]:
    """Columns whose filled sample values are mostly email addresses, in header order."""
    found = []
    for position, name in enumerate(header):
        values = [r[position].strip() for r in samples if position < len(r) and r[position].strip()]
        if values and sum(map(looks_like_email, values)) >= EMAIL_VALUE_SHARE * len(values):
            found.append(name)
    return found


@dataclass(frozen=True)
class Detected:
    """The export profile a header is, in the language it is written in."""

    profile: Profile
    name: str
    fields: Mapping[str, tuple[str, ...]]


def _profile_for(keys: Mapping[str, str]) -> Detected | None:
    for profile in PROFILES:
        if all(header_key(col) in keys for col in profile.requires):
            return Detected(profile, profile.name, profile.fields)
        for localized in profile.localized:
            if all(header_key(col) in keys for col in localized.requires):
                name = f"{profile.name} ({localized.language})"
                return Detected(profile, name, localized.fields)
    return None


def export_profile(header: Sequence[str]) -> Profile | None:
    """The known export profile `header` is (whatever its language), if any."""
    detected = _profile_for({header_key(name): name for name in header})
    return None if detected is None else detected.profile


def suggest_mapping(
    header: Sequence[str], samples: Sequence[Sequence[str]], dataset: Dataset = CONTACTS
) -> ColumnMapping:
    """The best automatic mapping of `header`. Contacts: a known export profile, then exact
    aliases, then words in the header names, then (for the email) the sampled values. Any
    other dataset: the declared field names and aliases only."""
    if not is_contacts(dataset):
        return _declared_mapping(header, dataset)
    keys = {header_key(name): name for name in reversed(header)}  # first spelling wins
    mapping = ColumnMapping()
    detected = _profile_for(keys)
    if detected is not None:
        mapping.profile = detected.name
        for name, cols in detected.fields.items():
            present = [keys[header_key(c)] for c in cols if header_key(c) in keys]
            present = list(dict.fromkeys(present))
            if present:
                mapping.fields[name] = present
                mapping.methods[name] = f"{Method.PROFILE}: {detected.name}"
    taken = {col for cols in mapping.fields.values() for col in cols}
    by_alias: dict[str, list[str]] = {}
    for column in header:
        name = _ALIASES.get(header_key(column))
        if name and name not in mapping.fields and column not in taken:
            by_alias.setdefault(name, []).append(column)
    for name, columns in by_alias.items():
        mapping.fields[name] = columns
        mapping.methods[name] = Method.ALIAS
        taken.update(columns)
    for name, pattern in _NAME_HINTS:
        if name in mapping.fields:
            continue
        hits = [
            c
            for c in header
            if c not in taken and pattern.search(c.casefold()) and not _NOT_THE_VALUE.search(c)
        ]
        if hits:
            mapping.fields[name] = hits if name == EMAIL else hits[:1]
            mapping.methods[name] = Method.NAME
            taken.update(mapping.fields[name])
    if EMAIL not in mapping.fields:
        by_value = [c for c in email_columns_by_value(header, samples) if c not in taken]
        if by_value:
            mapping.fields[EMAIL] = by_value
            mapping.methods[EMAIL] = Method.VALUES
    return mapping


def _declared_mapping(header: Sequence[str], dataset: Dataset) -> ColumnMapping:
    """One column per field: the first whose name is the field's name or a declared alias."""
    own = {header_key(f.name): f.name for f in dataset.fields}
    chosen: dict[str, str] = {}
    # A column named as a field is that field's before it can be another field's alias.
    for column in header:
        name = own.get(header_key(column))
        if name is not None and name not in chosen:
            chosen[name] = column
    taken = set(chosen.values())
    for f in dataset.fields:
        if f.name in chosen:
            continue
        aliases = {header_key(a) for a in f.aliases}
        for column in header:
            key = header_key(column)
            if column not in taken and key not in own and key in aliases:
                chosen[f.name] = column
                taken.add(column)
                break
    fields = {name: [chosen[name]] for name in dataset.field_names if name in chosen}
    return ColumnMapping(fields, dict.fromkeys(fields, Method.ALIAS), dataset=dataset.name)


def header_score(record: Sequence[str], dataset: Dataset = CONTACTS) -> int:
    """How much a record looks like a header of `dataset`: fields its names map to (a known
    contacts profile counts double); 0 for a line of notes or data."""
    if sum(1 for cell in record if cell.strip()) < 2:
        return 0
    names = [cell.strip() for cell in record]
    mapping = suggest_mapping(names, [], dataset)
    return len(mapping.fields) + (len(mapping.fields) if mapping.profile else 0)


def _could_hold_email(header: Sequence[str], samples: Sequence[Sequence[str]]) -> bool:
    """Whether any column could hold an email: by its name or by its values."""
    email_hint = _NAME_HINTS[0][1]
    return any(email_hint.search(c.casefold()) for c in header) or bool(
        email_columns_by_value(header, samples)
    )


def require_columns(
    file_name: str,
    header: Sequence[str],
    samples: Sequence[Sequence[str]],
    dataset: Dataset = CONTACTS,
    *,
    keys: bool = False,
) -> None:
    """Refuse a file with nothing of `dataset` in it: for contacts, no column that could hold
    an email; for another dataset, no column mapping to any of its fields. `keys` says the
    header is the keys of JSON records."""
    if is_contacts(dataset):
        if _could_hold_email(header, samples):
            return
        what = "no email field found" if keys else "no email column found"
    else:
        if suggest_mapping(header, samples, dataset).fields:
            return
        what = f"no {'field' if keys else 'column'} of {dataset.name} found"
    shown = ", ".join(header[:12]) + (", ..." if len(header) > 12 else "")
    listed = "the keys are" if keys else "the header has"
    raise UnreadableFileError(file_name, f"{what}; {listed}: {shown}")


class MappingError(ValueError):
    """A mapping a person gave that does not fit the file's header."""


def person_mapping(
    header: Sequence[str],
    assignments: Mapping[str, Iterable[str] | str | None],
    base: ColumnMapping | None = None,
    *,
    dataset: Dataset | None = None,
) -> ColumnMapping:
    """`base` (the suggestion) with a person's `field -> column(s)` on top; an empty value
    leaves that field unmapped on purpose.

    Fields are those of `dataset`, else of `base`'s dataset, else of contacts. Columns are
    matched exactly, then ignoring case and punctuation; unknown fields and columns are a
    MappingError naming what the header has.
    """
    if dataset is None:
        dataset = dataset_named(base.dataset) if base is not None else CONTACTS
    elif base is not None and base.dataset != dataset.name:
        raise MappingError(f"the suggestion maps {base.dataset}, not {dataset.name}")
    fields = mappable_fields(dataset)
    keys = {header_key(name): name for name in reversed(header)}
    if base is None:
        mapping = ColumnMapping(dataset=dataset.name)
    else:
        mapping = base.with_method(Method.PERSON)
    mapping.methods = {k: (base.methods.get(k, "") if base else "") for k in mapping.fields}
    for name, value in assignments.items():
        if name not in fields:
            raise MappingError(f"unknown field {name!r}; fields: {', '.join(fields)}")
        columns = [value] if isinstance(value, str) or value is None else list(value)
        resolved = []
        for column in columns:
            if column is None or not str(column).strip():
                continue
            if column in header:
                resolved.append(column)
            elif header_key(str(column)) in keys:
                resolved.append(keys[header_key(str(column))])
            else:
                shown = ", ".join(f'"{c}"' for c in header[:30])
                raise MappingError(f"no column {column!r} in the header; it has: {shown}")
        mapping.fields.pop(name, None)
        mapping.methods.pop(name, None)
        if name in mapping.empty:
            mapping.empty.remove(name)
        if resolved:
            mapping.fields[name] = resolved
            mapping.methods[name] = Method.PERSON
        elif name in dataset.required_fields:
            mapping.empty.append(name)
    if is_contacts(dataset) and EMAIL not in mapping.fields:
        raise MappingError("the email field must be mapped to a column")
    return mapping
