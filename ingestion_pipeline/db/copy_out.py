"""Query results streamed out of PostgreSQL by COPY into Arrow, no row passing through Python."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
from sqlalchemy.engine import Engine


def copy_out_batches(
    engine: Engine,
    query: str,
    params: Sequence[Any],
    columns: Mapping[str, pa.DataType],
    block_size: int,
) -> Iterator[pa.RecordBatch]:
    """The rows of `query` (psycopg2 placeholders, `params`) as Arrow record batches of about
    `block_size` bytes of CSV each, with `columns` (names and types, in the query's order).

    `COPY (query) TO STDOUT` writes CSV into a pipe from a thread of its own while Arrow's
    streaming CSV reader parses the other end: memory is bounded by the block size whatever
    the number of rows.
    """
    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []

    def produce() -> None:
        with os.fdopen(write_fd, "wb") as out, engine.connect() as conn:
            try:
                cursor = conn.connection.driver_connection.cursor()
                try:
                    select = cursor.mogrify(query, tuple(params)).decode()
                    cursor.copy_expert(f"COPY ({select}) TO STDOUT WITH (FORMAT csv)", out)
                finally:
                    cursor.close()
            except BaseException as exc:  # handed to the reading thread
                failure.append(exc)

    writer = threading.Thread(target=produce, name="copy-out", daemon=True)
    writer.start()
    try:
        with os.fdopen(read_fd, "rb") as source:
            # No rows (or a failed COPY) leaves the pipe empty, which Arrow refuses to read.
            if source.peek(1):
                yield from pacsv.open_csv(
                    source,
                    read_options=pacsv.ReadOptions(
                        column_names=list(columns), block_size=block_size, use_threads=False
                    ),
                    convert_options=pacsv.ConvertOptions(
                        column_types=dict(columns),
                        strings_can_be_null=True,
                        quoted_strings_can_be_null=False,
                    ),
                )
    finally:
        writer.join()
    if failure:
        raise failure[0]
