"""Asset checks: every check passes on the sample imports, and each one fails on the breakage
it guards against."""

from __future__ import annotations

from pathlib import Path

import psycopg2
import pyarrow as pa
import pytest
import sqlalchemy as sa

from ingestion_pipeline.checks import IMPORT_CHECKS, check_named
from ingestion_pipeline.constants import TENANT_TAG
from ingestion_pipeline.db.checks import UNLINKED_ROWS, status_disagreements
from ingestion_pipeline.db.copy_out import copy_out_batches
from ingestion_pipeline.db.decisions import record_decisions
from ingestion_pipeline.review_files import Decision
from ingestion_pipeline_tests.helpers import (
    check_evaluations,
    csv_text,
    definitions,
    import_bytes,
    job,
    register_upload,
    run_checks,
    run_failure_sensor,
    run_job,
    scalar,
)

contacts_emails_valid = check_named("contacts_emails_valid")
contacts_unique_per_tenant = check_named("contacts_unique_per_tenant")
issue_count_matches = check_named("issue_count_matches")
issue_rows_linked = check_named("issue_rows_linked")
job_status_agrees = check_named("job_status_agrees")
staging_matches_file = check_named("staging_matches_file")
upload_readable = check_named("upload_readable")
SAMPLES = Path(__file__).resolve().parent.parent / "samples"
CLEAN = csv_text("ann@acme.io,Ann,Lee,Acme", "bob@acme.io,Bob,Ray,Acme", "cy@acme.io,Cy,Day,Acme")
# Row 2 duplicates row 1 and row 3 has no valid email: two issues over three rows.
FLAWED = csv_text("ann@acme.io,Ann,Lee,Acme", "ann@acme.io,Ann,Lee,Acme", "nope,No,One,Acme")


def tamper(engine, statement: str, job_id: str) -> None:
    """Break what a check guards, behind the importer's back (`:j` is the job)."""
    with engine.begin() as conn:
        conn.execute(sa.text(statement), {"j": job_id})


def failed(result, check) -> object:
    evaluation = check_evaluations(result)[check.check_key.name]
    assert not evaluation.passed, evaluation.description
    return evaluation


def test_every_check_passes_on_the_sample_imports_and_their_review(
    engine, instance, resources, local_zone
):
    """The CI gate: the bundled samples imported, reviewed and loaded with every check run."""
    evaluations = []
    jobs = {}
    for path in sorted(SAMPLES.glob("*/*.*")):
        tenant = path.parent.name
        result, row = import_bytes(
            engine, instance, resources, local_zone, tenant, path.name, path.read_bytes()
        )
        assert result.success, tenant
        evaluations += result.get_asset_check_evaluations()
        jobs[tenant] = row
    assert {t: r.status for t, r in jobs.items()} == {
        "acme": "COMPLETED",
        "globex": "NEEDS_REVIEW",
        "initech": "COMPLETED",
    }
    globex = jobs["globex"]
    with engine.begin() as conn:
        record_decisions(
            conn,
            globex,
            [
                Decision(3, "discard"),
                Decision(4, "fix", {"email": "franz@globex.at"}),
                Decision(5, "fix", {"last_name": "Keller"}),
            ],
            source="test",
        )
    reprocess = (
        definitions(resources)
        .resolve_job_def("reprocess_job")
        .execute_in_process(
            partition_key=globex.job_id, instance=instance, tags={TENANT_TAG: "globex"}
        )
    )
    evaluations += reprocess.get_asset_check_evaluations()
    assert job(engine, globex.job_id).status == "COMPLETED"

    assert {e.check_name for e in evaluations} == {c.check_key.name for c in IMPORT_CHECKS}
    assert [
        (e.asset_key.path[-1], e.check_name, e.description) for e in evaluations if not e.passed
    ] == []


def test_upload_readable_fails_when_the_upload_changed_before_it_was_read(
    engine, instance, resources, local_zone
):
    job_id = register_upload(engine, local_zone, "acme", "a.csv", CLEAN)
    local_zone.write("uploads/acme/a.csv", b"something else entirely\n")
    evaluation = failed(run_checks(instance, resources, job_id, upload_readable), upload_readable)
    assert "uploads/acme/a.csv" in evaluation.description
    assert evaluation.metadata["file_needed"].value is True


def test_upload_readable_fails_on_a_file_without_an_email_column(
    engine, instance, resources, local_zone
):
    job_id = register_upload(engine, local_zone, "acme", "b.csv", b"name,phone\nAnn,123\n")
    evaluation = failed(run_checks(instance, resources, job_id, upload_readable), upload_readable)
    assert "b.csv" in evaluation.description
    assert "email" in evaluation.description


def test_a_lost_staging_row_fails_the_blocking_check_and_nothing_is_loaded(
    engine, instance, resources, local_zone
):
    _, row = import_bytes(engine, instance, resources, local_zone, "acme", "f.csv", FLAWED)
    job_id = row.job_id
    tamper(engine, "DELETE FROM staging_rows WHERE job_id = :j AND row_number = 2", job_id)
    tamper(
        engine,
        "UPDATE staging_rows SET status = 'DISCARD' WHERE job_id = :j AND row_number = 3",
        job_id,
    )
    result = run_job(instance, resources, job_id, "acme")
    assert not result.success
    evaluation = failed(result, staging_matches_file)
    assert evaluation.metadata["sample"].value == [2]
    assert evaluation.metadata["missing_rows"].value == 1
    # Blocking: nothing downstream of staging ran, the job was not loaded.
    assert result.asset_materializations_for_node("reviewed_staging") == []
    assert result.asset_materializations_for_node("contacts") == []
    assert job(engine, job_id).contacts_created == 0


def test_a_blocking_check_failure_is_the_job_error_the_failure_sensor_records(
    engine, instance, resources, local_zone, database_url
):
    """A job whose staging finished before its run stopped, then lost a row: the next run
    revalidates from staging, the blocking check stops it, and the job says why."""
    _, row = import_bytes(engine, instance, resources, local_zone, "acme", "c.csv", CLEAN)
    job_id = row.job_id
    tamper(engine, "DELETE FROM contacts WHERE job_id = :j", job_id)
    tamper(engine, "DELETE FROM staging_rows WHERE job_id = :j AND row_number = 3", job_id)
    tamper(
        engine,
        "UPDATE import_jobs SET status = 'PROCESSING', contacts_created = 0 WHERE job_id = :j",
        job_id,
    )
    result = run_job(instance, resources, job_id, "acme")
    assert not result.success
    run_failure_sensor(instance, result, database_url)
    failed_job = job(engine, job_id)
    assert failed_job.status == "FAILED"
    assert failed_job.error == (
        "check staging_matches_file on staging_rows failed: "
        "2 staged of 3 records (1 missing, 0 out of range)"
    )
    assert scalar(engine, "SELECT count(*) FROM contacts") == 0


def test_staging_check_fails_on_rows_beyond_the_file(engine, instance, resources, local_zone):
    _, row = import_bytes(engine, instance, resources, local_zone, "acme", "c.csv", CLEAN)
    tamper(
        engine,
        "INSERT INTO staging_rows (job_id, row_number, email) VALUES (:j, 4, 'extra@acme.io')",
        row.job_id,
    )
    result = run_checks(instance, resources, row.job_id, staging_matches_file)
    evaluation = failed(result, staging_matches_file)
    assert evaluation.metadata["extra_rows"].value == 1
    assert evaluation.metadata["total_rows"].value == 3


def test_issue_rows_linked_fails_when_an_issue_is_resolved_behind_its_rows(
    engine, instance, resources, local_zone
):
    _, row = import_bytes(engine, instance, resources, local_zone, "acme", "f.csv", FLAWED)
    tamper(
        engine,
        "UPDATE issues SET resolved = true WHERE job_id = :j AND kind = 'invalid_email'",
        row.job_id,
    )
    result = run_checks(instance, resources, row.job_id, issue_rows_linked, issue_count_matches)
    assert failed(result, issue_rows_linked).metadata["sample"].value == [3]
    # issue_count still says 2 while one issue is open.
    mismatch = failed(result, issue_count_matches)
    assert (
        mismatch.metadata["issue_count"].value,
        mismatch.metadata["unresolved_issues"].value,
    ) == (2, 1)


def test_issue_count_matches_fails_when_the_count_is_wrong(engine, instance, resources, local_zone):
    _, row = import_bytes(engine, instance, resources, local_zone, "acme", "f.csv", FLAWED)
    tamper(engine, "UPDATE import_jobs SET issue_count = 0 WHERE job_id = :j", row.job_id)
    result = run_checks(instance, resources, row.job_id, issue_count_matches, issue_rows_linked)
    assert failed(result, issue_count_matches).description == "issue_count 0, unresolved issues 2"
    assert check_evaluations(result)["issue_rows_linked"].passed


def test_unique_contacts_check_finds_a_duplicate_of_its_tenant_only(
    engine, instance, resources, local_zone
):
    _, row = import_bytes(engine, instance, resources, local_zone, "acme", "c.csv", CLEAN)
    _, other = import_bytes(engine, instance, resources, local_zone, "globex", "c.csv", CLEAN)
    assert run_checks(instance, resources, other.job_id, contacts_unique_per_tenant).success
    insert = (
        "INSERT INTO contacts (tenant_id, email, email_normalized, first_name, last_name, "
        "company) VALUES ('acme', 'Bob@acme.io', 'bob@acme.io', 'B', 'R', 'A')"
    )
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE contacts DROP CONSTRAINT uq_contacts_tenant_email"))
        conn.execute(sa.text(insert))
    try:
        result = run_checks(instance, resources, row.job_id, contacts_unique_per_tenant)
        evaluation = failed(result, contacts_unique_per_tenant)
        assert evaluation.metadata["sample"].value == ["bob@acme.io"]
        # Non-blocking: the check fails, the run does not.
        assert result.success
        assert check_evaluations(
            run_checks(instance, resources, other.job_id, contacts_unique_per_tenant)
        )["contacts_unique_per_tenant"].passed
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM contacts WHERE email = 'Bob@acme.io'"))
            conn.execute(
                sa.text(
                    "ALTER TABLE contacts ADD CONSTRAINT uq_contacts_tenant_email "
                    "UNIQUE (tenant_id, email_normalized)"
                )
            )


def test_valid_emails_check_names_the_row_of_a_bad_contact(engine, instance, resources, local_zone):
    _, row = import_bytes(engine, instance, resources, local_zone, "acme", "c.csv", CLEAN)
    tamper(
        engine,
        "UPDATE contacts SET email_normalized = 'bob at acme' WHERE job_id = :j AND source_row = 2",
        row.job_id,
    )
    evaluation = failed(
        run_checks(instance, resources, row.job_id, contacts_emails_valid), contacts_emails_valid
    )
    assert evaluation.metadata["sample"].value == [{"row": 2, "email": "bob at acme"}]
    assert evaluation.metadata["contacts_checked"].value == 3


def test_status_check_fails_when_counts_contradict_completed(
    engine, instance, resources, local_zone
):
    _, row = import_bytes(engine, instance, resources, local_zone, "acme", "c.csv", CLEAN)
    tamper(engine, "DELETE FROM contacts WHERE job_id = :j AND source_row = 3", row.job_id)
    evaluation = failed(
        run_checks(instance, resources, row.job_id, job_status_agrees), job_status_agrees
    )
    assert evaluation.description == (
        "contacts_created 3, rows loaded 3 and contacts of the job 2 differ"
    )


@pytest.mark.parametrize(
    ("figures", "expected"),
    [
        ({"status": "COMPLETED", "issue_count": 1}, ["COMPLETED with 1 open issue(s)"]),
        (
            {"status": "COMPLETED", "processed_rows": 2},
            ["COMPLETED with processed_rows 2 of total_rows 3"],
        ),
        (
            {"status": "COMPLETED", "rows_pending": 1},
            ["COMPLETED with 1 row(s) still in ISSUE"],
        ),
        ({"status": "NEEDS_REVIEW", "issue_count": 0}, ["NEEDS_REVIEW with no open issue"]),
        ({"status": "FAILED", "job_contacts": 3}, ["FAILED but 3 contact(s) already loaded"]),
        ({"status": "COMPLETED"}, []),
        ({"status": "NEEDS_REVIEW", "issue_count": 2, "job_contacts": 0}, []),
    ],
)
def test_status_disagreements(figures, expected):
    consistent = {
        "total_rows": 3,
        "processed_rows": 3,
        "issue_count": 0,
        "contacts_created": 3,
        "rows_pending": 0,
        "rows_loaded": 3,
        "job_contacts": 3,
    }
    assert status_disagreements({**consistent, **figures}) == expected


def test_a_bulk_validation_leaves_fresh_statistics_and_the_link_check_cannot_nest_loops(
    engine, instance, resources, local_zone
):
    # 12,000 rows with invalid emails on tables whose statistics say they are empty: the state
    # in which the link check's NOT EXISTS once planned a nested loop costing minutes.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("ANALYZE issues, issue_items, staging_rows"))
    content = csv_text(*(f"user{i}-at-acme.io,F{i},L{i},Acme" for i in range(12_000)))
    result, row = import_bytes(engine, instance, resources, local_zone, "acme", "b.csv", content)
    assert result.success
    assert (row.status, row.issue_count) == ("NEEDS_REVIEW", 12_000)
    assert check_evaluations(result)["issue_rows_linked"].passed
    estimated = dict(
        (name, scalar(engine, "SELECT reltuples FROM pg_class WHERE relname = :n", n=name))
        for name in ("issues", "issue_items")
    )
    assert estimated["issues"] >= 12_000 and estimated["issue_items"] >= 12_000, estimated
    with engine.connect() as conn:
        plan = "\n".join(
            conn.scalars(
                sa.text(f"EXPLAIN SELECT count(*) FROM (SELECT row_number {UNLINKED_ROWS}) AS o"),
                {"job_id": row.job_id},
            )
        )
    assert "SetOp" in plan and "Nested Loop" not in plan, plan


def test_rows_copied_out_arrive_whole_in_batches_and_a_failing_query_raises(engine):
    columns = {"n": pa.int64(), "t": pa.string()}
    query = "SELECT g, 'x' || g FROM generate_series(1, %s) g"
    batches = list(copy_out_batches(engine, query, (50_000,), columns, 1 << 16))
    assert len(batches) > 1
    assert [n for b in batches for n in b.column("n").to_pylist()] == list(range(1, 50_001))
    assert list(copy_out_batches(engine, "SELECT 1, 'a' WHERE false", (), columns, 1 << 16)) == []
    with pytest.raises(psycopg2.errors.UndefinedTable):
        list(copy_out_batches(engine, "SELECT * FROM no_such_table", (), columns, 1 << 16))
