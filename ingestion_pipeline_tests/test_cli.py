"""The `ingestion-pipeline import` contract: output, exit codes, idempotence."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ingestion_pipeline.cli import main
from ingestion_pipeline_tests.helpers import (
    cli_command,
    cli_env,
    contact_emails,
    csv_text,
    scalar,
)

SUMMARY_KEYS = {
    "job_id",
    "tenant",
    "status",
    "total_rows",
    "processed_rows",
    "issue_count",
    "contacts_created",
    "issues",
}


def test_import_json_is_one_object_with_the_documented_shape(cli, tmp_path, engine):
    path = tmp_path / "people.csv"
    path.write_bytes(
        csv_text("ann@acme.io,Ann,Lee,Acme", "ann@ACME.io,Ann,Lee,Acme", "x,Bob,,Acme")
    )
    code, out, _ = cli("import", str(path), "--tenant", "acme", "--json")
    assert code == 0
    summary = json.loads(out)
    assert set(summary) == SUMMARY_KEYS
    assert summary["tenant"] == "acme"
    assert summary["status"] == "NEEDS_REVIEW"
    assert (summary["total_rows"], summary["processed_rows"]) == (3, 3)
    assert summary["contacts_created"] == 0
    assert summary["issue_count"] == 3
    assert [(i["kind"], i["field"], i["rows"]) for i in summary["issues"]] == [
        ("duplicate_email", "email", [1, 2]),
        ("invalid_email", "email", [3]),
        ("missing_field", "last_name", [3]),
    ]
    assert all(i["message"] for i in summary["issues"])
    # The run is on the shared instance, so the UI shows it.
    assert any((tmp_path / "dagster_home").iterdir())


def test_importing_the_same_file_again_is_the_same_job(cli, tmp_path, engine):
    path = tmp_path / "people.csv"
    path.write_bytes(csv_text("ann@acme.io,Ann,Lee,Acme", "bob@acme.io,Bob,Stone,Acme"))
    code, out, _ = cli("import", str(path), "--tenant", "acme", "--json")
    first = json.loads(out)
    assert (code, first["status"], first["contacts_created"]) == (0, "COMPLETED", 2)

    code, out, _ = cli("import", str(path), "--tenant", "acme", "--json")
    again = json.loads(out)
    assert code == 0
    assert again["job_id"] == first["job_id"]
    assert again["status"] == "COMPLETED"
    assert scalar(engine, "SELECT count(*) FROM import_jobs") == 1
    assert contact_emails(engine, "acme") == ["ann@acme.io", "bob@acme.io"]


def test_rejected_file_exits_2_with_the_reason_on_stderr(cli, tmp_path, engine):
    path = tmp_path / "photo.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200))
    code, out, err = cli("import", str(path), "--tenant", "acme", "--json")
    assert code == 2
    assert "photo.csv: this is a binary file, not a text export" in err
    assert json.loads(out)["status"] == "FAILED"
    assert scalar(engine, "SELECT count(*) FROM staging_rows") == 0


def test_human_summary_lists_issues(cli, tmp_path, capsys):
    path = tmp_path / "people.csv"
    path.write_bytes(csv_text("ann@acme.io,Ann,,Acme"))
    code, out, _ = cli("import", str(path), "--tenant", "acme")
    assert code == 0
    assert "NEEDS_REVIEW" in out
    assert "missing_field [last_name] rows 1: last_name is required but empty" in out


def test_bad_arguments_are_reported_without_a_traceback(cli, tmp_path, capsys):
    code, _, err = cli("import", str(tmp_path / "missing.csv"), "--tenant", "acme")
    assert code == 1
    assert "missing.csv: no such file" in err
    path: Path = tmp_path / "people.pdf"
    path.write_bytes(b"x")
    code, _, err = cli("import", str(path), "--tenant", "acme")
    assert code == 1
    assert "unsupported extension" in err
    with pytest.raises(SystemExit):
        main(["import", str(path), "--tenant", "../other"])
    assert "is not a tenant id" in capsys.readouterr().err


def test_database_url_without_dagster_storage_is_said_before_anything_is_written(
    database_url, engine, tmp_path
):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(Path(__file__).resolve().parent.parent / "dagster.yaml", home / "dagster.yaml")
    env = cli_env(database_url, tmp_path / "landing", home)
    env.pop("DAGSTER_POSTGRES_URL", None)
    path = tmp_path / "people.csv"
    path.write_bytes(csv_text("ann@acme.io,Ann,Lee,Acme"))
    proc = subprocess.run(
        cli_command("import", str(path), "--tenant", "acme"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith(
        "ingestion-pipeline: DAGSTER_POSTGRES_URL is not set: with DATABASE_URL set"
    ), proc.stderr
    assert "Traceback" not in proc.stderr
    assert scalar(engine, "SELECT count(*) FROM import_jobs") == 0
    assert not list((tmp_path / "landing").rglob("*.csv"))
