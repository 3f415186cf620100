"""No plan of an import, a review or the checks rescans a table once per row, whatever the
planner's statistics say: every statement is run with EXPLAIN ANALYZE first (in a savepoint
rolled back before the statement itself runs) and its executed plan is inspected."""

from __future__ import annotations

import io
import re

import psycopg2
import pytest
import sqlalchemy as sa
from sqlalchemy import event

from ingestion_pipeline.db.plans import quadratic_nodes, wide_scans
from ingestion_pipeline_tests.helpers import job, register_upload, run_job, scalar

# Statements EXPLAIN can run; advisory locks are left alone (a session lock is not released by
# rolling back to a savepoint).
_PLANNED = re.compile(r"^\s*(WITH|SELECT|INSERT|UPDATE|DELETE|CREATE TEMP TABLE \w+ .*?AS)\b", re.S)


class PlanProbe:
    """Runs each plannable statement of `engine` once more under EXPLAIN ANALYZE, undone."""

    def __init__(self) -> None:
        self.plans: list[tuple[str, dict]] = []

    def __call__(self, conn, cursor, statement, parameters, context, executemany) -> None:
        raw = conn.connection.driver_connection
        if executemany or raw.autocommit or "advisory" in statement:
            return
        if not _PLANNED.match(statement):
            return
        probe = raw.cursor()
        try:
            probe.execute("SAVEPOINT plan_probe")
            try:
                probe.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
                self.plans.append((statement, probe.fetchone()[0][0]["Plan"]))
            except psycopg2.Error:
                pass  # the statement itself will say what is wrong
            probe.execute("ROLLBACK TO SAVEPOINT plan_probe")
        finally:
            probe.close()


def test_a_scan_repeated_per_row_is_recognized_in_an_executed_plan(engine):
    with engine.begin() as conn:
        raw = conn.connection.driver_connection.cursor()
        raw.execute("CREATE TEMP TABLE a AS SELECT g AS x FROM generate_series(1, 3000) g")
        raw.execute("CREATE TEMP TABLE b AS SELECT g AS y FROM generate_series(1, 2000) g")
        query = "EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM a JOIN b ON a.x % 2000 = b.y"
        raw.execute("SET LOCAL enable_hashjoin = off")
        raw.execute("SET LOCAL enable_mergejoin = off")
        raw.execute("SET LOCAL enable_material = off")
        raw.execute(query)
        looped = quadratic_nodes(raw.fetchone()[0][0]["Plan"])
        raw.execute("RESET enable_hashjoin")
        raw.execute(query)
        hashed = quadratic_nodes(raw.fetchone()[0][0]["Plan"])
    # Either table may be the outer one: the other is scanned once per row of it.
    assert looped in (
        ["Seq Scan on a (rows=3000 loops=2000)"],
        ["Seq Scan on b (rows=2000 loops=3000)"],
    )
    assert hashed == []


@pytest.fixture
def stale_statistics(engine, instance, resources, local_zone):
    """Planner statistics taken after one small import, as a deployment has them when its first
    big file arrives: every job_id they know is another job's."""
    small = "email,first_name,last_name,company\nok@y.io,A,B,C\nbad,A,B,C\nbad2,A,B,C\n"
    job_id = register_upload(engine, local_zone, "other", "small.csv", small.encode())
    assert run_job(instance, resources, job_id, "other").success
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("ANALYZE"))


def _seed_contacts(engine, tenant: str, emails: list[str]) -> None:
    seeded = io.StringIO("".join(f"{tenant},{e},{e},S,E,C\n" for e in emails))
    with engine.begin() as conn:
        cursor = conn.connection.driver_connection.cursor()
        cursor.copy_expert(
            "COPY contacts (tenant_id, email, email_normalized, first_name, last_name, company) "
            "FROM STDIN WITH (FORMAT csv)",
            seeded,
        )


def _import_review_reprocess(engine, instance, resources, local_zone, tenant, name, lines):
    """Import a file (it needs review), discard its rows with issues, reprocess: COMPLETED."""
    job_id = register_upload(engine, local_zone, tenant, name, "\n".join(lines).encode())
    assert run_job(instance, resources, job_id, tenant).success
    assert job(engine, job_id).status == "NEEDS_REVIEW"
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO review_decisions (job_id, row_number, action, source) "
                "SELECT job_id, row_number, 'discard', 'test' FROM staging_rows "
                "WHERE job_id = :j AND status = 'ISSUE'"
            ),
            {"j": job_id},
        )
    assert run_job(instance, resources, job_id, tenant, "reprocess_job").success
    assert job(engine, job_id).status == "COMPLETED"
    return job_id


def _big_file() -> list[str]:
    """20,000 rows: every 13th address invalid, every 29th a duplicate of the row before; with
    the contacts `_seed_contacts` gets for every 20th, about 3,000 problem rows."""
    lines = ["email,first_name,last_name,company"]
    for i in range(1, 20001):
        email = f"u{i - 1 if i % 29 == 0 else i}@x.io" if i % 13 else f"bad{i}"
        lines.append(f"{email},F{i},L{i},Acme")
    return lines


def _probed(engine, run):
    """What `run()` returns, and the executed plans of every plannable statement it sends
    through `engine`."""
    probe = PlanProbe()
    event.listen(engine, "before_cursor_execute", probe)
    try:
        returned = run()
    finally:
        event.remove(engine, "before_cursor_execute", probe)
    return returned, probe.plans


def test_no_statement_of_an_import_its_review_and_checks_rescans_a_table_per_row(
    engine, instance, resources, local_zone, stale_statistics
):
    _seed_contacts(engine, "acme", [f"u{i}@x.io" for i in range(1, 20001, 20)])
    job_id, plans = _probed(
        engine,
        lambda: _import_review_reprocess(
            engine, instance, resources, local_zone, "acme", "big.csv", _big_file()
        ),
    )

    assert scalar(engine, "SELECT count(*) FROM contacts WHERE job_id = :j", j=job_id) > 15_000
    planned = " ".join(statement for statement, _ in plans)
    for part in ("CREATE TEMP TABLE current_problems", "INSERT INTO issue_items", "EXCEPT"):
        assert part in planned  # validation, linking and the unlinked-rows check were probed
    assert "INSERT INTO contacts" in planned
    offenders = [
        (statement.strip()[:200], nodes)
        for statement, plan in plans
        if (nodes := quadratic_nodes(plan))
    ]
    assert offenders == []


def test_a_small_files_statements_read_its_own_rows_not_the_tables(
    engine, instance, resources, local_zone
):
    # A tenant with a big job behind it (20,000 staged rows, ~3,000 issues, ~17,000 contacts,
    # statistics fresh): a 20-row file of the same tenant, reviewed and loaded, must cost what
    # 20 rows cost. Before, two checks read every staged row and every contact of the tenant.
    _seed_contacts(engine, "acme", [f"u{i}@x.io" for i in range(1, 20001, 20)])
    _import_review_reprocess(
        engine, instance, resources, local_zone, "acme", "big.csv", _big_file()
    )
    small = ["email,first_name,last_name,company", "u1@x.io,Again,Known,Acme", "nope,N,O,P"]
    small += [f"small{i}@y.io,F{i},L{i},Acme" for i in range(18)]
    _, plans = _probed(
        engine,
        lambda: _import_review_reprocess(
            engine, instance, resources, local_zone, "acme", "small.csv", small
        ),
    )

    planned = " ".join(statement for statement, _ in plans)
    for part in ("CREATE TEMP TABLE current_problems", "INSERT INTO contacts", "o.contact_id <>"):
        assert part in planned  # validation, the load and the duplicate check were probed
    wide = [
        (statement.strip()[:200], scans)
        for statement, plan in plans
        if (scans := wide_scans(plan, limit=1_000))
    ]
    assert wide == []
