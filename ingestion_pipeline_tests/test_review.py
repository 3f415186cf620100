"""Review and reprocessing: the loop through the CLI, through the decisions file and sensor."""

from __future__ import annotations

import csv
import io
import json

import pytest

from ingestion_pipeline.review_files import (
    DecisionFileError,
    decisions_key,
    issues_key,
    neutralize,
    parse_decisions,
    render_issues_csv,
    restore,
)
from ingestion_pipeline.sensors import review_sensor
from ingestion_pipeline_tests.helpers import (
    contact_emails,
    csv_text,
    import_bytes,
    job,
    launch,
    rows,
    scalar,
    sensor_tick,
)

FILE = csv_text(
    "ann@acme.io,Ann,Lee,Acme",  # 1 clean
    "bad-address,Bob,Stone,Acme",  # 2 invalid email
    "cy@acme.io,Cy,Doe,",  # 3 missing company
    "dee@acme.io,Dee,,Acme",  # 4 missing last name
)


def import_file(cli, tmp_path, tenant: str, content: bytes, name: str = "people.csv") -> dict:
    path = tmp_path / name
    path.write_bytes(content)
    code, out, err = cli("import", str(path), "--tenant", tenant, "--json")
    assert code == 0, err
    return json.loads(out)


def fill_in_decisions(review_file: bytes, last_action: str = "fix") -> str:
    """What a reviewer does with FILE's review file: fix row 2, discard row 3, fix row 4."""
    table = list(csv.DictReader(io.StringIO(review_file.decode("utf-8-sig"))))
    assert [r["row"] for r in table] == ["2", "3", "4"]
    assert table[0]["problems"] == 'invalid_email: "bad-address" is not a valid email address'
    table[0].update(email="bob@acme.io", action="fix")
    table[1].update(action="discard")
    table[2].update(last_name="Ray", action=last_action)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(table[0]))
    writer.writeheader()
    writer.writerows(table)
    return buffer.getvalue()


def open_issues(engine, job_id: str) -> list[tuple]:
    return rows(
        engine,
        "SELECT kind, field, issue_key FROM issues "
        "WHERE job_id = :j AND NOT resolved ORDER BY 1, 2, 3",
        j=job_id,
    )


def test_fix_discard_reprocess_until_completed_with_another_tenant_untouched(cli, tmp_path, engine):
    other = import_file(cli, tmp_path, "beta", FILE)
    first = import_file(cli, tmp_path, "acme", FILE)
    job_id = first["job_id"]
    assert (first["status"], first["issue_count"]) == ("NEEDS_REVIEW", 3)

    assert cli("fix", job_id, "2", "email=Bob@Acme.io")[0] == 0
    assert cli("discard", job_id, "3")[0] == 0
    code, out, _ = cli("reprocess", job_id, "--json")
    summary = json.loads(out)
    assert code == 0
    assert (summary["status"], summary["issue_count"]) == ("NEEDS_REVIEW", 1)
    assert [(i["kind"], i["rows"]) for i in summary["issues"]] == [("missing_field", [4])]
    assert contact_emails(engine, "acme") == []

    assert cli("fix", job_id, "4", "last_name=Ray")[0] == 0
    code, out, _ = cli("reprocess", job_id, "--json")
    summary = json.loads(out)
    assert (code, summary["status"], summary["issue_count"]) == (0, "COMPLETED", 0)
    assert summary["contacts_created"] == 3
    assert contact_emails(engine, "acme") == ["ann@acme.io", "bob@acme.io", "dee@acme.io"]
    assert scalar(engine, "SELECT last_name FROM contacts WHERE email = 'dee@acme.io'") == "Ray"
    statuses = rows(
        engine,
        "SELECT row_number, status FROM staging_rows WHERE job_id = :j ORDER BY 1",
        j=job_id,
    )
    assert statuses == [(1, "READY"), (2, "READY"), (3, "DISCARD"), (4, "READY")]
    # Resolved issues stay for history.
    assert (
        scalar(engine, "SELECT count(*) FROM issues WHERE job_id = :j AND resolved", j=job_id) == 3
    )

    beta = job(engine, other["job_id"])
    assert (beta.status, beta.issue_count) == ("NEEDS_REVIEW", 3)
    assert contact_emails(engine, "beta") == []
    assert rows(
        engine,
        "SELECT count(*) FROM staging_rows WHERE job_id = :j AND status = 'ISSUE'",
        j=other["job_id"],
    ) == [(3,)]


def test_in_file_duplicate_is_resolved_by_discarding_one_row(cli, tmp_path, engine):
    content = csv_text("ann@acme.io,Ann,Lee,Acme", " ANN@acme.io,Annie,Lee,Acme")
    job_id = import_file(cli, tmp_path, "acme", content)["job_id"]
    assert open_issues(engine, job_id) == [("duplicate_email", "email", "ann@acme.io")]
    cli("discard", job_id, "2")
    code, out, _ = cli("reprocess", job_id, "--json")
    assert (code, json.loads(out)["status"]) == (0, "COMPLETED")
    assert scalar(engine, "SELECT first_name FROM contacts WHERE tenant_id = 'acme'") == "Ann"


def test_a_fix_that_brings_a_new_problem_reopens_or_creates_an_issue(cli, tmp_path, engine):
    content = csv_text("bad-address,Bob,Stone,Acme", "cy@acme.io,Cy,Doe,")
    job_id = import_file(cli, tmp_path, "acme", content)["job_id"]
    (invalid_id,) = [
        r[0] for r in rows(engine, "SELECT issue_id FROM issues WHERE kind = 'invalid_email'")
    ]
    cli("fix", job_id, "1", "email=bob@acme.io")
    cli("fix", job_id, "2", "company=Acme", "email=not an email")
    cli("reprocess", job_id)
    assert open_issues(engine, job_id) == [("invalid_email", "email", "2")]
    assert rows(engine, "SELECT resolved FROM issues WHERE issue_id = :i", i=invalid_id) == [
        (True,)
    ]

    cli("fix", job_id, "1", "email=bad again")
    cli("reprocess", job_id)
    assert rows(engine, "SELECT resolved FROM issues WHERE issue_id = :i", i=invalid_id) == [
        (False,)
    ]
    assert job(engine, job_id).issue_count == 2


def test_existing_contact_issue_is_resolved_by_discarding(cli, tmp_path, engine):
    import_file(cli, tmp_path, "acme", csv_text("ann@acme.io,Ann,Lee,Acme"), "first.csv")
    second = import_file(
        cli,
        tmp_path,
        "acme",
        csv_text("ann@acme.io,Ann,Lee,Acme", "new@acme.io,N,O,P"),
        "second.csv",
    )
    assert [i["kind"] for i in second["issues"]] == ["existing_contact"]
    cli("discard", second["job_id"], "1")
    code, out, _ = cli("reprocess", second["job_id"], "--json")
    assert code == 0
    assert (json.loads(out)["status"], json.loads(out)["contacts_created"]) == ("COMPLETED", 1)
    assert contact_emails(engine, "acme") == ["ann@acme.io", "new@acme.io"]


def test_commands_refuse_bad_arguments_with_clear_messages(cli, tmp_path, engine):
    acme = import_file(cli, tmp_path, "acme", FILE)["job_id"]
    done = import_file(cli, tmp_path, "acme", csv_text("z@acme.io,Z,Z,Z"), "ok.csv")["job_id"]
    cases = [
        (("fix", "nope-123", "1", "email=a@b.io"), "no import job 'nope-123'"),
        (("fix", acme, "99", "email=a@b.io"), f"job {acme} has no record 99"),
        (("fix", acme, "2", "phone=1"), "unknown field 'phone'"),
        (("fix", acme, "2", "email"), "expected FIELD=VALUE"),
        (("discard", acme, "zero"), "ROW must be a record number"),
        (("discard", done, "1"), f"job {done} is already COMPLETED"),
        (
            ("fix", acme, "2", "email=a@b.io", "--tenant", "beta"),
            f"no import job '{acme}' for tenant beta",
        ),
        (("issues", acme, "--tenant", "beta"), "for tenant beta"),
        (("export", acme, "--tenant", "beta"), "for tenant beta"),
        (("reprocess", acme, "--tenant", "beta"), "for tenant beta"),
        (("apply", acme, str(tmp_path / "none.csv")), "none.csv: no such file"),
    ]
    for args, message in cases:
        code, _, err = cli(*args)
        assert code == 1, args
        assert message in err, (args, err)
    assert scalar(engine, "SELECT count(*) FROM review_decisions") == 0


def test_jobs_and_issues_listings(cli, tmp_path):
    acme = import_file(cli, tmp_path, "acme", FILE)
    import_file(cli, tmp_path, "beta", csv_text("z@b.io,Z,Z,Z"))
    code, out, _ = cli("jobs", "--tenant", "acme", "--json")
    listed = json.loads(out)
    assert code == 0
    assert [(j["job_id"], j["status"], j["issue_count"]) for j in listed] == [
        (acme["job_id"], "NEEDS_REVIEW", 3)
    ]
    code, out, _ = cli("jobs", "--status", "completed", "--json")
    completed = json.loads(out)
    assert [j["tenant_id"] for j in completed] == ["beta"]
    code, out, _ = cli("jobs", "--ids")
    assert (code, sorted(out.strip().split(","))) == (
        0,
        sorted([acme["job_id"], completed[0]["job_id"]]),
    )
    code, out, _ = cli("jobs", "--status", "failed", "--ids")
    assert (code, out) == (0, "\n")
    code, out, _ = cli("issues", acme["job_id"], "--json")
    assert json.loads(out)["issues"] == acme["issues"]


def test_export_apply_round_trip_through_the_cli(cli, tmp_path, engine):
    job_id = import_file(cli, tmp_path, "acme", FILE)["job_id"]
    out_file = tmp_path / "review.csv"
    assert cli("export", job_id, "--out", str(out_file))[0] == 0
    decisions = tmp_path / "decisions.csv"
    decisions.write_text(
        fill_in_decisions(out_file.read_bytes(), last_action="FIX"), encoding="utf-8"
    )
    code, out, err = cli("apply", job_id, str(decisions))
    assert code == 0, err
    assert "3 decision(s) recorded" in out
    code, out, _ = cli("reprocess", job_id, "--json")
    assert json.loads(out)["status"] == "COMPLETED"
    assert contact_emails(engine, "acme") == ["ann@acme.io", "bob@acme.io", "dee@acme.io"]


def test_exports_are_spreadsheet_safe_keep_unicode_and_reimport_losslessly():
    values = [
        '=HYPERLINK("http://x")',
        "+1 555",
        "-5",
        "@SUM(A1)",
        "'quoted",
        "Zoë Łukasz 株式会社",
    ]
    for value in values:
        assert not neutralize(value).startswith(("=", "+", "-", "@"))
        assert restore(neutralize(value)) == value
    content = render_issues_csv(
        [
            {
                "row_number": 7,
                "email": "=cmd|' /C calc'!A0",
                "first_name": "Zoë",
                "last_name": "-Łukasz",
                "company": "@株式会社",
                "problems": "invalid_email: bad",
            }
        ]
    )
    assert content.startswith(b"\xef\xbb\xbf")
    text = content.decode("utf-8-sig")
    assert "'=cmd" in text and "'-Łukasz" in text and "'@株式会社" in text
    edited = text.replace("invalid_email: bad,", "invalid_email: bad,fix")
    (decision,) = parse_decisions(io.BytesIO(edited.encode("utf-8-sig")), "decisions.csv")
    assert decision.row_number == 7
    assert decision.changes == {
        "email": "=cmd|' /C calc'!A0",
        "first_name": "Zoë",
        "last_name": "-Łukasz",
        "company": "@株式会社",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "row,email,first_name,last_name,company,action\nx,a@b.io,A,B,C,fix\n",
            "decisions.csv, record 1: row must be a record number, got 'x'",
        ),
        (
            "row,email,first_name,last_name,company,action\n1,a@b.io,A,B,C,delete\n",
            "decisions.csv, record 1: action must be one of fix, discard or empty, got 'delete'",
        ),
        (
            "email,first_name,last_name,company,action\na@b.io,A,B,C,fix\n",
            "decisions.csv: no 'row' column",
        ),
    ],
)
def test_bad_decision_files_name_the_record_and_field(text, message):
    with pytest.raises(DecisionFileError) as caught:
        parse_decisions(io.BytesIO(text.encode()), "decisions.csv")
    assert str(caught.value) == message


def review_tick(instance, resources, cursor=None):
    data = sensor_tick(review_sensor, instance, resources, cursor)
    return data, launch(data, "reprocess_job", instance, resources)


def test_decisions_file_uploaded_to_the_landing_zone_reprocesses_the_job(
    engine, instance, resources, local_zone
):
    _, row = import_bytes(engine, instance, resources, local_zone, "acme", "p.csv", FILE)
    job_id = row.job_id
    with local_zone.open(issues_key(job_id)) as stream:
        filled = fill_in_decisions(stream.read())
    info = local_zone.write(decisions_key(job_id), filled.encode("utf-8-sig"))

    data, results = review_tick(instance, resources)
    assert [(r.partition_key, r.run_key, r.tags["tenant"]) for r in data.run_requests] == [
        (job_id, f"{decisions_key(job_id)}:{info.etag}", "acme")
    ]
    assert results[0].success
    assert job(engine, job_id).status == "COMPLETED"
    assert contact_emails(engine, "acme") == ["ann@acme.io", "bob@acme.io", "dee@acme.io"]
    meta = results[0].asset_materializations_for_node("reviewed_staging")[0].metadata
    assert (meta["fixed"].value, meta["discarded"].value, meta["decisions_loaded"].value) == (
        2,
        1,
        3,
    )
    _, results = review_tick(instance, resources, data.cursor)
    assert results == []


def test_a_bad_decisions_file_fails_the_run_and_keeps_the_job_under_review(
    engine, instance, resources, local_zone
):
    _, row = import_bytes(engine, instance, resources, local_zone, "acme", "p.csv", FILE)
    local_zone.write(
        decisions_key(row.job_id),
        b"row,email,first_name,last_name,company,action\n99,a@b.io,A,B,C,discard\n",
    )
    _, results = review_tick(instance, resources)
    assert not results[0].success
    after = job(engine, row.job_id)
    assert after.status == "NEEDS_REVIEW"
    assert after.error == (f"reviews/{row.job_id}/decisions.csv: job {row.job_id} has no record 99")
    assert scalar(engine, "SELECT count(*) FROM review_decisions") == 0
