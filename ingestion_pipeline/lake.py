"""The lake: every COMPLETED job's contacts appended once to an Apache Iceberg table that
Spark, Trino and DuckDB read without touching the application database.

Plain functions over an engine and a pyiceberg catalog; the lake asset calls them. pyiceberg is
imported here only (it costs ~1.4 s), so a code location without a lake never loads it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine, make_url

from ingestion_pipeline.db.copy_out import copy_out_batches
from ingestion_pipeline.db.lake import ensure_schema, job_rows_query
from ingestion_pipeline.db.tables import contacts

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

NAMESPACE = "ingestion"
CONTACTS_TABLE = f"{NAMESPACE}.contacts"
# Recorded on every snapshot a job's append makes: how a rerun knows the job is in already.
JOB_PROPERTY = "ingestion.job_id"
# The catalog's own tables live in this schema of the project's database, apart from ours.
CATALOG_SCHEMA = "iceberg_catalog"


def arrow_schema(table: sa.Table) -> pa.Schema:
    """The lake table's columns from the dataset's table: its columns, types and
    required-ness, `extra` as JSON text, plus when the row reached the lake."""
    fields = []
    for column in table.columns:
        kind = column.type
        if isinstance(kind, sa.BigInteger):
            arrow: pa.DataType = pa.int64()
        elif isinstance(kind, sa.Integer):
            arrow = pa.int32()
        elif isinstance(kind, sa.DateTime):
            arrow = pa.timestamp("us", tz="UTC")
        elif isinstance(kind, sa.Boolean):
            arrow = pa.bool_()
        elif isinstance(kind, sa.Text | JSONB):
            arrow = pa.string()
        else:
            raise TypeError(f"no lake type for {table.name}.{column.name} ({kind!r})")
        fields.append(pa.field(column.name, arrow, nullable=bool(column.nullable)))
    fields.append(pa.field("loaded_at", pa.timestamp("us", tz="UTC"), nullable=False))
    return pa.schema(fields)


def catalog(
    catalog_uri: str | None,
    database_url: str,
    warehouse: str,
    s3_endpoint: str | None = None,
    s3_region: str | None = None,
) -> Catalog:
    """A REST catalog when `catalog_uri` is an http(s) URL; else pyiceberg's SQL catalog in
    the project's PostgreSQL (schema iceberg_catalog). Data files go to `warehouse`, a folder
    or an s3:// prefix (on the landing zone's S3 endpoint; credentials from the environment).
    """
    io = {
        key: value
        for key, value in (("s3.endpoint", s3_endpoint), ("s3.region", s3_region))
        if value and warehouse.startswith("s3://")
    }
    if catalog_uri and catalog_uri.startswith(("http://", "https://")):
        from pyiceberg.catalog.rest import RestCatalog

        return RestCatalog("ingestion", uri=catalog_uri, warehouse=warehouse, **io)
    from pyiceberg.catalog.sql import SqlCatalog

    url = make_url(catalog_uri or database_url)
    ensure_schema(url, CATALOG_SCHEMA)
    query = {**url.query, "options": f"-csearch_path={CATALOG_SCHEMA}"}
    scoped = url.set(query=query).render_as_string(hide_password=False)
    if "://" not in warehouse:
        warehouse = f"file://{warehouse}"
    return SqlCatalog("ingestion", uri=scoped, warehouse=warehouse, **io)


def contacts_table(lake: Catalog) -> Table:
    """The contacts table, created partitioned by tenant on first use; a column the dataset
    gained since is added to it (schema evolution, not a new table)."""
    lake.create_namespace_if_not_exists(NAMESPACE)
    wanted = arrow_schema(contacts)
    if lake.table_exists(CONTACTS_TABLE):
        table = lake.load_table(CONTACTS_TABLE)
        known = {field.name for field in table.schema().fields}
        if any(name not in known for name in wanted.names):
            with table.update_schema() as update:
                update.union_by_name(wanted)
            table = lake.load_table(CONTACTS_TABLE)
        return table
    table = lake.create_table(CONTACTS_TABLE, schema=wanted)
    with table.update_spec() as update:
        update.add_identity("tenant_id")
    return lake.load_table(CONTACTS_TABLE)


def job_in_lake(table: Table, job_id: str) -> bool:
    """Whether a committed snapshot carries this job's rows."""
    return any(
        snapshot.summary is not None and snapshot.summary.get(JOB_PROPERTY) == job_id
        for snapshot in table.snapshots()
    )


@dataclass(frozen=True)
class LakeAppend:
    """What appending one job did."""

    rows: int
    already: bool
    snapshots: int


def append_job(engine: Engine, table: Table, job_id: str, chunk_size: int) -> LakeAppend:
    """Append the job's contacts as one snapshot marked with the job id, in one commit, unless
    a committed snapshot has them already.

    Data files are written block by block as the rows stream out of PostgreSQL, and all of
    them go into the one snapshot. (An append per block made a snapshot per ~10k rows, and
    pyiceberg replays a transaction's earlier updates on every append: at 10M rows over 12
    minutes of CPU, quadratic in the blocks, and 900 snapshots per job in the table's
    metadata.) Data files written before a crash that stopped the commit are not part of the
    table; the rerun writes the rows again and commits once.
    """
    from pyiceberg.io.pyarrow import _check_pyarrow_schema_compatible, _dataframe_to_data_files

    if job_in_lake(table, job_id):
        return LakeAppend(0, True, 0)
    schema = table.schema().as_arrow()
    loaded_at = datetime.now(timezone.utc)
    rows = 0
    # One counter for the snapshot's file names: each block's files are numbered on from the
    # last block's, under the snapshot's one write id.
    numbers = itertools.count(0)
    with table.transaction() as transaction:
        # Every block is cast to `schema`: checked once. The metadata is read once too: it is
        # rebuilt from the transaction's updates on each access, and the append adds none
        # until it commits.
        metadata = transaction.table_metadata
        _check_pyarrow_schema_compatible(
            metadata.schema(), provided_schema=schema, format_version=metadata.format_version
        )
        snapshot = transaction.update_snapshot(snapshot_properties={JOB_PROPERTY: job_id})
        with snapshot.fast_append() as append:
            for batch in _batches(engine, job_id, chunk_size, schema, loaded_at):
                for data_file in _dataframe_to_data_files(
                    table_metadata=metadata,
                    df=batch,
                    io=table.io,
                    write_uuid=append.commit_uuid,
                    counter=numbers,
                ):
                    append.append_data_file(data_file)
                rows += batch.num_rows
    return LakeAppend(rows, False, 1)


MIN_BLOCK_BYTES = 1 << 20


def _batches(
    engine: Engine, job_id: str, chunk_size: int, schema: pa.Schema, loaded_at: datetime
) -> Iterator[pa.Table]:
    """The job's rows as Arrow tables of about `chunk_size` rows: PostgreSQL's COPY writes CSV
    into a pipe that Arrow's streaming CSV reader parses, so no row passes through Python."""
    names = [name for name in schema.names if name != "loaded_at"]
    as_read = {
        name: pa.int64()
        if pa.types.is_timestamp(schema.field(name).type)
        else schema.field(name).type
        for name in names
    }
    # Blocks of ~10k rows, one at a time: each becomes the snapshot's next data files, and
    # pyiceberg holds several copies of a block while it writes it (larger blocks: past
    # 400 MiB at 1M rows; see README, Benchmarks).
    blocks = max(MIN_BLOCK_BYTES, chunk_size * 64)
    for batch in copy_out_batches(engine, job_rows_query(names), (job_id,), as_read, blocks):
        table = pa.Table.from_batches([batch])
        for name in names:
            if pa.types.is_timestamp(schema.field(name).type):
                index = table.schema.get_field_index(name)
                table = table.set_column(
                    index, name, table[name].cast(pa.timestamp("us", tz="UTC"))
                )
        table = table.append_column(
            pa.field("loaded_at", schema.field("loaded_at").type),
            pa.array([loaded_at] * table.num_rows, pa.timestamp("us", tz="UTC")),
        )
        yield table.cast(schema)
