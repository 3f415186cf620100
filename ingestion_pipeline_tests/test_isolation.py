"""Tenant isolation: one tenant's shell, files or crafted keys never read or change another
tenant's jobs, issues or contacts."""

from __future__ import annotations

import json

import boto3
import pytest

from ingestion_pipeline.sensors import upload_sensor
from ingestion_pipeline_tests.helpers import csv_text, rows, scalar, sensor_tick
from ingestion_pipeline_tests.test_review import FILE, import_file


def state_of(engine, tenant: str) -> dict:
    """Everything a tenant owns, to compare before and after an attempt from another tenant."""
    return {
        "jobs": rows(
            engine,
            "SELECT job_id, status, total_rows, processed_rows, issue_count, contacts_created, "
            "error, updated_at FROM import_jobs WHERE tenant_id = :t ORDER BY 1",
            t=tenant,
        ),
        "staging": rows(
            engine,
            "SELECT s.job_id, s.row_number, s.email, s.first_name, s.last_name, s.company, "
            "s.status FROM staging_rows s JOIN import_jobs j USING (job_id) "
            "WHERE j.tenant_id = :t ORDER BY 1, 2",
            t=tenant,
        ),
        "issues": rows(
            engine,
            "SELECT i.issue_id, i.resolved FROM issues i JOIN import_jobs j USING (job_id) "
            "WHERE j.tenant_id = :t ORDER BY 1",
            t=tenant,
        ),
        "decisions": rows(
            engine,
            "SELECT d.decision_id FROM review_decisions d JOIN import_jobs j USING (job_id) "
            "WHERE j.tenant_id = :t ORDER BY 1",
            t=tenant,
        ),
        "contacts": rows(
            engine, "SELECT contact_id FROM contacts WHERE tenant_id = :t ORDER BY 1", t=tenant
        ),
    }


def test_every_job_command_scoped_to_another_tenant_finds_nothing_and_changes_nothing(
    cli, tmp_path, engine
):
    victim = import_file(cli, tmp_path, "acme", FILE)
    import_file(cli, tmp_path, "beta", csv_text("zed@beta.io,Zed,Z,Beta", "nope,N,O,Beta"), "b.csv")
    job_id = victim["job_id"]
    decisions = tmp_path / "decisions.csv"
    decisions.write_text("row,email,first_name,last_name,company,action\n2,,,,,discard\n")
    before = state_of(engine, "acme")

    attempts = {
        "issues": [],
        "fix": ["2", "email=evil@beta.io"],
        "discard": ["2", "3"],
        "export": ["--out", str(tmp_path / "stolen.csv")],
        "apply": [str(decisions)],
        "reprocess": [],
        "retry": [],
    }
    for command, args in attempts.items():
        code, out, err = cli(command, job_id, *args, "--tenant", "beta")
        assert (code, out) == (1, ""), command
        assert err == f"ingestion-pipeline: no import job {job_id!r} for tenant beta\n", command
    assert not (tmp_path / "stolen.csv").exists()
    assert state_of(engine, "acme") == before

    code, out, _ = cli("jobs", "--tenant", "beta", "--json")
    assert {j["tenant_id"] for j in json.loads(out)} == {"beta"}
    code, out, _ = cli("jobs", "--tenant", "beta", "--ids")
    assert job_id not in out
    # The same commands scoped to the owner do work: the refusals above are the scoping.
    code, out, _ = cli("issues", job_id, "--tenant", "acme", "--json")
    assert code == 0 and json.loads(out)["job_id"] == job_id


@pytest.mark.parametrize(
    "tenant",
    ["../beta", "beta/..", "ACME", "acme; DROP TABLE contacts", "acme' OR '1'='1", "", "a" * 64],
)
def test_tenant_ids_with_path_or_sql_characters_are_refused(cli, tmp_path, engine, capsys, tenant):
    path = tmp_path / "people.csv"
    path.write_bytes(FILE)
    for args in (["import", str(path)], ["jobs"], ["issues", "acme-people-0123456789"]):
        with pytest.raises(SystemExit) as stopped:
            cli(*args, "--tenant", tenant)
        assert stopped.value.code == 2  # argparse's usage error, before anything runs
        assert f"{tenant!r} is not a tenant id" in capsys.readouterr().err
    assert scalar(engine, "SELECT count(*) FROM import_jobs") == 0


def test_crafted_landing_keys_never_become_jobs_of_another_tenant(
    instance, s3_resources, engine, s3_endpoint, s3_bucket
):
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    crafted = [
        "uploads/../beta/x.csv",
        "uploads/acme/../beta/x.csv",
        "uploads/acme/../../uploads/beta/x.csv",
        "uploads/./beta/x.csv",
        "uploads//beta/x.csv",
        "uploads/beta%2F..%2Facme/x.csv",
        "uploads/acme'; DROP TABLE contacts;--/x.csv",
        "uploads/acme/..",
        "uploads/acme/.hidden.csv",
        "uploads/acme\\..\\beta/x.csv",
        "uploads/acme/x.csv/../../beta/y.csv",
    ]
    for key in crafted:
        client.put_object(Bucket=s3_bucket, Key=f"incoming/{key}", Body=csv_text("x@evil.io,X,Y,Z"))
    client.put_object(
        Bucket=s3_bucket, Key="incoming/uploads/acme/real.csv", Body=csv_text("a@acme.io,A,B,C")
    )
    data = sensor_tick(upload_sensor, instance, s3_resources)
    assert [r.partition_key for r in data.run_requests] == [
        scalar(engine, "SELECT job_id FROM import_jobs")
    ]
    assert rows(engine, "SELECT tenant_id, source_key FROM import_jobs") == [
        ("acme", "uploads/acme/real.csv")
    ]
    assert scalar(engine, "SELECT count(*) FROM contacts") == 0  # the table is still there
