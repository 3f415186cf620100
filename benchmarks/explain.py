"""`make explain`: every slow statement of a 1M-row import and its reprocess, with its plan.

Runs the import and the reprocess of `make bench` in this process, on each server `make bench`
measures, with PostgreSQL reporting to the client (client_min_messages = log) every statement
slower than --min-ms and, where the server has auto_explain (a stock PostgreSQL does; the
embedded one does not), its plan as executed. Prints each statement's time and plan, and flags
a plan node looped over a thousand times that yields many rows per loop (a scan, not a lookup):
the shape of a plan gone quadratic on stale statistics (exit status 1 if found).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (
    TENANT,
    bench_database_url,
    bench_file,
    discard_issue_rows,
    reset_job,
    seed_contacts,
    servers,
)

from ingestion_pipeline.db.engine import get_engine
from ingestion_pipeline.db.plans import quadratic_nodes, render

_DURATION = re.compile(r"duration: ([0-9.]+) ms")
_UTILITY = re.compile(r"(statement|execute [^:]*): \s*(COPY|ANALYZE|VACUUM|CREATE INDEX)", re.I)


def reporting(min_ms: int, plans: bool) -> str:
    """PGOPTIONS that make the server send slow statements (and their plans) to the client."""
    options = [
        "-c client_min_messages=log",
        f"-c log_min_duration_statement={min_ms}",
    ]
    if plans:
        options += [
            "-c session_preload_libraries=auto_explain",
            f"-c auto_explain.log_min_duration={min_ms}",
            "-c auto_explain.log_analyze=on",
            "-c auto_explain.log_nested_statements=on",
            "-c auto_explain.log_format=json",
        ]
    return " ".join(options)


class Collector:
    """Gathers the server's LOG notices from every connection of this process."""

    def __init__(self) -> None:
        self.notices: list[str] = []

    def after_execute(self, conn, cursor, statement, parameters, context, executemany) -> None:
        raw = conn.connection.driver_connection
        if getattr(raw, "notices", None):
            self.notices.extend(raw.notices)
            del raw.notices[:]


def has_auto_explain(url: str) -> bool:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("LOAD 'auto_explain'"))
        return True
    except sa.exc.DBAPIError:
        return False
    finally:
        engine.dispose()


def run_cli(args: list[str]) -> None:
    from ingestion_pipeline import cli

    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        code = cli.main([*args, "--json"])
    if code:
        raise SystemExit(f"{' '.join(args)} exited {code}")


def report(label: str, step: str, notices: list[str]) -> int:
    """Print the statements of one step; returns how many plans were flagged."""
    notices = [n for n in notices if _DURATION.search(n)]
    plans = [n for n in notices if "plan:" in n]
    # With plans, a statement's duration line repeats its plan's; utility statements (COPY,
    # ANALYZE, CREATE INDEX) have no plan and are shown by their duration alone.
    shown = plans + [
        n for n in notices if "plan:" not in n and (not plans or _UTILITY.search(n) is not None)
    ]
    flagged = 0
    print(f"\n### {label}: {step} ({len(shown)} statements over the threshold)\n")
    for notice in sorted(shown, key=lambda n: -float(_DURATION.search(n).group(1))):
        print("```")
        if "plan:" not in notice:
            print(notice.strip()[:2000])
            print("```")
            continue
        head, _, body = notice.partition("plan:")
        executed = json.loads(body)
        print(f"{head.strip()} {executed['Query Text'].strip()[:1500]}")
        print(render(executed["Plan"]))
        print("```")
        suspicious = quadratic_nodes(executed["Plan"])
        flagged += bool(suspicious)
        for node in suspicious:
            print(f"**quadratic shape**: {node}")
    return flagged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--existing", type=int, default=1_000_000)
    parser.add_argument("--min-ms", type=int, default=100)
    args = parser.parse_args()

    path = bench_file(args.rows)
    collector = Collector()
    event.listen(Engine, "after_cursor_execute", collector.after_execute)
    flagged = 0
    for label, server_url in servers():
        url = bench_database_url(server_url)
        engine = get_engine(url)
        seed_contacts(engine, args.existing, args.rows)
        plans = has_auto_explain(url)
        # Connections already pooled were opened without the options below.
        engine.dispose()
        os.environ.update(
            DATABASE_URL=url,
            LANDING_ZONE=tempfile.mkdtemp(prefix="explain-landing-"),
            DAGSTER_HOME=tempfile.mkdtemp(prefix="explain-dagster-"),
            PGOPTIONS=reporting(args.min_ms, plans),
        )
        home = Path(os.environ["DAGSTER_HOME"])
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        print(f"\n## {label} (plans: {'auto_explain' if plans else 'none, durations only'})")
        started = time.perf_counter()
        run_cli(["import", str(path), "--tenant", TENANT])
        print(f"\nimport: {time.perf_counter() - started:.1f} s")
        flagged += report(label, "import", collector.notices)
        collector.notices.clear()
        with engine.connect() as conn:
            job_id = conn.scalar(sa.text("SELECT job_id FROM import_jobs ORDER BY created_at DESC"))
        discard_issue_rows(engine, job_id)
        started = time.perf_counter()
        run_cli(["reprocess", job_id])
        print(f"\nreprocess: {time.perf_counter() - started:.1f} s")
        flagged += report(label, "reprocess", collector.notices)
        collector.notices.clear()
        reset_job(engine, job_id)
        os.environ.pop("PGOPTIONS")
    print(f"\n{flagged} plan(s) of a quadratic shape")
    raise SystemExit(1 if flagged else 0)


if __name__ == "__main__":
    main()
