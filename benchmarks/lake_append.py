"""Append one COMPLETED job's contacts to a fresh lake: rows, seconds (run under peak_rss.py)."""

import sys
import tempfile
import time

from ingestion_pipeline.db.engine import get_engine
from ingestion_pipeline.lake import CONTACTS_TABLE, append_job, catalog, contacts_table

url, job_id = sys.argv[1], sys.argv[2]
lake = catalog(None, url, tempfile.mkdtemp(prefix="bench-lake-"))
if lake.table_exists(CONTACTS_TABLE):
    lake.purge_table(CONTACTS_TABLE)
started = time.perf_counter()
result = append_job(get_engine(url), contacts_table(lake), job_id, chunk_size=25_000)
print(f"{result.rows} {time.perf_counter() - started:.2f}")
