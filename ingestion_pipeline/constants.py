"""Statuses, issue kinds and field names: the vocabulary shared by every module."""

from __future__ import annotations

from enum import Enum


class JobStatus(str, Enum):
    """Lifecycle of one import job (one uploaded object version)."""

    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    NEEDS_MAPPING = "NEEDS_MAPPING"
    NEEDS_REVIEW = "NEEDS_REVIEW"
    # Its only open issues are references to rows of another dataset not loaded yet: it is
    # validated again when a job of that dataset completes for the same tenant.
    WAITING_FOR_REFERENCES = "WAITING_FOR_REFERENCES"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


# A run holds the job in these states: pages follow it until it leaves them.
RUNNING = (JobStatus.PENDING, JobStatus.PROCESSING)

# A reviewer's decisions are taken in these states (PROCESSING: a reprocess is running).
TAKES_DECISIONS = (
    JobStatus.NEEDS_REVIEW,
    JobStatus.PROCESSING,
    JobStatus.WAITING_FOR_REFERENCES,
)


class RowStatus(str, Enum):
    """State of one staged data row; a COMPLETED job's READY rows are the ones it loaded."""

    READY = "READY"
    ISSUE = "ISSUE"
    DISCARD = "DISCARD"
    # Loaded, on rows of jobs completed before the job's status alone said so.
    SUCCESS = "SUCCESS"


class IssueKind(str, Enum):
    """The problems a row can have; the values are the public names in CLI output."""

    MISSING_FIELD = "missing_field"
    INVALID_EMAIL = "invalid_email"
    DUPLICATE_EMAIL = "duplicate_email"
    EXISTING_CONTACT = "existing_contact"
    MALFORMED_RECORD = "malformed_record"
    VALUE_TOO_LONG = "value_too_long"
    INVALID_VALUE = "invalid_value"
    DUPLICATE_KEY = "duplicate_key"
    EXISTING_KEY = "existing_key"
    MISSING_REFERENCE = "missing_reference"


# Canonical contact fields, in the order they are shown and exported.
EMAIL = "email"
FIRST_NAME = "first_name"
LAST_NAME = "last_name"
COMPANY = "company"
CANONICAL_FIELDS: tuple[str, ...] = (EMAIL, FIRST_NAME, LAST_NAME, COMPANY)
REQUIRED_FIELDS: tuple[str, ...] = CANONICAL_FIELDS
# Not stored: a column with whole names, split into first and last name where those are blank.
FULL_NAME = "full_name"
# Longest name or company a contact may hold; a longer value is an issue, not a contact.
MAX_NAME_LENGTH = 255

# Header spellings people use for each canonical field, compared after removing case, spaces
# and punctuation ("E-mail Address" -> "emailaddress").
HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    EMAIL: (
        "email",
        "emailaddress",
        "mail",
        "emailaddr",
        "courriel",
        "emailadresse",
        "primaryemail",
        "workemail",
        "businessemail",
        "correoelectronico",
    ),
    FIRST_NAME: ("firstname", "givenname", "forename", "fname", "vorname", "prenom", "nombre"),
    LAST_NAME: ("lastname", "surname", "familyname", "lname", "nachname", "nom", "apellidos"),
    COMPANY: (
        "company",
        "companyname",
        "organization",
        "organisation",
        "organizationname",
        "employer",
        "firma",
        "unternehmen",
        "societe",
        "entreprise",
        "empresa",
        "accountname",
    ),
    FULL_NAME: ("name", "fullname", "contactname", "displayname"),
}

# Dynamic partitions def name: one partition per import job.
IMPORT_JOBS_PARTITIONS = "import_jobs"
ASSET_GROUP = "contacts_import"
TENANT_TAG = "tenant"

UPLOADS_PREFIX = "uploads/"
REVIEWS_PREFIX = "reviews/"
SUPPORTED_EXTENSIONS: tuple[str, ...] = (
    ".csv",
    ".tsv",
    ".txt",
    ".json",
    ".ndjson",
    ".jsonl",
    ".xlsx",
    ".xlsm",
    ".xls",
    ".ods",
    ".vcf",
    ".vcard",
)
# Any of them may also arrive gzipped, as name.csv.gz.
COMPRESSED_EXTENSIONS: tuple[str, ...] = (".gz",)
