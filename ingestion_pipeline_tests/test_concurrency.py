"""Two jobs of one tenant loading the same email at the same moment, in separate processes."""

from __future__ import annotations

import json
import subprocess
import time

import sqlalchemy as sa

from ingestion_pipeline_tests.helpers import cli_env, cli_import_command, csv_text, rows

ROWS = 20_000
SHARED = "shared@acme.io"


def test_two_jobs_with_one_email_consolidating_at_once_make_one_contact(
    database_url, engine, tmp_path
):
    paths = []
    for name in ("east", "west"):
        body = [f"{name}{i}@acme.io,F{i},L{i},Acme" for i in range(1, ROWS)]
        body.insert(ROWS // 2, f"{SHARED},Sam,{name.title()},Acme")
        path = tmp_path / f"{name}.csv"
        path.write_bytes(csv_text(*body))
        paths.append(path)

    # Hold the tenant's consolidation lock so both imports validate (neither sees the other's
    # contacts yet) and then queue for it together; releasing it lets them load one by one.
    holder = engine.connect()
    holder.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended('contacts:acme', 0))"))
    # Each process its own Dagster home (SQLite run storage is one writer at a time).
    runs = [
        subprocess.Popen(
            cli_import_command(path, "acme"),
            env=cli_env(database_url, tmp_path / "landing", tmp_path / f"home{n}"),
            stdout=subprocess.PIPE,
            text=True,
        )
        for n, path in enumerate(paths)
    ]
    deadline = time.monotonic() + 180
    waiting = 0
    while waiting < 2 and time.monotonic() < deadline:
        waiting = holder.execute(
            sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        ).scalar()
        time.sleep(0.1)
    assert waiting == 2, "both imports should be waiting to load"
    holder.rollback()
    holder.close()
    results = [json.loads(run.communicate(timeout=300)[0]) for run in runs]

    statuses = sorted((r["status"], r["contacts_created"]) for r in results)
    assert statuses == [("COMPLETED", ROWS), ("NEEDS_REVIEW", 0)]
    loser = next(r for r in results if r["status"] == "NEEDS_REVIEW")
    assert [(i["kind"], i["rows"]) for i in loser["issues"]] == [
        ("existing_contact", [ROWS // 2 + 1])
    ]
    assert rows(engine, "SELECT count(*) FROM contacts WHERE email_normalized = :e", e=SHARED) == [
        (1,)
    ]
    assert rows(engine, "SELECT count(*) FROM contacts") == [(ROWS,)]
