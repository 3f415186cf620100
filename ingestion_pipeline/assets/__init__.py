"""The import's assets by stage: raw upload -> staging rows -> issues -> contacts."""

from ingestion_pipeline.assets.contacts import contacts
from ingestion_pipeline.assets.issues import import_issues
from ingestion_pipeline.assets.raw_upload import raw_upload
from ingestion_pipeline.assets.staging import staging_rows

IMPORT_ASSETS = [raw_upload, staging_rows, import_issues, contacts]

__all__ = ["IMPORT_ASSETS", "contacts", "import_issues", "raw_upload", "staging_rows"]
