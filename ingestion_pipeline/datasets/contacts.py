"""Contacts, the flagship dataset: four required text fields, the email its natural key."""

from ingestion_pipeline.constants import (
    COMPANY,
    EMAIL,
    FIRST_NAME,
    HEADER_ALIASES,
    LAST_NAME,
    MAX_NAME_LENGTH,
)
from ingestion_pipeline.datasets.declaration import (
    Dataset,
    Field,
    FieldType,
    MergePolicy,
    Normalization,
)

CONTACTS = Dataset(
    name="contacts",
    description="People from address books, CRMs and mailing tools.",
    fields=(
        Field(
            EMAIL,
            FieldType.EMAIL,
            required=True,
            normalization=Normalization.LOWER,
            aliases=HEADER_ALIASES[EMAIL],
        ),
        Field(
            FIRST_NAME,
            required=True,
            max_length=MAX_NAME_LENGTH,
            aliases=HEADER_ALIASES[FIRST_NAME],
        ),
        Field(
            LAST_NAME, required=True, max_length=MAX_NAME_LENGTH, aliases=HEADER_ALIASES[LAST_NAME]
        ),
        Field(COMPANY, required=True, max_length=MAX_NAME_LENGTH, aliases=HEADER_ALIASES[COMPANY]),
    ),
    key=EMAIL,
    table="contacts",
    merge=MergePolicy.INSERT,
    duplicate_kind="duplicate_email",
    existing_kind="existing_contact",
    staged_in_columns=True,
)
