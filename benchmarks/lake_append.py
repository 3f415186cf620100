"""Write one COMPLETED job to the lake: rows, replaced rows, files rewritten, seconds (run under
peak_rss.py, so its memory is the lake step's alone).

    lake_append.py URL JOB [--dataset D] [--tenant T] [--warehouse DIR]

Without --warehouse the lake is a fresh folder and the dataset's table is created anew; with it,
the table there (and its catalog in the database at URL) is written on.
"""

import argparse
import tempfile
import time

from ingestion_pipeline.db.engine import get_engine
from ingestion_pipeline.lake import LAKE_TABLES, catalog, ensure_table, write_job

parser = argparse.ArgumentParser()
parser.add_argument("url")
parser.add_argument("job_id")
parser.add_argument("--dataset", default="contacts")
parser.add_argument("--tenant", default="bench")
parser.add_argument("--warehouse")
parser.add_argument("--chunk-size", type=int, default=25_000)
args = parser.parse_args()

target = LAKE_TABLES[args.dataset]
lake = catalog(None, args.url, args.warehouse or tempfile.mkdtemp(prefix="bench-lake-"))
if not args.warehouse and lake.table_exists(target.name):
    lake.purge_table(target.name)
started = time.perf_counter()
table = ensure_table(lake, target)
result = write_job(get_engine(args.url), target, table, args.tenant, args.job_id, args.chunk_size)
seconds = time.perf_counter() - started
print(f"{result.rows} {seconds:.2f} {result.replaced} {result.files_rewritten}")
