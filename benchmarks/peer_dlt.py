"""dlt's default pipeline loading a CSV into PostgreSQL: the peer `make bench-peers` measures.

Runs in its own virtual environment (.venv-peers), apart from the project's dependencies;
prints `rows seconds` on stdout.
"""

from __future__ import annotations

import csv
import sys
import tempfile
import time

import dlt


def records(path: str):
    with open(path, newline="", encoding="utf-8") as handle:
        yield from csv.DictReader(handle)


def main() -> None:
    path, url = sys.argv[1], sys.argv[2]
    pipeline = dlt.pipeline(
        pipeline_name="bench_peer",
        destination=dlt.destinations.postgres(credentials=url),
        dataset_name="dlt_peer",
        pipelines_dir=tempfile.mkdtemp(prefix="dlt-"),
    )
    started = time.perf_counter()
    pipeline.run(records(path), table_name="contacts", write_disposition="replace")
    seconds = time.perf_counter() - started
    loaded = pipeline.last_trace.last_normalize_info.row_counts.get("contacts", 0)
    print(loaded, f"{seconds:.3f}")


if __name__ == "__main__":
    main()
