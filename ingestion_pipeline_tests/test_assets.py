"""The import assets on a real Dagster instance and a real PostgreSQL: rules, routing, loading."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from dagster import AssetKey, DagsterEventType, FloatMetadataValue, IntMetadataValue

from ingestion_pipeline import importer
from ingestion_pipeline.constants import IMPORT_JOBS_PARTITIONS, IssueKind
from ingestion_pipeline.importer import (
    StageProgress,
    consolidate,
    job_lock,
    load_job,
    stage_upload,
    validate,
)
from ingestion_pipeline_tests.helpers import (
    cli_env,
    cli_import_command,
    contact_emails,
    csv_text,
    import_bytes,
    job,
    register_upload,
    rows,
    run_job,
    scalar,
)

CLEAN = csv_text(
    "ann@acme.io,Ann,Lee,Acme",
    " Bob@Acme.io ,Bob,Stone,Acme",
    "cy@acme.io,Cy,Doe,Acme",
)


def materialized(instance, asset: str, partition: str) -> bool:
    return partition in instance.get_materialized_partitions(AssetKey(asset))


def test_clean_file_is_loaded_as_contacts_and_completes(engine, instance, resources, local_zone):
    result, row = import_bytes(engine, instance, resources, local_zone, "acme", "a.csv", CLEAN)
    assert result.success
    assert row.status == "COMPLETED"
    assert (row.total_rows, row.processed_rows, row.issue_count) == (3, 3, 0)
    assert row.contacts_created == 3
    assert (row.encoding, row.delimiter) == ("utf-8", "comma")
    assert contact_emails(engine, "acme") == ["ann@acme.io", "bob@acme.io", "cy@acme.io"]
    assert scalar(engine, "SELECT email FROM contacts WHERE email_normalized = 'bob@acme.io'") == (
        "Bob@Acme.io"
    )
    # The job's COMPLETED says its READY rows are loaded; they are not rewritten one by one.
    assert rows(engine, "SELECT DISTINCT status FROM staging_rows") == [("READY",)]
    for asset in ("raw_upload", "staging_rows", "import_issues", "contacts"):
        assert materialized(instance, asset, row.job_id)
    contacts_meta = result.asset_materializations_for_node("contacts")[0].metadata
    assert contacts_meta["contacts_created"].value == 3


def test_every_materialization_carries_numbers_the_ui_can_plot(
    engine, instance, resources, local_zone
):
    result, _ = import_bytes(engine, instance, resources, local_zone, "acme", "a.csv", CLEAN)
    numbers = {
        asset: {
            key
            for key, value in result.asset_materializations_for_node(asset)[0].metadata.items()
            if isinstance(value, (IntMetadataValue, FloatMetadataValue))
        }
        for asset in ("raw_upload", "staging_rows", "reviewed_staging", "import_issues", "contacts")
    }
    assert {"size_bytes", "column_count"} <= numbers["raw_upload"]
    assert {"total_rows", "rows_staged", "rows_per_second", "seconds"} <= numbers["staging_rows"]
    assert {"total_rows", "fixed", "discarded"} <= numbers["reviewed_staging"]
    assert {"total_rows", "issue_count", "rows_per_second"} | {
        f"issues_{kind.value}" for kind in IssueKind
    } <= numbers["import_issues"]
    assert {"total_rows", "contacts_created", "rows_per_second"} <= numbers["contacts"]


def test_every_rule_becomes_issues_linked_to_their_rows(engine, instance, resources, local_zone):
    content = csv_text(
        "ann@acme.io,Ann,Lee,Acme",  # 1 duplicate (with 3)
        "bad-address,Bob,Stone,Acme",  # 2 invalid email
        "ANN@acme.io ,Annie,Lee,Acme",  # 3 duplicate (with 1)
        "dee@acme.io,,Ray,",  # 4 two missing fields
        "eve@acme.io,Eve,Ray,Acme",  # 5 clean
    )
    result, row = import_bytes(engine, instance, resources, local_zone, "acme", "b.csv", content)
    assert result.success
    assert row.status == "NEEDS_REVIEW"
    issues = rows(
        engine,
        "SELECT i.kind, i.field, array_agg(ii.row_number ORDER BY ii.row_number) "
        "FROM issues i JOIN issue_items ii USING (issue_id) WHERE i.job_id = :j "
        "GROUP BY i.issue_id ORDER BY 3, 1, 2",
        j=row.job_id,
    )
    assert issues == [
        ("duplicate_email", "email", [1, 3]),
        ("invalid_email", "email", [2]),
        ("missing_field", "company", [4]),
        ("missing_field", "first_name", [4]),
    ]
    assert row.issue_count == 4
    statuses = rows(
        engine,
        "SELECT row_number, status FROM staging_rows WHERE job_id = :j ORDER BY 1",
        j=row.job_id,
    )
    assert statuses == [(1, "ISSUE"), (2, "ISSUE"), (3, "ISSUE"), (4, "ISSUE"), (5, "READY")]
    assert contact_emails(engine, "acme") == []
    assert not materialized(instance, "contacts", row.job_id)
    issues_meta = result.asset_materializations_for_node("import_issues")[0].metadata
    assert issues_meta["issues_duplicate_email"].value == 1
    assert issues_meta["issues_missing_field"].value == 2
    assert "bad-address" in issues_meta["preview"].value


def test_existing_contact_is_an_issue_for_the_same_tenant_only(
    engine, instance, resources, local_zone
):
    import_bytes(engine, instance, resources, local_zone, "acme", "first.csv", CLEAN)
    again = csv_text("ANN@acme.io,Ann,Lee,Acme", "new@acme.io,New,One,Acme")
    _, acme = import_bytes(engine, instance, resources, local_zone, "acme", "second.csv", again)
    _, beta = import_bytes(engine, instance, resources, local_zone, "beta", "second.csv", again)
    assert acme.status == "NEEDS_REVIEW"
    assert rows(engine, "SELECT kind, issue_key FROM issues WHERE job_id = :j", j=acme.job_id) == [
        ("existing_contact", "ann@acme.io")
    ]
    assert beta.status == "COMPLETED"
    assert contact_emails(engine, "beta") == ["ann@acme.io", "new@acme.io"]
    assert contact_emails(engine, "acme") == ["ann@acme.io", "bob@acme.io", "cy@acme.io"]


def test_unreadable_file_fails_its_job_and_stages_nothing(engine, instance, resources, local_zone):
    content = b"name,phone\nAnn,555\n"
    result, row = import_bytes(engine, instance, resources, local_zone, "acme", "x.csv", content)
    assert not result.success
    assert row.status == "FAILED"
    assert row.error == "x.csv: no email column found; the header has: name, phone"
    assert scalar(engine, "SELECT count(*) FROM staging_rows") == 0
    # Bad input is not retried.
    restarts = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_RESTARTED]
    assert restarts == []


def test_completed_job_rematerialized_does_nothing(engine, instance, resources, local_zone):
    _, row = import_bytes(engine, instance, resources, local_zone, "acme", "a.csv", CLEAN)
    again = run_job(instance, resources, row.job_id, "acme")
    assert again.success
    assert scalar(engine, "SELECT count(*) FROM contacts") == 3
    assert job(engine, row.job_id).contacts_created == 3
    meta = again.asset_materializations_for_node("raw_upload")[0].metadata
    assert meta["route"].value.startswith("completed")


def test_job_under_review_is_revalidated_without_reading_the_file(
    engine, instance, resources, local_zone, landing_dir
):
    content = csv_text("ann@acme.io,Ann,Lee,Acme", "ann@acme.io,Ann,Lee,Acme")
    _, row = import_bytes(engine, instance, resources, local_zone, "acme", "d.csv", content)
    issue_ids = rows(engine, "SELECT issue_id FROM issues WHERE job_id = :j", j=row.job_id)
    (landing_dir / "uploads/acme/d.csv").unlink()
    again = run_job(instance, resources, row.job_id, "acme")
    assert again.success
    assert job(engine, row.job_id).status == "NEEDS_REVIEW"
    assert rows(engine, "SELECT issue_id FROM issues WHERE job_id = :j", j=row.job_id) == (
        issue_ids
    )
    meta = again.asset_materializations_for_node("staging_rows")[0].metadata
    assert meta["route"].value.startswith("reprocess")


def test_interrupted_staging_resumes_without_duplicates(
    engine, instance, resources, local_zone, monkeypatch
):
    body = [f"user{i}@acme.io,F{i},L{i},Acme" for i in range(1, 2501)]
    job_id = register_upload(engine, local_zone, "acme", "big.csv", csv_text(*body))
    crashed_job, _ = load_job(engine, job_id)

    class Crash(Exception):
        pass

    def crash_after_two_chunks(progress: StageProgress) -> None:
        if progress.rows_read >= 1000:  # two chunks of 500
            raise Crash

    with pytest.raises(Crash):
        stage_upload(engine, local_zone, crashed_job, 500, crash_after_two_chunks)
    # A chunk already being written when the run failed may have committed too (chunks are
    # written side by side): what is staged is whole chunks from the first record on, and
    # processed_rows says where they end.
    staged = scalar(engine, "SELECT count(*) FROM staging_rows")
    assert staged in (1000, 1500)
    assert job(engine, job_id).processed_rows == staged
    assert scalar(engine, "SELECT max(row_number) FROM staging_rows") == staged

    monkeypatch.setenv("IMPORT_CHUNK_SIZE", "700")  # other chunk edges than the crashed run
    result = run_job(instance, resources, job_id, "acme")
    assert result.success
    row = job(engine, job_id)
    assert (row.status, row.total_rows, row.processed_rows) == ("COMPLETED", 2500, 2500)
    assert scalar(engine, "SELECT count(*) FROM staging_rows") == 2500
    assert scalar(engine, "SELECT count(*) FROM contacts") == 2500
    meta = result.asset_materializations_for_node("staging_rows")[0].metadata
    assert meta["rows_skipped_on_resume"].value == staged
    assert meta["route"].value.startswith("resume")


def test_chunks_written_side_by_side_commit_in_file_order(engine, local_zone, monkeypatch):
    body = [f"user{i}@acme.io,F{i},L{i},Acme" for i in range(1, 2501)]
    job_id = register_upload(engine, local_zone, "acme", "big.csv", csv_text(*body))
    staged_job, _ = load_job(engine, job_id)

    class DiskFull(Exception):
        pass

    real_copy_chunk = importer.copy_chunk

    def second_chunk_fails_late(conn, frame, *, resume):
        if int(frame["row_number"].iloc[0]) == 501:
            time.sleep(0.5)  # the third chunk is copied meanwhile and waits to commit
            raise DiskFull("no space left on device")
        return real_copy_chunk(conn, frame, resume=resume)

    monkeypatch.setattr(importer, "copy_chunk", second_chunk_fails_late)
    with pytest.raises(DiskFull):
        stage_upload(engine, local_zone, staged_job, 500)
    # The third chunk's rows were copied but never committed: no gap in staging, and
    # processed_rows is where the staged prefix ends, for the resume to start from.
    assert scalar(engine, "SELECT count(*) FROM staging_rows") == 500
    assert scalar(engine, "SELECT max(row_number) FROM staging_rows") == 500
    assert job(engine, job_id).processed_rows == 500


def test_overwritten_upload_fails_the_old_version_with_a_clear_error(
    engine, instance, resources, local_zone
):
    job_id = register_upload(engine, local_zone, "acme", "a.csv", CLEAN)
    local_zone.write("uploads/acme/a.csv", csv_text("zed@acme.io,Zed,Z,Acme"))
    result = run_job(instance, resources, job_id, "acme")
    assert not result.success
    row = job(engine, job_id)
    assert row.status == "FAILED"
    assert "uploads/acme/a.csv changed since it was uploaded" in row.error


def test_unknown_partition_fails_with_a_clear_message(instance, resources):
    instance.add_dynamic_partitions(IMPORT_JOBS_PARTITIONS, ["nope-x-123"])
    result = run_job(instance, resources, "nope-x-123", "acme")
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert "no import job 'nope-x-123'" in failure.message


def test_late_conflict_between_two_jobs_of_a_tenant_sends_one_back_to_review(engine, local_zone):
    first = register_upload(engine, local_zone, "acme", "one.csv", csv_text("x@acme.io,X,Y,Z"))
    second = register_upload(engine, local_zone, "acme", "two.csv", csv_text("X@acme.io,X,Y,Z"))
    jobs = [load_job(engine, j)[0] for j in (first, second)]
    for j in jobs:
        stage_upload(engine, local_zone, j, 100)
        assert validate(engine, j).open_issues == 0
    assert consolidate(engine, jobs[0]).contacts_created == 1
    outcome = consolidate(engine, jobs[1])
    assert outcome.status.value == "NEEDS_REVIEW"
    assert contact_emails(engine, "acme") == ["x@acme.io"]
    assert rows(engine, "SELECT kind FROM issues WHERE job_id = :j", j=second) == [
        ("existing_contact",)
    ]


def test_header_only_file_completes_with_zero_rows(engine, instance, resources, local_zone):
    _, row = import_bytes(engine, instance, resources, local_zone, "acme", "h.csv", csv_text())
    assert (row.status, row.total_rows, row.contacts_created) == ("COMPLETED", 0, 0)


def test_import_from_an_s3_landing_zone(engine, instance, s3_resources):
    zone = s3_resources["landing_zone"].get_zone()
    text = "E-mail;Vorname;Nachname;Firma\r\njürgen@globex.de;Jürgen;Müller;Globex\r\n"
    _, row = import_bytes(
        engine, instance, s3_resources, zone, "globex", "k.csv", text.encode("cp1252")
    )
    assert row.status == "COMPLETED"
    assert (row.encoding, row.delimiter) == ("cp1252", "semicolon")
    assert scalar(engine, "SELECT last_name FROM contacts WHERE tenant_id = 'globex'") == "Müller"


def test_two_imports_of_one_file_at_once_load_it_exactly_once(database_url, engine, tmp_path):
    """Two processes import the same file at the same moment (a sensor run and a CLI import,
    or a double click): the job's steps take turns, and the rows land once."""
    path = tmp_path / "big.csv"
    path.write_bytes(csv_text(*(f"user{i}@acme.io,F{i},L{i},Acme" for i in range(1, 30_001))))
    procs = []
    for n in range(2):
        env = cli_env(
            database_url, tmp_path / "landing", tmp_path / f"home{n}", IMPORT_CHUNK_SIZE="1000"
        )
        command = cli_import_command(path, "acme")
        procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True))
    outputs = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert {o["job_id"] for o in outputs} == {outputs[0]["job_id"]}
    assert {o["status"] for o in outputs} == {"COMPLETED"}
    row = job(engine, outputs[0]["job_id"])
    assert (row.total_rows, row.processed_rows, row.contacts_created) == (
        30_000,
        30_000,
        30_000,
    )
    assert scalar(engine, "SELECT count(*) FROM staging_rows") == 30_000
    assert scalar(engine, "SELECT count(*) FROM contacts") == 30_000
    assert scalar(engine, "SELECT count(*) FROM import_jobs") == 1


def test_a_run_waits_while_another_holds_the_job(database_url, engine, local_zone, tmp_path):
    job_id = register_upload(engine, local_zone, "acme", "a.csv", csv_text("a@b.io,A,B,C"))
    path = tmp_path / "a.csv"
    path.write_bytes(csv_text("a@b.io,A,B,C"))
    env = cli_env(database_url, local_zone.root, tmp_path / "home")
    command = cli_import_command(path, "acme")
    with job_lock(engine, job_id):
        waiting = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        time.sleep(6)  # ample for the CLI to start and reach its first step
        assert waiting.poll() is None
        assert job(engine, job_id).status == "PENDING"
    out, _ = waiting.communicate(timeout=120)
    assert waiting.returncode == 0
    assert json.loads(out)["status"] == "COMPLETED"
