"""`make bench`: our import against a plain PostgreSQL COPY of the same file, in one run.

Every figure is a median of --repeat runs measured here and now, and is printed as a ratio to
the COPY floor measured in the same run, because a shared machine's absolute speed drifts.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from dagster import AssetKey, DagsterInstance
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

sys.path.insert(0, str(Path(__file__).resolve().parent))
from burst import fresh_database, run_burst
from generate import email_for, generate

from ingestion_pipeline.db.consolidation import INSERT_CONTACTS
from ingestion_pipeline.db.engine import embedded_url, get_engine, normalize_url
from ingestion_pipeline.db.staging import CONTACTS_COPY_COLUMNS
from ingestion_pipeline.settings import load_settings

BENCH_DATABASE = "ingestion_bench"
TENANT = "bench"
CLI = [sys.executable, "-m", "ingestion_pipeline.cli"]


PLAIN_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def servers() -> list[tuple[str, str]]:
    """(label, admin URL) of each server to measure on: the project's own (DATABASE_URL or the
    embedded one), then a plain PostgreSQL (BENCH_DATABASE_URL, else 127.0.0.1:5432) if one
    answers, since the embedded server's tuning can hide a plan that a stock server runs badly.
    """
    settings = load_settings()
    if settings.database_url:
        own = ("DATABASE_URL", normalize_url(settings.database_url))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            own = ("embedded", embedded_url(settings.data_dir, database="postgres"))
    found = [own]
    plain = os.environ.get("BENCH_DATABASE_URL") or PLAIN_SERVER
    try:
        probe = sa.create_engine(normalize_url(plain))
        with probe.connect() as conn:
            version = conn.scalar(sa.text("SHOW server_version"))
        probe.dispose()
    except sa.exc.OperationalError:
        print(f"no plain server at {make_url(normalize_url(plain)).host}; measuring one server")
        return found
    if make_url(normalize_url(plain)).set(database="postgres") != make_url(own[1]).set(
        database="postgres"
    ):
        found.append((f"plain PostgreSQL {version}", normalize_url(plain)))
    return found


def bench_database_url(server_url: str) -> str:
    """A fresh benchmark database on the server of `server_url`."""
    return fresh_database(server_url, BENCH_DATABASE)


def copy_from(engine: Engine, sql: str, stream) -> None:
    with engine.begin() as conn:
        cursor = conn.connection.driver_connection.cursor()
        cursor.copy_expert(sql, stream)
        cursor.close()


def copy_to(engine: Engine, sql: str, params: tuple, stream) -> None:
    with engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()
        cursor.copy_expert(cursor.mogrify(sql, params).decode(), stream)
        cursor.close()


def seed_contacts(engine: Engine, count: int, file_rows: int) -> None:
    """Give the tenant `count` contacts; 0.5% of the file's addresses are among them."""
    overlap = {email_for(i) for i in range(1, file_rows + 1, 200)}
    lines = io.StringIO()
    for i in range(count - len(overlap)):
        lines.write(
            f"{TENANT},seed{i}@existing{i % 1000}.org,seed{i}@existing{i % 1000}.org,S,E,C\n"
        )
    for email in overlap:
        lines.write(f"{TENANT},{email},{email},S,E,C\n")
    lines.seek(0)
    copy_from(
        engine,
        "COPY contacts (tenant_id, email, email_normalized, first_name, last_name, company) "
        "FROM STDIN WITH (FORMAT csv)",
        lines,
    )
    vacuum(engine)


def bench_file(rows: int) -> Path:
    """The generated export of `rows` rows (made on first use)."""
    work = load_settings().data_dir / "bench"
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"contacts_{rows}.csv"
    if rows and not path.exists():
        print(f"generating {path} ...", flush=True)
        # Under another name until complete: an interrupted run leaves no short file behind.
        partial = path.with_suffix(".partial")
        print("  planted:", generate(partial, rows), flush=True)
        partial.rename(path)
    return path


def workbook_file(rows: int) -> Path:
    """The generated workbook of `rows` data rows (made on first use, under another name until
    complete)."""
    work = load_settings().data_dir / "bench"
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"contacts_{rows}.xlsx"
    if not path.exists():
        print(f"generating {path} ...", flush=True)
        partial = path.with_name(path.name + ".partial.xlsx")
        subprocess.run(
            [sys.executable, str(Path(__file__).with_name("workbook.py")), "generate",
             str(partial), str(rows)],
            check=True,
        )  # fmt: skip
        partial.rename(path)
    return path


def bench_workbook(path: Path, env: dict[str, str]) -> list[tuple[str, float, float | None]]:
    """Our import of the workbook beside calamine reading it whole (the former reader)."""
    launcher = [sys.executable, str(Path(__file__).with_name("peak_rss.py"))]
    proc = subprocess.run(
        [*launcher, sys.executable, "-W", "ignore", str(Path(__file__).with_name("workbook.py")),
         "calamine", str(path)],
        capture_output=True,
        text=True,
        env=env,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"calamine read failed: {proc.stderr[-2000:]}")
    calamine_s = float(proc.stdout.split()[1])
    calamine_peak = int(proc.stderr.strip().splitlines()[-1].removeprefix("peak_rss_kib=")) / 1024
    seconds, peak, summary = run_cli(["import", str(path), "--tenant", "workbook"], env)
    assert summary["status"] in ("COMPLETED", "NEEDS_REVIEW"), summary
    return [
        ("(h) workbook: calamine reads the sheet whole (former reader; read only)", calamine_s,
         calamine_peak),
        (f"(i) workbook: import through the CLI ({summary['total_rows']:,} rows, streamed)",
         seconds, peak),
    ]  # fmt: skip


def discard_issue_rows(engine: Engine, job_id: str) -> None:
    """A reviewer's decision to discard every row of the job in ISSUE."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO review_decisions (job_id, row_number, action, source) "
                "SELECT job_id, row_number, 'discard', 'bench' FROM staging_rows "
                "WHERE job_id = :j AND status = 'ISSUE'"
            ),
            {"j": job_id},
        )


def vacuum(engine: Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE contacts"))


def write_floors(engine: Engine, job_id: str) -> tuple[float, float]:
    """The writes the pipeline cannot skip, alone, on the same server: (f) COPY of the job's
    staged rows, prepared in advance, into an empty copy of staging_rows (its key and
    constraints, logged like it); (g) the load's own INSERT of the job's READY rows into a copy
    of contacts holding the tenant's existing contacts. Seconds of each."""
    columns = ", ".join(CONTACTS_COPY_COLUMNS)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS floor_staging, floor_contacts"))
        conn.execute(sa.text("CREATE TABLE floor_staging (LIKE staging_rows INCLUDING ALL)"))
        conn.execute(sa.text("CREATE TABLE floor_contacts (LIKE contacts INCLUDING ALL)"))
        conn.execute(
            sa.text(
                "INSERT INTO floor_contacts SELECT * FROM contacts "
                "WHERE tenant_id = :t AND job_id IS DISTINCT FROM :j"
            ),
            {"t": TENANT, "j": job_id},
        )
        conn.execute(
            sa.text(
                "SELECT setval(pg_get_serial_sequence('floor_contacts', 'contact_id'), "
                "max(contact_id)) FROM floor_contacts"
            )
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE floor_contacts"))
    with tempfile.TemporaryFile() as rows:
        copy_to(
            engine,
            f"COPY (SELECT {columns} FROM staging_rows WHERE job_id = %s ORDER BY row_number) "
            "TO STDOUT WITH (FORMAT csv)",
            (job_id,),
            rows,
        )
        rows.seek(0)
        staging = timed(
            lambda: copy_from(
                engine, f"COPY floor_staging ({columns}) FROM STDIN WITH (FORMAT csv)", rows
            )
        )
    load = INSERT_CONTACTS.text.replace("INSERT INTO contacts", "INSERT INTO floor_contacts")
    assert load != INSERT_CONTACTS.text
    with engine.begin() as conn:
        started = time.perf_counter()
        conn.execute(sa.text(load), {"tenant_id": TENANT, "job_id": job_id})
    loading = time.perf_counter() - started
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE floor_staging, floor_contacts"))
    return staging, loading


def timed(fn: Callable[[], None]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run_cli(args: list[str], env: dict[str, str]) -> tuple[float, float, dict]:
    """Run the CLI; returns seconds, peak RSS in MiB and its JSON output."""
    launcher = [sys.executable, str(Path(__file__).with_name("peak_rss.py"))]
    started = time.perf_counter()
    proc = subprocess.run(
        [*launcher, *CLI, *args, "--json"], env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {proc.stderr[-2000:]}")
    last = proc.stderr.strip().splitlines()[-1]
    peak_kib = int(last.removeprefix("peak_rss_kib="))
    return seconds, peak_kib / 1024, json.loads(proc.stdout)


def run_lake_append(url: str, job_id: str, *options: str) -> tuple[float, float, int, int]:
    """Write the COMPLETED job to the lake in a process of its own (a fresh lake of contacts
    unless `options` say otherwise, see lake_append.py); seconds, peak RSS MiB, rows written,
    earlier versions replaced."""
    launcher = [sys.executable, str(Path(__file__).with_name("peak_rss.py"))]
    script = str(Path(__file__).with_name("lake_append.py"))
    proc = subprocess.run(
        [*launcher, sys.executable, "-W", "ignore", script, url, job_id, *options],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"lake write failed: {proc.stderr[-2000:]}")
    rows, seconds, replaced, _ = proc.stdout.split()
    peak_kib = int(proc.stderr.strip().splitlines()[-1].removeprefix("peak_rss_kib="))
    return float(seconds), peak_kib / 1024, int(rows), int(replaced)


LAKE_JOB = "bench-lake-seed"
PRODUCTS_HEADER = "product_id,sku,name,price,category_id,active,created_at"


def _product(key: uuid.UUID, n: int, price: str) -> str:
    return f"{key},SKU-{n},Product {n},{price},{CATEGORY},{'true' if n % 3 else 'false'},{STAMP}"


CATEGORY = uuid.UUID(int=7)
STAMP = "2025-01-01T00:00:00+00:00"


def seed_products(engine: Engine, count: int) -> list[uuid.UUID]:
    """Give the tenant `count` products, loaded by one job (LAKE_JOB); their keys."""
    rng = random.Random(27)
    keys = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(count)]
    lines = io.StringIO()
    for n, key in enumerate(keys):
        lines.write(f"{TENANT},{_product(key, n, f'{n % 1000}.50')},seed{n},{LAKE_JOB},{n + 1}\n")
    lines.seek(0)
    copy_from(
        engine,
        f"COPY products (tenant_id, {PRODUCTS_HEADER}, content_hash, job_id, source_row) "
        "FROM STDIN WITH (FORMAT csv)",
        lines,
    )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE products"))
    return keys


def upsert_file(keys: list[uuid.UUID], changed: int, added: int) -> Path:
    """A products export: `changed` of the existing products with a new price, `added` new."""
    rng = random.Random(28)
    path = Path(tempfile.mkdtemp(prefix="bench-upsert-")) / "products.csv"
    with path.open("w") as out:
        out.write(PRODUCTS_HEADER + "\n")
        for n in sorted(rng.sample(range(len(keys)), changed)):
            out.write(_product(keys[n], n, f"{n % 1000}.99") + "\n")
        for n in range(len(keys), len(keys) + added):
            out.write(_product(uuid.UUID(int=rng.getrandbits(128), version=4), n, "1.00") + "\n")
    return path


def lake_rows(url: str, warehouse: str, dataset: str) -> int:
    """The tenant's rows in the dataset's lake table (from the snapshot's metadata)."""
    from pyiceberg.expressions import EqualTo

    from ingestion_pipeline.lake import LAKE_TABLES, catalog

    table = catalog(None, url, warehouse).load_table(LAKE_TABLES[dataset].name)
    return table.scan(row_filter=EqualTo("tenant_id", TENANT)).count()


def bench_lake_upsert(
    url: str, env: dict[str, str], existing: int, changed: int, added: int
) -> list[tuple[str, float, float | None, int]]:
    """The lake step of an upsert job that changes `changed` of `existing` products and adds
    `added`, beside the same job's import and its load into PostgreSQL."""
    engine = get_engine(url)
    keys = seed_products(engine, existing)
    warehouse = tempfile.mkdtemp(prefix="bench-lake-")
    lake = ("--dataset", "products", "--tenant", TENANT, "--warehouse", warehouse)
    seed_s, seed_peak, seeded, _ = run_lake_append(url, LAKE_JOB, *lake)
    assert seeded == existing, seeded
    path = upsert_file(keys, changed, added)
    seconds, peak, summary = run_cli(
        ["import", str(path), "--tenant", TENANT, "--dataset", "products"], env
    )
    assert summary["status"] == "COMPLETED", summary
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        [event] = instance.fetch_materializations(AssetKey("products"), limit=1).records
        load_s = event.asset_materialization.metadata["seconds"].value
    lake_s, lake_peak, rows, replaced = run_lake_append(url, summary["job_id"], *lake)
    assert (rows, replaced) == (changed + added, changed), (rows, replaced)
    in_lake = lake_rows(url, warehouse, "products")
    with engine.connect() as conn:
        in_postgres = conn.scalar(
            sa.text("SELECT count(*) FROM products WHERE tenant_id = :t"), {"t": TENANT}
        )
    assert in_lake == in_postgres == existing + added, (in_lake, in_postgres)
    print(
        f"lake upsert: {rows:,} rows written, {replaced:,} earlier versions replaced; "
        f"{in_lake:,} products in the lake, {in_postgres:,} in PostgreSQL",
        flush=True,
    )
    job = f"{changed:,} changed + {added:,} new of {existing:,} products"
    return [
        (f"(j) lake: first load of {existing:,} products (append)", seed_s, seed_peak, existing),
        (f"(k) upsert job through the CLI ({job})", seconds, peak, rows),
        ("(l) its load into PostgreSQL (INSERT ... ON CONFLICT DO UPDATE)", load_s, None, rows),
        ("(m) its lake step: replace the changed keys' rows, add the new (1 snapshot)", lake_s,
         lake_peak, rows),
    ]  # fmt: skip


def reset_job(engine: Engine, job_id: str | None) -> None:
    if job_id is None:
        return
    with engine.begin() as conn:
        for table in ("contacts", "review_decisions", "issues", "staging_rows", "import_jobs"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE job_id = :j"), {"j": job_id})
    vacuum(engine)


class Base(DeclarativeBase):
    pass


class OrmContact(Base):
    __tablename__ = "orm_contacts"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[str]
    email: Mapped[str]
    first_name: Mapped[str]
    last_name: Mapped[str]
    company: Mapped[str]


def orm_rows_per_second(engine: Engine, path: Path, rows: int) -> float:
    """The hand-rolled worker's way: one ORM insert and commit per row."""
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    import csv

    with path.open(encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        records = [next(reader) for _ in range(rows)]
    started = time.perf_counter()
    with Session(engine) as session:
        for email, first, last, company, *_ in records:
            session.add(
                OrmContact(
                    tenant_id=TENANT, email=email, first_name=first, last_name=last, company=company
                )
            )
            session.commit()
    return rows / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--existing", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--orm-rows", type=int, default=10_000)
    parser.add_argument(
        "--burst-files", type=int, default=1000, help="small uploads through the daemon (0: none)"
    )
    parser.add_argument("--burst-tenants", type=int, default=20)
    parser.add_argument(
        "--workbook-rows", type=int, default=1_048_575, help="rows of the .xlsx measured (0: none)"
    )
    parser.add_argument(
        "--lake-existing",
        type=int,
        default=1_000_000,
        help="products in the lake before the upsert job measured (0: none)",
    )
    parser.add_argument("--lake-changed", type=int, default=100_000)
    parser.add_argument("--lake-added", type=int, default=100_000)
    args = parser.parse_args()

    path = bench_file(args.rows)
    for label, server_url in servers():
        if args.rows:
            bench_server(label, bench_database_url(server_url), path, args)
        if args.burst_files:
            print(f"\n== {label}: a burst of {args.burst_files:,} small files ==", flush=True)
            burst = run_burst(server_url, args.burst_files, args.burst_tenants)
            print(
                f"| burst of {burst['files']:,} uploads of 10-100 rows over {burst['tenants']} "
                f"tenants, sensor + daemon | {burst['seconds']:.1f} s | "
                f"{burst['files_per_minute']:.0f} files/min | {burst['statuses']} |",
                flush=True,
            )


def bench_server(label: str, url: str, path: Path, args: argparse.Namespace) -> None:
    """Measure COPY, import, reprocess and the ORM baseline on one server; print the table."""
    print(f"\n== {label} ==", flush=True)
    engine = get_engine(url)
    print(f"seeding tenant {TENANT!r} with {args.existing:,} contacts ...", flush=True)
    seed_contacts(engine, args.existing, args.rows)

    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE UNLOGGED TABLE copy_floor (email text, first_name text, last_name text, "
                "company text, phone text, city text)"
            )
        )

    def copy_floor() -> None:
        with engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE copy_floor"))
        with path.open("rb") as stream:
            copy_from(engine, "COPY copy_floor FROM STDIN WITH (FORMAT csv, HEADER true)", stream)

    home = Path(tempfile.mkdtemp(prefix="bench-dagster-"))
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "LANDING_ZONE": str(Path(tempfile.mkdtemp(prefix="bench-landing-"))),
        "DAGSTER_HOME": str(home),
        "PYTHONWARNINGS": "ignore",
    }
    results: dict[str, list[float]] = {"copy": [], "import": [], "reprocess": []}
    rss: dict[str, list[float]] = {"import": [], "reprocess": []}
    job_id = None
    summary: dict = {}
    for attempt in range(1, args.repeat + 1):
        results["copy"].append(timed(copy_floor))
        reset_job(engine, job_id)
        seconds, peak, summary = run_cli(["import", str(path), "--tenant", TENANT], env)
        job_id = summary["job_id"]
        results["import"].append(seconds)
        rss["import"].append(peak)
        discard_issue_rows(engine, job_id)
        seconds, peak, after = run_cli(["reprocess", job_id], env)
        assert after["status"] == "COMPLETED", after
        results["reprocess"].append(seconds)
        rss["reprocess"].append(peak)
        print(
            f"run {attempt}: copy {results['copy'][-1]:.2f}s, import {results['import'][-1]:.2f}s"
            f" ({summary['status']}, {summary['issue_count']} issues), reprocess "
            f"{results['reprocess'][-1]:.2f}s ({after['contacts_created']} contacts)",
            flush=True,
        )
    lake_seconds, lake_peak, _, _ = run_lake_append(url, job_id)
    staging_floor, load_floor = write_floors(engine, job_id)
    orm_rate = orm_rows_per_second(engine, path, args.orm_rows)
    workbook = bench_workbook(workbook_file(args.workbook_rows), env) if args.workbook_rows else []
    upsert = (
        bench_lake_upsert(url, env, args.lake_existing, args.lake_changed, args.lake_added)
        if args.lake_existing
        else []
    )
    server = label

    copy_s = statistics.median(results["copy"])
    rows = args.rows
    table = [
        ("(a) COPY into an unlogged table (floor)", copy_s, None),
        (
            "(b) import through the CLI (read, stage, validate)",
            statistics.median(results["import"]),
            max(rss["import"]),
        ),
        (
            "(c) reprocess after discarding issue rows (+ load)",
            statistics.median(results["reprocess"]),
            max(rss["reprocess"]),
        ),
        ("(e) lake: append the loaded contacts to Iceberg (after c)", lake_seconds, lake_peak),
        ("(f) alone: COPY of the job's staged rows, prepared, into staging", staging_floor, None),
        ("(g) alone: the load's INSERT of its rows into contacts", load_floor, None),
        (
            f"(d) ORM insert + commit per row ({args.orm_rows:,} rows, extrapolated)",
            rows / orm_rate,
            None,
        ),
        *workbook,
    ]
    print()
    print(f"{label}: {rows:,} rows, {args.existing:,} existing contacts, median of {args.repeat}")
    print()
    print("| stage | seconds | rows/s | x COPY | peak RSS |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, seconds, peak in table:
        peak_text = f"{peak:.0f} MiB" if peak else "-"
        print(
            f"| {label} | {seconds:.2f} | {rows / seconds:,.0f} | {seconds / copy_s:.1f} | "
            f"{peak_text} |"
        )
    if upsert:
        print()
        print(f"{server}: the lake step of an upsert job, beside its load into PostgreSQL")
        print()
        print("| step | seconds | rows/s | peak RSS |")
        print("| --- | ---: | ---: | ---: |")
        for step, seconds, peak, step_rows in upsert:
            peak_text = f"{peak:.0f} MiB" if peak else "-"
            print(f"| {step} | {seconds:.2f} | {step_rows / seconds:,.0f} | {peak_text} |")


if __name__ == "__main__":
    main()
