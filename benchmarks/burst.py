"""A burst of small uploads through the real sensor and daemon: files per minute, landed to a
final status, with the project's dagster.yaml (queued runs, one run per tenant at a time)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ingestion_pipeline.db.engine import get_engine

ROOT = Path(__file__).resolve().parent.parent
FINAL = ("COMPLETED", "NEEDS_REVIEW", "NEEDS_MAPPING", "FAILED")


def fresh_database(server_url: str, name: str) -> str:
    server = make_url(server_url).set(database="postgres")
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server.set(database=name).render_as_string(hide_password=False)


def small_file(index: int) -> bytes:
    """10 to 100 rows of clean contacts, different for every file."""
    count = 10 + (index * 37) % 91
    lines = ["email,first_name,last_name,company"]
    lines += [f"p{index}-{n}@burst{index}.io,First{n},Last{n},Co{index}" for n in range(count)]
    return ("\n".join(lines) + "\n").encode()


def run_burst(server_url: str, files: int, tenants: int, timeout: float = 3600) -> dict:
    """Drop `files` small uploads over `tenants` tenants into the landing folder while
    dagster-daemon runs; returns files per minute from the first write to the last final
    status, and the counts by status."""
    url = fresh_database(server_url, "ingestion_burst")
    storage = fresh_database(server_url, "ingestion_burst_dagster")
    engine = get_engine(url)  # migrates
    work = Path(tempfile.mkdtemp(prefix="bench-burst-"))
    home, landing = work / "home", work / "landing"
    home.mkdir()
    (landing / "uploads").mkdir(parents=True)
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DAGSTER_POSTGRES_URL": storage,
        "LANDING_ZONE": str(landing),
        "DAGSTER_HOME": str(home),
        "PYTHONWARNINGS": "ignore",
    }
    daemon = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        stdout=(work / "daemon.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        time.sleep(20)  # the daemon loads the code location and starts its sensor loop
        started = time.perf_counter()
        for index in range(files):
            folder = landing / "uploads" / f"tenant{index % tenants:02d}"
            folder.mkdir(exist_ok=True)
            (folder / f"contacts-{index}.csv").write_bytes(small_file(index))
        done, counts = 0, {}
        while time.perf_counter() - started < timeout:
            with engine.connect() as conn:
                counts = {
                    status: n
                    for status, n in conn.execute(
                        sa.text("SELECT status, count(*) FROM import_jobs GROUP BY 1")
                    )
                }
            done = sum(counts.get(status, 0) for status in FINAL)
            if done >= files:
                break
            time.sleep(1)
        seconds = time.perf_counter() - started
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
    return {
        "files": files,
        "tenants": tenants,
        "seconds": seconds,
        "files_per_minute": 60 * done / seconds,
        "statuses": counts,
        "log": str(work / "daemon.log"),
    }


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", required=True, help="PostgreSQL URL of the server to use")
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--tenants", type=int, default=20)
    args = parser.parse_args()
    print(run_burst(args.server, args.files, args.tenants))
