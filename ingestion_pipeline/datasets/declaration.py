"""What a dataset is: its fields with their types and rules, its natural key, its references to
other datasets and how a new upload merges with what the tenant already has.

Plain Python, no Dagster and no SQL: reading, validation and loading are driven by these
declarations, and `check_declarations` refuses a set that does not hold together when the code
location loads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum


class FieldType(str, Enum):
    """The types a field can declare; every value is staged as text and checked against it."""

    TEXT = "text"
    EMAIL = "email"
    UUID = "uuid"
    INTEGER = "integer"
    DECIMAL = "decimal"
    BOOLEAN = "boolean"
    DATE = "date"
    TIMESTAMP = "timestamp"
    JSON = "json"

    @property
    def described(self) -> str:
        """How an issue message names the expected type."""
        return _DESCRIBED[self]


_DESCRIBED = {
    FieldType.TEXT: "text",
    FieldType.EMAIL: "an email address",
    FieldType.UUID: "a UUID",
    FieldType.INTEGER: "an integer",
    FieldType.DECIMAL: "a decimal number",
    FieldType.BOOLEAN: "a boolean (true/false, yes/no, 1/0)",
    FieldType.DATE: "a date (YYYY-MM-DD)",
    FieldType.TIMESTAMP: "an ISO 8601 timestamp",
    FieldType.JSON: "a JSON value",
}


# The widest decimal Iceberg (and so the lake) holds: 38 digits, of which a field's scale are
# decimal places.
DECIMAL_PRECISION = 38


class MergePolicy(str, Enum):
    """What loading does with a row whose natural key the tenant already has."""

    # The existing key is an issue for a reviewer (contacts).
    INSERT = "insert"
    # Changed rows are updated, identical ones (same content hash) left alone.
    UPSERT = "upsert"
    # The existing row wins; the new one is counted as unchanged.
    SKIP_EXISTING = "skip_existing"


class Normalization(str, Enum):
    """What is done to a value before it is checked, compared and stored."""

    NONE = "none"
    LOWER = "lower"
    UPPER = "upper"


@dataclass(frozen=True)
class Field:
    """One field of a dataset."""

    name: str
    type: FieldType = FieldType.TEXT
    required: bool = False
    max_length: int | None = None
    allowed: tuple[str, ...] = ()
    normalization: Normalization = Normalization.NONE
    # Other spellings of the header, compared ignoring case, spaces and punctuation.
    aliases: tuple[str, ...] = ()
    # Decimal places a DECIMAL field keeps (required for one): a value with more is refused,
    # and the lake holds the field as decimal(38, scale).
    scale: int | None = None

    @property
    def described(self) -> str:
        """How an issue message names what the field expects."""
        if self.type is FieldType.DECIMAL and self.scale is not None:
            places = "decimal place" if self.scale == 1 else "decimal places"
            return f"a decimal number with at most {self.scale} {places}"
        return self.type.described


@dataclass(frozen=True)
class Reference:
    """`field` holds a key of `dataset` (its natural key) for the same tenant."""

    field: str
    dataset: str


@dataclass(frozen=True)
class Dataset:
    """A declared dataset: fields, natural key, references, merge policy, where it loads."""

    name: str
    fields: tuple[Field, ...]
    key: str
    table: str
    references: tuple[Reference, ...] = ()
    merge: MergePolicy = MergePolicy.INSERT
    description: str = ""
    # Issue kinds under the dataset's own names (contacts: duplicate_email, existing_contact).
    duplicate_kind: str = "duplicate_key"
    existing_kind: str = "existing_key"
    # Contacts keep their fields in staging columns of their own (the 1M-row path); every
    # other dataset keeps them in staging_rows.data.
    staged_in_columns: bool = False

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def required_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required)

    def field(self, name: str) -> Field:
        for candidate in self.fields:
            if candidate.name == name:
                return candidate
        raise KeyError(f"dataset {self.name} has no field {name!r}")

    @property
    def key_field(self) -> Field:
        return self.field(self.key)

    @property
    def parents(self) -> tuple[str, ...]:
        """The datasets this one references, in declaration order, without repeats."""
        return tuple(dict.fromkeys(r.dataset for r in self.references))


class DefinitionError(ValueError):
    """A set of dataset declarations that does not hold together."""


def check_declarations(datasets: Iterable[Dataset]) -> dict[str, Dataset]:
    """The datasets by name, after checking that they hold together; raises DefinitionError
    naming the dataset and field at fault."""
    by_name: dict[str, Dataset] = {}
    tables: dict[str, str] = {}
    for dataset in datasets:
        if dataset.name in by_name:
            raise DefinitionError(f"dataset {dataset.name!r} is declared twice")
        if not dataset.name.isidentifier() or not dataset.name.islower():
            raise DefinitionError(f"dataset name {dataset.name!r} must be a lower-case identifier")
        if dataset.table in tables:
            raise DefinitionError(
                f"datasets {tables[dataset.table]!r} and {dataset.name!r} both load into "
                f"table {dataset.table!r}"
            )
        names = [f.name for f in dataset.fields]
        repeated = {n for n in names if names.count(n) > 1}
        if repeated:
            raise DefinitionError(f"{dataset.name}: field(s) declared twice: {sorted(repeated)}")
        for f in dataset.fields:
            if not f.name.isidentifier() or not f.name.islower():
                raise DefinitionError(
                    f"{dataset.name}.{f.name}: a field name must be a lower-case identifier"
                )
            if f.max_length is not None and f.max_length < 1:
                raise DefinitionError(f"{dataset.name}.{f.name}: max_length must be positive")
            if f.type is FieldType.DECIMAL and f.scale is None:
                raise DefinitionError(
                    f"{dataset.name}.{f.name}: a decimal field declares its scale (decimal "
                    "places), e.g. scale=2"
                )
            if f.scale is not None and (
                f.type is not FieldType.DECIMAL or not 0 <= f.scale < DECIMAL_PRECISION
            ):
                raise DefinitionError(
                    f"{dataset.name}.{f.name}: scale is for decimal fields, "
                    f"0 to {DECIMAL_PRECISION - 1}"
                )
        if dataset.key not in names:
            raise DefinitionError(
                f"{dataset.name}: natural key {dataset.key!r} is not one of its fields "
                f"({', '.join(names)})"
            )
        if not dataset.key_field.required:
            raise DefinitionError(f"{dataset.name}: natural key {dataset.key!r} must be required")
        by_name[dataset.name] = dataset
        tables[dataset.table] = dataset.name
    for dataset in by_name.values():
        for ref in dataset.references:
            if ref.field not in dataset.field_names:
                raise DefinitionError(f"{dataset.name}: reference from unknown field {ref.field!r}")
            parent = by_name.get(ref.dataset)
            if parent is None:
                raise DefinitionError(
                    f"{dataset.name}.{ref.field} references unknown dataset {ref.dataset!r} "
                    f"(declared: {', '.join(sorted(by_name))})"
                )
            if parent.key_field.type is not dataset.field(ref.field).type:
                raise DefinitionError(
                    f"{dataset.name}.{ref.field} is {dataset.field(ref.field).type.value} but "
                    f"{parent.name}.{parent.key} is {parent.key_field.type.value}"
                )
    dependency_order(by_name)  # refuses a cycle
    return by_name


def dependency_order(datasets: Mapping[str, Dataset]) -> list[str]:
    """Dataset names with every referenced dataset before those that reference it."""
    ordered: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise DefinitionError(f"datasets reference each other in a cycle: {' -> '.join(path)}")
        state[name] = "visiting"
        for parent in datasets[name].parents:
            if parent != name:
                visit(parent, (*path, parent))
        state[name] = "done"
        ordered.append(name)

    for name in datasets:
        visit(name, (name,))
    return ordered


def children_of(datasets: Mapping[str, Dataset], name: str) -> list[str]:
    """The datasets that reference `name`."""
    return [d.name for d in datasets.values() if name in d.parents and d.name != name]
