"""`make bench-peers`: dlt's default pipeline and our import on the same file and server, each
as a ratio to COPY of that file measured in the same run.

dlt loads what the file says (no validation, deduplication, review or tenant scoping); the
comparison says what those cost on top of a general-purpose loader.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import TENANT, bench_database_url, bench_file, copy_from, run_cli, servers, timed

from ingestion_pipeline.db.engine import get_engine

PEERS_PYTHON = Path(__file__).resolve().parent.parent / ".venv-peers" / "bin" / "python"


def dlt_url(url: str) -> str:
    """The libpq URL dlt takes for the server of our SQLAlchemy URL (socket dirs included)."""
    parsed = make_url(url)
    params = dict(parsed.query)
    # A socket directory (the embedded server) goes where the host goes, percent-encoded.
    host = parsed.host or quote(str(params.pop("host", "")), safe="")
    query = "&".join(f"{k}={v}" for k, v in params.items())
    # dlt insists on a password; a trust-auth server ignores the one it is given.
    auth = f"{parsed.username or 'postgres'}:{quote(parsed.password or 'unused', safe='')}"
    port = f":{parsed.port}" if parsed.port else ""
    return f"postgresql://{auth}@{host}{port}/{parsed.database}" + (f"?{query}" if query else "")


def run_dlt(path: Path, url: str) -> tuple[float, float, int]:
    launcher = [sys.executable, str(Path(__file__).with_name("peak_rss.py"))]
    script = str(Path(__file__).with_name("peer_dlt.py"))
    proc = subprocess.run(
        [*launcher, str(PEERS_PYTHON), "-W", "ignore", script, str(path), dlt_url(url)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"dlt failed: {proc.stderr[-3000:]}")
    rows, seconds = proc.stdout.split()[-2:]
    peak_kib = int(proc.stderr.strip().splitlines()[-1].removeprefix("peak_rss_kib="))
    return float(seconds), peak_kib / 1024, int(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    if not PEERS_PYTHON.exists():
        raise SystemExit("no .venv-peers: run `make bench-peers` (it installs dlt there)")
    path = bench_file(args.rows)
    for label, server_url in servers():
        url = bench_database_url(server_url)
        engine = get_engine(url)
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "CREATE UNLOGGED TABLE copy_floor (email text, first_name text, "
                    "last_name text, company text, phone text, city text)"
                )
            )

        def copy_floor(engine=engine) -> None:
            with engine.begin() as conn:
                conn.execute(sa.text("TRUNCATE copy_floor"))
            with path.open("rb") as stream:
                copy_from(
                    engine, "COPY copy_floor FROM STDIN WITH (FORMAT csv, HEADER true)", stream
                )

        env = {
            **os.environ,
            "DATABASE_URL": url,
            "LANDING_ZONE": tempfile.mkdtemp(prefix="peers-landing-"),
            "DAGSTER_HOME": tempfile.mkdtemp(prefix="peers-dagster-"),
            "PYTHONWARNINGS": "ignore",
        }
        copies, ours, peers = [], [], []
        peak_ours = peak_dlt = 0.0
        loaded = 0
        for attempt in range(args.repeat):
            copies.append(timed(copy_floor))
            seconds, peak, _ = run_cli(["import", str(path), "--tenant", f"{TENANT}{attempt}"], env)
            ours.append(seconds)
            peak_ours = max(peak_ours, peak)
            seconds, peak, loaded = run_dlt(path, url)
            peers.append(seconds)
            peak_dlt = max(peak_dlt, peak)
        copy_s = statistics.median(copies)
        print(f"\n{label}: {args.rows:,} rows, median of {args.repeat}\n")
        print("| loader | seconds | rows/s | x COPY | peak RSS |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, seconds, peak in [
            ("COPY into an unlogged table (floor)", copy_s, None),
            ("ingestion_pipeline import (read, stage, validate)",
             statistics.median(ours), peak_ours),
            (f"dlt {dlt_version()} default pipeline (load only, {loaded:,} rows)",
             statistics.median(peers), peak_dlt),
        ]:  # fmt: skip
            peak_text = f"{peak:.0f} MiB" if peak else "-"
            print(
                f"| {name} | {seconds:.2f} | {args.rows / seconds:,.0f} | "
                f"{seconds / copy_s:.1f} | {peak_text} |"
            )
        engine.dispose()


def dlt_version() -> str:
    proc = subprocess.run(
        [str(PEERS_PYTHON), "-c", "import dlt; print(dlt.__version__)"],
        capture_output=True,
        text=True,
    )
    return proc.stdout.strip()


if __name__ == "__main__":
    main()
