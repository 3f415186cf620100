"""Crash safety with real processes: an import SIGKILLed while PostgreSQL runs its validation or
its consolidation, a reprocess killed mid-load, a database that goes away mid-run. Each time,
running the job again ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from dagster import DagsterEventType, DagsterInstance
from dagster._core.instance.ref import InstanceRef
from sqlalchemy.engine import Engine

from ingestion_pipeline.db.engine import embedded_url, get_engine, stop_embedded
from ingestion_pipeline_tests.helpers import (
    cli_command,
    cli_env,
    cli_import_command,
    csv_text,
    empty_database,
    rows,
    scalar,
)

# Slow tier: processes killed mid-run, a private PostgreSQL stopped under them.
pytestmark = pytest.mark.slow

ROWS = 120_000
BAD_EVERY = 4_000  # every 4,000th record has no valid email: 30 issue rows


def contacts_file(path: Path, total: int = ROWS, bad_every: int | None = None) -> Path:
    def email(i: int) -> str:
        return f"user{i}" if bad_every and i % bad_every == 0 else f"user{i}@acme.io"

    path.write_bytes(csv_text(*(f"{email(i)},First{i},Last{i},Acme" for i in range(1, total + 1))))
    return path


def cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli_command(*args),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def kill_during(
    engine: Engine, command: list[str], env: dict[str, str], statement: str, timeout: float = 180
) -> str:
    """Start `command` and SIGKILL it while PostgreSQL is executing a statement of it that
    contains `statement`; returns that statement."""
    app = f"victim-{uuid.uuid4().hex[:8]}"
    victim = subprocess.Popen(
        command, env={**env, "PGAPPNAME": app}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    seen = None
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while seen is None and victim.poll() is None and time.monotonic() < deadline:
            seen = conn.scalar(
                sa.text(
                    "SELECT query FROM pg_stat_activity WHERE application_name = :app "
                    "AND state = 'active' AND strpos(query, :statement) > 0"
                ),
                {"app": app, "statement": statement},
            )
            conn.rollback()
        if seen is not None:
            victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    assert seen is not None, f"never saw {statement!r} running: {victim.stderr.read()[-2000:]}"
    assert victim.returncode == -signal.SIGKILL
    return seen


def job_row(engine: Engine, tenant: str) -> tuple:
    (row,) = rows(
        engine,
        "SELECT status, total_rows, processed_rows, issue_count, contacts_created "
        "FROM import_jobs WHERE tenant_id = :t",
        t=tenant,
    )
    return row


def loaded(engine: Engine, tenant: str) -> list[tuple]:
    """A tenant's contacts as a clean run leaves them (ids and timestamps aside)."""
    return rows(
        engine,
        "SELECT email, email_normalized, first_name, last_name, company, extra, source_row "
        "FROM contacts WHERE tenant_id = :t ORDER BY source_row",
        t=tenant,
    )


def issues_of(engine: Engine, tenant: str) -> list[tuple]:
    return rows(
        engine,
        "SELECT i.kind, i.field, i.issue_key, i.message, array_agg(ii.row_number ORDER BY 1) "
        "FROM issues i JOIN import_jobs j USING (job_id) JOIN issue_items ii USING (issue_id) "
        "WHERE j.tenant_id = :t AND NOT i.resolved GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3",
        t=tenant,
    )


def test_killed_during_validation_then_reprocess_killed_during_the_load(
    database_url, engine, tmp_path
):
    path = contacts_file(tmp_path / "contacts.csv", bad_every=BAD_EVERY)
    env = cli_env(database_url, tmp_path / "landing", tmp_path / "home")
    bad_rows = [str(n) for n in range(BAD_EVERY, ROWS + 1, BAD_EVERY)]

    # The reference: the same file, never interrupted, for tenant "clean".
    first = cli(env, "import", str(path), "--tenant", "clean", "--json")
    assert json.loads(first.stdout)["status"] == "NEEDS_REVIEW", first.stderr
    clean_job = json.loads(first.stdout)["job_id"]
    clean_issues = issues_of(engine, "clean")
    assert len(clean_issues) == ROWS // BAD_EVERY
    assert cli(env, "discard", clean_job, *bad_rows).returncode == 0
    assert cli(env, "reprocess", clean_job).returncode == 0
    assert job_row(engine, "clean") == ("COMPLETED", ROWS, ROWS, 0, ROWS - len(bad_rows))

    # Killed while the validation statements run: nothing of the validation is kept.
    seen = kill_during(engine, cli_import_command(path, "acme"), env, "current_problems")
    assert "current_problems" in seen
    status, total, processed, issue_count, created = job_row(engine, "acme")
    assert (status, total, processed, issue_count, created) == ("PROCESSING", ROWS, ROWS, 0, 0)
    assert scalar(engine, "SELECT count(*) FROM issues") == len(clean_issues)  # clean's only

    again = cli(env, "import", str(path), "--tenant", "acme", "--json")
    job_id = json.loads(again.stdout)["job_id"]
    assert job_row(engine, "acme") == ("NEEDS_REVIEW", ROWS, ROWS, len(clean_issues), 0)
    assert issues_of(engine, "acme") == clean_issues
    assert scalar(engine, "SELECT count(*) FROM staging_rows WHERE job_id = :j", j=job_id) == ROWS

    # The reviewer discards the same rows; the reprocess is killed while contacts are inserted.
    assert cli(env, "discard", job_id, *bad_rows).returncode == 0
    kill_during(engine, cli_command("reprocess", job_id), env, "INSERT INTO contacts")
    assert loaded(engine, "acme") == []
    assert job_row(engine, "acme")[4] == 0

    done = cli(env, "reprocess", job_id, "--json")
    assert done.returncode == 0, done.stderr
    assert job_row(engine, "acme") == ("COMPLETED", ROWS, ROWS, 0, ROWS - len(bad_rows))
    assert loaded(engine, "acme") == loaded(engine, "clean")
    assert scalar(
        engine,
        "SELECT count(*) FROM staging_rows WHERE job_id = :j AND status = 'READY'",
        j=job_id,
    ) == ROWS - len(bad_rows)


def test_killed_during_the_load_of_a_clean_file(database_url, engine, tmp_path):
    path = contacts_file(tmp_path / "contacts.csv")
    env = cli_env(database_url, tmp_path / "landing", tmp_path / "home")
    kill_during(engine, cli_import_command(path, "acme"), env, "INSERT INTO contacts")
    assert job_row(engine, "acme")[0] == "PROCESSING"
    assert scalar(engine, "SELECT count(*) FROM contacts") == 0

    again = cli(env, "import", str(path), "--tenant", "acme", "--json")
    assert again.returncode == 0, again.stderr
    assert job_row(engine, "acme") == ("COMPLETED", ROWS, ROWS, 0, ROWS)
    expected = [
        (f"user{i}@acme.io", f"user{i}@acme.io", f"First{i}", f"Last{i}", "Acme", None, i)
        for i in range(1, ROWS + 1)
    ]
    assert loaded(engine, "acme") == expected


def retried_steps(home: Path) -> list[str]:
    """The steps the CLI's runs (on the instance in `home`) retried."""
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        return [
            record.event_log_entry.step_key
            for record in instance.get_records_for_run(
                instance.get_runs()[0].run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY
            ).records
        ]


def test_database_restarted_mid_run_then_down_until_the_run_gives_up(tmp_path):
    """A private PostgreSQL, stopped under a running import: briefly (the step's retry policy
    carries the run through), then for good (the run fails with a clear error, and `retry`
    finishes the job once the server is back)."""
    data_dir = tmp_path / "private"
    total = 80_000
    path = contacts_file(tmp_path / "contacts.csv", total=total)
    url = embedded_url(data_dir, database="postgres")
    try:
        engine = get_engine(url)
        env = cli_env(url, tmp_path / "landing", tmp_path / "home", IMPORT_CHUNK_SIZE="2000")

        def stop_when_staged(at_least: int, down_for: float | None) -> subprocess.Popen:
            victim = subprocess.Popen(
                cli_import_command(path, "acme"),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            deadline = time.monotonic() + 180
            while victim.poll() is None and time.monotonic() < deadline:
                staged = scalar(engine, "SELECT coalesce(max(processed_rows), 0) FROM import_jobs")
                if staged >= at_least:
                    break
                time.sleep(0.05)
            assert victim.poll() is None, "the import finished before the server stopped"
            engine.dispose()
            assert stop_embedded(data_dir)
            if down_for is not None:
                time.sleep(down_for)
                embedded_url(data_dir, database="postgres")
            return victim

        # 1. Down for a second: the staging step fails, is retried, resumes; the run succeeds.
        victim = stop_when_staged(10_000, down_for=1.0)
        out, err = victim.communicate(timeout=300)
        assert victim.returncode == 0, err
        assert json.loads(out)["status"] == "COMPLETED"
        assert scalar(engine, "SELECT count(*) FROM contacts") == total
        assert scalar(engine, "SELECT count(*) FROM staging_rows") == total
        assert "staging_rows" in retried_steps(tmp_path / "home")

        # 2. Down until the retries run out: a clear error, no traceback, the job resumable.
        empty_database(engine)
        victim = stop_when_staged(10_000, down_for=None)
        out, err = victim.communicate(timeout=300)
        assert victim.returncode == 1
        message = re.search(r"^ingestion-pipeline: (\S+): the run failed: (.*)$", err, re.M)
        assert message, err
        job_id = message.group(1)
        assert message.group(2).startswith("staging_rows:")
        assert "the job could not be marked FAILED" in err
        assert f"run `ingestion-pipeline retry {job_id}` once the database is back" in err

        embedded_url(data_dir, database="postgres")
        retried = cli(env, "retry", job_id, "--json")
        assert retried.returncode == 0, retried.stderr
        assert json.loads(retried.stdout)["status"] == "COMPLETED"
        assert scalar(engine, "SELECT count(*) FROM contacts") == total
        assert scalar(engine, "SELECT count(DISTINCT row_number) FROM staging_rows") == total
    finally:
        get_engine(url).dispose()
        stop_embedded(data_dir)


def test_killed_during_a_parent_datasets_load_then_rerun_loads_once_and_releases_its_children(
    database_url, engine, tmp_path
):
    """An orders file waits for its customer; the customers import is killed while its upsert
    runs: nothing of it is loaded and the order still waits. Running it again loads every
    customer once and releases the order, which completes with its reference satisfied."""
    customer_ids = [str(uuid.uuid5(uuid.NAMESPACE_DNS, f"customer{i}")) for i in range(ROWS)]
    customers = tmp_path / "customers.ndjson"
    customers.write_text(
        "".join(
            json.dumps({"customer_id": c, "name": f"Customer {i}", "email": f"c{i}@shop.io"}) + "\n"
            for i, c in enumerate(customer_ids)
        )
    )
    orders = tmp_path / "orders.ndjson"
    orders.write_text(
        json.dumps(
            {
                "order_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, "order1")),
                "customer_id": customer_ids[-1],
                "total_amount": "12.50",
                "currency": "EUR",
                "order_status": "paid",
                "order_date": "2025-02-03T14:00:00Z",
            }
        )
        + "\n"
    )
    env = cli_env(database_url, tmp_path / "landing", tmp_path / "home")

    def import_args(path: Path, dataset: str) -> tuple[str, ...]:
        return ("import", str(path), "--tenant", "shop", "--dataset", dataset, "--json")

    waiting = cli(env, *import_args(orders, "orders"))
    assert json.loads(waiting.stdout)["status"] == "WAITING_FOR_REFERENCES", waiting.stderr

    kill_during(
        engine, cli_command(*import_args(customers, "customers")), env, "INSERT INTO customers"
    )
    assert scalar(engine, "SELECT count(*) FROM customers") == 0
    assert scalar(engine, "SELECT status FROM import_jobs WHERE dataset = 'orders'") == (
        "WAITING_FOR_REFERENCES"
    )
    assert scalar(engine, "SELECT count(*) FROM run_requests") == 0

    done = cli(env, *import_args(customers, "customers"))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["status"], summary["rows_inserted"], summary["rows_unchanged"]) == (
        "COMPLETED",
        ROWS,
        0,
    )
    assert list(summary["revalidated"].values()) == ["COMPLETED"]
    assert scalar(engine, "SELECT count(*) FROM customers") == ROWS
    assert scalar(engine, "SELECT count(DISTINCT customer_id) FROM customers") == ROWS
    assert rows(
        engine, "SELECT o.customer_id::text FROM orders o JOIN customers c USING (customer_id)"
    ) == [(customer_ids[-1],)]
