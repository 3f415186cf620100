"""The lake: every COMPLETED job's rows written once to an Apache Iceberg table per declared
dataset, which Spark, Trino and DuckDB read without touching the application database.

`insert` datasets (contacts) append a job's rows. `upsert` and `skip_existing` datasets keep each
natural key of a tenant once with its current values: the job's snapshot also takes out the
earlier versions of the keys it wrote, by rewriting the data files of the tenant's partition
that hold them (copy-on-write), so a lake table reads as its PostgreSQL table does. Either way
a job is one snapshot marked with its id, committed once.

Plain functions over an engine and a pyiceberg catalog; the lake assets call them. pyiceberg is
imported here only (it costs ~1.4 s), so a code location without a lake never loads it.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine, make_url

from ingestion_pipeline.datasets import (
    DATASETS,
    DECIMAL_PRECISION,
    LOAD_ORDER,
    Dataset,
    MergePolicy,
)
from ingestion_pipeline.db.copy_out import copy_out_batches
from ingestion_pipeline.db.engine import normalize_url
from ingestion_pipeline.db.lake import ensure_schema, job_rows_query, lake_lock
from ingestion_pipeline.db.tables import LOADED_TABLES, contacts

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.io.pyarrow import FileScanTask
    from pyiceberg.table import Table, Transaction
    from pyiceberg.table.metadata import TableMetadata
    from pyiceberg.typedef import Identifier

NAMESPACE = "ingestion"
# Recorded on every snapshot a job's write makes: how a rerun knows the job is in already.
JOB_PROPERTY = "ingestion.job_id"
# The catalog's own tables live in this schema of the project's database, apart from ours.
CATALOG_SCHEMA = "iceberg_catalog"
# When a row reached the lake, on tables whose PostgreSQL table has no load time of its own.
LAKE_LOADED_AT = "loaded_at"
TENANT = "tenant_id"
# Keys of the tenant's lake rows compared with the job's keys at a time (16 bytes each for a
# UUID key): one hash table of the job's keys per group instead of one per data file.
KEY_GROUP_ROWS = 1_000_000


class LakeSchemaError(ValueError):
    """A lake table's column whose type the declaration changed in a way Iceberg cannot evolve."""


@dataclass(frozen=True)
class LakeTable:
    """A dataset's Iceberg table: the PostgreSQL table it mirrors and how a job's rows merge."""

    dataset: Dataset
    source: sa.Table

    @property
    def name(self) -> str:
        """`ingestion.<table>`."""
        return f"{NAMESPACE}.{self.dataset.table}"

    @property
    def current(self) -> bool:
        """Whether the table keeps each key once (upsert, skip_existing) instead of appending."""
        return self.dataset.merge is not MergePolicy.INSERT

    @property
    def key(self) -> str:
        """The natural key's column (unique per tenant)."""
        return self.dataset.key


def lake_table(dataset: str) -> LakeTable:
    """The lake table of a declared dataset."""
    declared = DATASETS[dataset]
    source = contacts if declared.staged_in_columns else LOADED_TABLES[declared.name]
    return LakeTable(declared, source)


LAKE_TABLES: dict[str, LakeTable] = {name: lake_table(name) for name in LOAD_ORDER}
CONTACTS_TABLE = LAKE_TABLES["contacts"].name


def arrow_schema(table: sa.Table, dataset: Dataset | None = None) -> pa.Schema:
    """The lake table's columns from the dataset's PostgreSQL table: its columns, types and
    required-ness (UUIDs as uuid, numerics as decimal(38, the field's scale), JSON as text),
    plus when the row reached the lake if the table has no `loaded_at` of its own."""
    fields = []
    for column in table.columns:
        kind = column.type
        if isinstance(kind, sa.BigInteger):
            arrow: pa.DataType = pa.int64()
        elif isinstance(kind, sa.Integer):
            arrow = pa.int32()
        elif isinstance(kind, sa.Numeric):
            scale = dataset.field(column.name).scale if dataset else None
            if scale is None:
                raise TypeError(f"no lake type for {table.name}.{column.name}: it has no scale")
            arrow = pa.decimal128(DECIMAL_PRECISION, scale)
        elif isinstance(kind, sa.DateTime):
            arrow = pa.timestamp("us", tz="UTC")
        elif isinstance(kind, sa.Date):
            arrow = pa.date32()
        elif isinstance(kind, sa.Boolean):
            arrow = pa.bool_()
        elif isinstance(kind, sa.Uuid):
            arrow = pa.uuid()
        elif isinstance(kind, sa.Text | JSONB):
            arrow = pa.string()
        else:
            raise TypeError(f"no lake type for {table.name}.{column.name} ({kind!r})")
        fields.append(pa.field(column.name, arrow, nullable=bool(column.nullable)))
    if LAKE_LOADED_AT not in table.c:
        fields.append(pa.field(LAKE_LOADED_AT, pa.timestamp("us", tz="UTC"), nullable=False))
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

    # A bare postgresql:// is psycopg 3 to SQLAlchemy 2.1; the project speaks psycopg2.
    url = make_url(normalize_url(catalog_uri or database_url))
    ensure_schema(url, CATALOG_SCHEMA)
    query = {**url.query, "options": f"-csearch_path={CATALOG_SCHEMA}"}
    scoped = url.set(query=query).render_as_string(hide_password=False)
    if "://" not in warehouse:
        warehouse = f"file://{warehouse}"
    return SqlCatalog("ingestion", uri=scoped, warehouse=warehouse, **io)


def ensure_table(lake: Catalog, table: LakeTable) -> Table:
    """The dataset's lake table, created partitioned by tenant on first use (a current table with
    (tenant_id, key) as its identifier fields); a field the declaration gained since is added
    to it (schema evolution by name, not a new table), and a change Iceberg cannot evolve
    (a type narrowed) is refused with LakeSchemaError naming the field."""
    from pyiceberg.exceptions import TableAlreadyExistsError

    lake.create_namespace_if_not_exists(NAMESPACE)
    wanted = arrow_schema(table.source, table.dataset)
    if not lake.table_exists(table.name):
        try:
            return _create(lake, table, wanted)
        except TableAlreadyExistsError:
            pass  # created by another run meanwhile
    return _evolve(lake, table.name, wanted)


def _create(lake: Catalog, table: LakeTable, wanted: pa.Schema) -> Table:
    # One commit: the table exists partitioned, with its identifier, or not at all.
    creating = lake.create_table_transaction(table.name, schema=wanted)
    with creating.update_spec() as spec:
        spec.add_identity(TENANT)
    if table.current:
        with creating.update_schema() as schema:
            schema.set_identifier_fields(TENANT, table.key)
    creating.commit_transaction()
    return lake.load_table(table.name)


def _evolve(lake: Catalog, name: Identifier | str, wanted: pa.Schema) -> Table:
    from pyiceberg.exceptions import ResolveError, ValidationError
    from pyiceberg.io.pyarrow import _pyarrow_to_schema_without_ids
    from pyiceberg.schema import promote
    from pyiceberg.types import DecimalType

    table = lake.load_table(name)
    current = {field.name: field for field in table.schema().fields}
    declared = _pyarrow_to_schema_without_ids(wanted, format_version=table.format_version)
    changed = False
    for field in declared.fields:
        existing = current.get(field.name)
        if existing is None:
            changed = True
        elif existing.field_type != field.field_type:
            try:
                promote(existing.field_type, field.field_type)
                # pyiceberg 0.12's promote lets a decimal's scale change; Iceberg does not.
                if isinstance(existing.field_type, DecimalType) and (
                    existing.field_type.scale != field.field_type.scale
                ):
                    raise ResolveError("a decimal keeps its scale")
            except ResolveError as exc:
                raise LakeSchemaError(
                    f"lake table {name}: field {field.name!r} is {existing.field_type} in the "
                    f"lake and {field.field_type} in the declaration; Iceberg can widen a type "
                    "(int to long, a decimal's precision) but not narrow or change it: keep "
                    "the field's type, or declare a new field"
                ) from exc
            changed = True
    if changed:
        try:
            with table.update_schema() as update:
                update.union_by_name(wanted)
        except ValidationError as exc:
            raise LakeSchemaError(f"lake table {name}: {exc}") from exc
        table = lake.load_table(name)
    return table


def job_in_lake(table: Table, job_id: str) -> bool:
    """Whether a committed snapshot carries this job's rows."""
    return any(
        snapshot.summary is not None and snapshot.summary.get(JOB_PROPERTY) == job_id
        for snapshot in table.snapshots()
    )


@dataclass(frozen=True)
class LakeWrite:
    """What writing one job to the lake did."""

    rows: int
    already: bool
    snapshots: int
    # Earlier versions of the job's keys taken out, and the data files rewritten without them.
    replaced: int = 0
    files_rewritten: int = 0


MIN_BLOCK_BYTES = 1 << 20


def write_job(
    engine: Engine,
    lake: LakeTable,
    table: Table,
    tenant_id: str,
    job_id: str,
    chunk_size: int,
) -> LakeWrite:
    """Write the job's rows as one snapshot marked with the job id, in one commit, unless a
    committed snapshot has them already.

    The rows are those of the dataset's PostgreSQL table that the job inserted or updated and
    still holds (a row a later job updated goes with that job). They stream out of PostgreSQL
    block by block into data files; for a current table the data files of the tenant's
    partition that hold earlier versions of those keys are rewritten without them, in the same
    snapshot. Data files written before a crash that stopped the commit are not part of the
    table; the rerun writes again and commits once.

    Args:
        engine: The application database.
        lake: Which dataset's table, and how its rows merge.
        table: The Iceberg table (see ensure_table).
        tenant_id: The job's tenant (its partition of the table).
        job_id: The COMPLETED job.
        chunk_size: Rows per block (memory is bounded by a few blocks, plus the job's keys for
            a current table).
    """
    from pyiceberg.io.pyarrow import _check_pyarrow_schema_compatible

    # One tenant's writes to a table one at a time (see db.lake.lake_lock); then the table as
    # the previous write left it.
    with lake_lock(engine, lake.name, tenant_id):
        table = table.refresh()
        if job_in_lake(table, job_id):
            return LakeWrite(0, True, 0)
        schema = table.schema().as_arrow()
        write_uuid = uuid.uuid4()
        # One counter for the snapshot's file names: each block's files are numbered on from
        # the last block's, under the snapshot's one write id.
        numbers = itertools.count(0)
        with table.transaction() as transaction:
            # Every block is cast to `schema`: checked once. The metadata is read once too: it
            # is rebuilt from the transaction's updates on each access, and the snapshot adds
            # none until it commits.
            metadata = transaction.table_metadata
            _check_pyarrow_schema_compatible(
                metadata.schema(), provided_schema=schema, format_version=metadata.format_version
            )
            writer = _FileWriter(table, metadata, write_uuid, numbers)
            keys: list[pa.Array] = []
            rows = 0
            for batch in _job_batches(engine, lake, tenant_id, job_id, chunk_size, schema):
                writer.write(batch)
                rows += batch.num_rows
                if lake.current:
                    keys.append(_plain(batch.column(lake.key)))
            added = writer.files
            rewritten = _Rewrite(table, metadata, lake.key, tenant_id, chunk_size)
            if keys:
                rewritten.take_out(pa.concat_arrays(keys), _FileWriter(*writer.args))
            _commit(transaction, job_id, tenant_id, write_uuid, added, rewritten)
    return LakeWrite(
        rows, False, 1, replaced=rewritten.replaced, files_rewritten=len(rewritten.deleted)
    )


def _commit(
    transaction: Transaction,
    job_id: str,
    tenant_id: str,
    write_uuid: uuid.UUID,
    added: list,
    rewritten: _Rewrite,
) -> None:
    """Stage the job's one snapshot: an append, or an overwrite when earlier versions went."""
    from pyiceberg.expressions import EqualTo

    snapshot = transaction.update_snapshot(snapshot_properties={JOB_PROPERTY: job_id})
    if rewritten.deleted:
        producer = snapshot.overwrite(commit_uuid=write_uuid)
        # Prunes the manifests looked at to the tenant's partition, and scopes conflict checks
        # with concurrent commits (of other tenants) to it.
        producer.delete_by_predicate(EqualTo(TENANT, tenant_id))
    else:
        producer = snapshot.fast_append()
        producer.commit_uuid = write_uuid
    with producer:
        for data_file in rewritten.deleted:
            producer.delete_data_file(data_file)
        for data_file in itertools.chain(added, rewritten.files):
            producer.append_data_file(data_file)


class _FileWriter:
    """Arrow tables of the snapshot written as data files as they come."""

    def __init__(
        self, table: Table, metadata: TableMetadata, write_uuid: uuid.UUID, numbers: Iterator[int]
    ) -> None:
        self.args = (table, metadata, write_uuid, numbers)
        self.table, self.metadata, self.write_uuid, self.numbers = self.args
        self.files: list = []

    def write(self, data: pa.Table) -> None:
        from pyiceberg.io.pyarrow import _dataframe_to_data_files

        if data.num_rows:
            self.files.extend(
                _dataframe_to_data_files(
                    table_metadata=self.metadata,
                    df=data,
                    io=self.table.io,
                    write_uuid=self.write_uuid,
                    counter=self.numbers,
                )
            )


class _Rewrite:
    """The data files of a tenant's partition that hold earlier versions of a job's keys, and
    the files written in their place without those rows."""

    def __init__(
        self, table: Table, metadata: TableMetadata, key: str, tenant_id: str, block_rows: int
    ) -> None:
        self.table, self.metadata, self.key = table, metadata, key
        self.tenant_id, self.block_rows = tenant_id, block_rows
        self.deleted: list = []
        self.files: list = []
        self.replaced = 0

    def take_out(self, job_keys: pa.Array, writer: _FileWriter) -> None:
        """Rewrite the tenant's files that hold any of `job_keys` without those rows."""
        from pyiceberg.expressions import EqualTo
        from pyiceberg.table import DataScan

        tasks = DataScan(
            table_metadata=self.metadata,
            io=self.table.io,
            row_filter=EqualTo(TENANT, self.tenant_id),
        ).plan_files()
        kept = _Blocks(self.block_rows, writer)
        for group in _groups(tasks, KEY_GROUP_ROWS):
            for task, stale in self._stale_rows(group, job_keys):
                self.deleted.append(task.file)
                self.replaced += stale.true_count
                self._keep(task, stale, kept)
        kept.flush()
        self.files = writer.files

    def _stale_rows(
        self, tasks: list[FileScanTask], job_keys: pa.Array
    ) -> Iterator[tuple[FileScanTask, pa.BooleanArray]]:
        """The files of `tasks` holding any of `job_keys`, each with its rows' verdicts."""
        keys_only = self._scan(self.metadata.schema().select(self.key))
        lengths, columns = [], []
        for task in tasks:
            read = [_plain(b.column(0)) for b in keys_only.to_record_batches([task])]
            lengths.append(sum(len(a) for a in read))
            columns.extend(read)
        if not columns:
            return
        stale = pc.is_in(pa.concat_arrays(columns), value_set=job_keys)
        offsets = np.cumsum([0, *lengths])
        for task, start, end in zip(tasks, offsets[:-1], offsets[1:], strict=True):
            verdicts = stale.slice(int(start), int(end - start))
            if verdicts.true_count:
                yield task, verdicts

    def _keep(self, task: FileScanTask, stale: pa.BooleanArray, kept: _Blocks) -> None:
        """The rows of the file that are not stale, into the blocks of new files."""
        position = 0
        for batch in self._scan(self.metadata.schema()).to_record_batches([task]):
            verdicts = stale.slice(position, batch.num_rows)
            position += batch.num_rows
            kept.add(batch.filter(pc.invert(verdicts)))

    def _scan(self, projected):
        from pyiceberg.expressions import AlwaysTrue
        from pyiceberg.io.pyarrow import ArrowScan

        return ArrowScan(self.metadata, self.table.io, projected, AlwaysTrue())


class _Blocks:
    """Record batches gathered into blocks of about `rows` rows, each written as data files."""

    def __init__(self, rows: int, writer: _FileWriter) -> None:
        self.rows, self.writer = rows, writer
        self.batches: list[pa.RecordBatch] = []
        self.count = 0

    def add(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self.batches.append(batch)
            self.count += batch.num_rows
        if self.count >= self.rows:
            self.flush()

    def flush(self) -> None:
        if self.batches:
            self.writer.write(pa.Table.from_batches(self.batches))
        self.batches, self.count = [], 0


def _groups(tasks: Iterable[FileScanTask], rows: int) -> Iterator[list[FileScanTask]]:
    """The tasks in groups of about `rows` rows (by the files' record counts)."""
    group: list[FileScanTask] = []
    count = 0
    for task in tasks:
        group.append(task)
        count += task.file.record_count
        if count >= rows:
            yield group
            group, count = [], 0
    if group:
        yield group


def _plain(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A key column as Arrow compares it: one array, UUIDs as their 16 bytes."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.storage if isinstance(column, pa.ExtensionArray) else column


def _job_batches(
    engine: Engine,
    lake: LakeTable,
    tenant_id: str,
    job_id: str,
    chunk_size: int,
    schema: pa.Schema,
) -> Iterator[pa.Table]:
    """The job's rows as Arrow tables of about `chunk_size` rows, in `schema`: PostgreSQL's COPY
    writes CSV into a pipe that Arrow's streaming CSV reader parses, so no row passes through
    Python."""
    names = [name for name in schema.names if name in lake.source.c]
    as_read = {name: _read_type(schema.field(name).type) for name in names}
    loaded_at = datetime.now(timezone.utc)
    # Blocks of ~10k rows, one at a time: each becomes the snapshot's next data files, and
    # pyiceberg holds several copies of a block while it writes it (larger blocks: past
    # 400 MiB at 1M rows; see README, Benchmarks).
    blocks = max(MIN_BLOCK_BYTES, chunk_size * 64)
    query = job_rows_query(lake.source, names)
    for batch in copy_out_batches(engine, query, (tenant_id, job_id), as_read, blocks):
        columns = []
        for field in schema:
            if field.name in as_read:
                columns.append(_as_lake(batch.column(field.name), field.type))
            elif field.name == LAKE_LOADED_AT:
                columns.append(pa.repeat(pa.scalar(loaded_at, field.type), batch.num_rows))
            else:  # a column the lake table has and the dataset's table no longer does
                columns.append(pa.nulls(batch.num_rows, field.type))
        yield pa.Table.from_arrays(columns, schema=schema)


def _read_type(lake_type: pa.DataType) -> pa.DataType:
    """How a column is parsed from PostgreSQL's CSV (see db.lake.job_rows_query)."""
    if pa.types.is_timestamp(lake_type):
        return pa.int64()
    if isinstance(lake_type, pa.UuidType):
        return pa.string()
    return lake_type


def _as_lake(column: pa.Array, lake_type: pa.DataType) -> pa.Array:
    """A column as read from CSV, in its lake type."""
    if pa.types.is_timestamp(lake_type):
        return column.cast(lake_type)
    if isinstance(lake_type, pa.UuidType):
        return _uuids(column)
    return column


_ZERO_UUID = "0" * 32


def _uuids(text: pa.Array) -> pa.Array:
    """UUIDs in their canonical text as Arrow's uuid type (16 bytes each), without a Python
    object per value: the hex digits of the whole column are decoded at once."""
    hexed = pc.fill_null(pc.replace_substring(text, "-", ""), _ZERO_UUID)
    offsets = np.frombuffer(hexed.buffers()[1], dtype=np.int32)
    offsets = offsets[hexed.offset : hexed.offset + len(hexed) + 1]
    digits = hexed.buffers()[2].to_pybytes()[offsets[0] : offsets[-1]]
    raw = bytes.fromhex(digits.decode("ascii"))
    if len(raw) != 16 * len(text):
        raise ValueError("a UUID column holds a value that is not a UUID")
    validity = pc.is_valid(text).buffers()[1] if text.null_count else None
    storage = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(16), len(text), [validity, pa.py_buffer(raw)]
    )
    return pa.ExtensionArray.from_storage(pa.uuid(), storage)
