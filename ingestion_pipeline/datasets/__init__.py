"""The declared datasets, checked when imported: contacts and the shop's four entities.

A new dataset is a declaration here and a migration creating its table (see README,
"Datasets"); the pipeline takes it from there.
"""

from ingestion_pipeline.datasets.contacts import CONTACTS
from ingestion_pipeline.datasets.declaration import (
    DECIMAL_PRECISION,
    Dataset,
    DefinitionError,
    Field,
    FieldType,
    MergePolicy,
    Normalization,
    Reference,
    check_declarations,
    children_of,
    dependency_order,
)
from ingestion_pipeline.datasets.shop import SHOP

DATASETS: dict[str, Dataset] = check_declarations((CONTACTS, *SHOP))
# The dataset of an upload with no dataset folder (uploads/<tenant>/<file>).
DEFAULT_DATASET = CONTACTS.name
LOAD_ORDER: tuple[str, ...] = tuple(dependency_order(DATASETS))


class UnknownDatasetError(LookupError):
    """A dataset name that is not declared."""


def dataset_named(name: str | None) -> Dataset:
    """The declared dataset called `name` (contacts for None)."""
    found = DATASETS.get(name or DEFAULT_DATASET)
    if found is None:
        raise UnknownDatasetError(f"unknown dataset {name!r}; declared: {', '.join(LOAD_ORDER)}")
    return found


def dependents(name: str) -> list[str]:
    """The datasets that reference `name`."""
    return children_of(DATASETS, name)


__all__ = [
    "CONTACTS",
    "DATASETS",
    "DECIMAL_PRECISION",
    "DEFAULT_DATASET",
    "LOAD_ORDER",
    "Dataset",
    "DefinitionError",
    "Field",
    "FieldType",
    "MergePolicy",
    "Normalization",
    "Reference",
    "UnknownDatasetError",
    "check_declarations",
    "dataset_named",
    "dependents",
]
