"""`make bench-latency`: what an application or a reviewer waits for, through the path they take:
`ingestion-pipeline serve`, `ingestion-pipeline worker` and `dagster-daemon` on the project's
dagster.yaml, on each server (the embedded one and a plain PostgreSQL), over HTTP.

Each figure is measured twice in the same run: with the warm lane (workers) and with today's
path (WARM_LANE_MAX_BYTES=0: the sensors and the run queue), so the two stand side by side.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from burst import fresh_database
from run import servers

from ingestion_pipeline.db.engine import get_engine
from ingestion_pipeline.db.service import create_api_key

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FINAL = {"COMPLETED", "NEEDS_REVIEW", "NEEDS_MAPPING", "FAILED"}


def contacts(rows: int, tag: str) -> bytes:
    lines = ["email,first_name,last_name,company"]
    lines += [f"{tag}-{n}@acme.io,First{n},Last{n},Acme" for n in range(rows)]
    return ("\n".join(lines) + "\n").encode()


class Stack:
    """serve + workers + dagster-daemon on fresh databases of one server."""

    def __init__(self, server_url: str, label: str, warm: bool, workers: int) -> None:
        suffix = "warm" if warm else "queue"
        self.url = fresh_database(server_url, f"ingestion_latency_{suffix}")
        storage = fresh_database(server_url, f"ingestion_latency_{suffix}_dagster")
        self.engine = get_engine(self.url)  # migrates
        self.work = Path(tempfile.mkdtemp(prefix=f"bench-latency-{suffix}-"))
        home = self.work / "home"
        home.mkdir()
        (self.work / "landing" / "uploads").mkdir(parents=True)
        shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
        self.env = {
            **os.environ,
            "DATABASE_URL": self.url,
            "DAGSTER_POSTGRES_URL": storage,
            "LANDING_ZONE": str(self.work / "landing"),
            "DAGSTER_HOME": str(home),
            "PYTHONWARNINGS": "ignore",
            "WARM_LANE_MAX_BYTES": str(16 * 1024 * 1024) if warm else "0",
        }
        self.port = 18000 + (1 if warm else 2)
        self.base = f"http://127.0.0.1:{self.port}"
        self.procs = [
            self._start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"]),
            self._start(
                "serve", [str(BIN / "ingestion-pipeline"), "serve", "--port", str(self.port)]
            ),
        ]
        if warm:
            for n in range(workers):
                self.procs.append(
                    self._start(f"worker{n}", [str(BIN / "ingestion-pipeline"), "worker"])
                )
        self._wait_ready()

    def _start(self, name: str, command: list[str]) -> subprocess.Popen:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdout=(self.work / f"{name}.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        # The daemon loads the code location and starts its sensor loop; workers load it too.
        time.sleep(25)

    def client(self, tenant: str) -> httpx.Client:
        with self.engine.begin() as conn:
            key = create_api_key(conn, tenant, "bench")[1]
        return httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {key}"}, timeout=120
        )

    def status(self, client: httpx.Client, job_id: str) -> str:
        return client.get(f"/v1/jobs/{job_id}").json()["status"]

    def until(self, client: httpx.Client, job_id: str, wanted: set[str], timeout=900) -> float:
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            if self.status(client, job_id) in wanted:
                return time.perf_counter() - started
            time.sleep(0.05)
        raise TimeoutError(f"{job_id} not in {wanted} after {timeout} s")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.engine.dispose()


def upload(client: httpx.Client, name: str, content: bytes) -> str:
    answer = client.post("/v1/uploads", params={"file_name": name}, content=content)
    answer.raise_for_status()
    return answer.json()["job_id"]


def done_all(stack: Stack, client: httpx.Client, job_ids: list[str], timeout=1800) -> None:
    started = time.perf_counter()
    pending = set(job_ids)
    while pending and time.perf_counter() - started < timeout:
        pending = {j for j in pending if stack.status(client, j) not in FINAL}
        time.sleep(0.1)
    if pending:
        raise TimeoutError(f"{len(pending)} jobs unfinished")


def one_in_a_row(stack: Stack, count: int) -> list[float]:
    client = stack.client("serial")
    seconds = []
    for n in range(count):
        started = time.perf_counter()
        job_id = upload(client, f"s{n}.csv", contacts(20, f"s{n}"))
        stack.until(client, job_id, FINAL)
        seconds.append(time.perf_counter() - started)
    return seconds


def parallel_of_one_tenant(stack: Stack, count: int) -> float:
    client = stack.client("parallel")
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        ids = list(
            pool.map(lambda n: upload(client, f"p{n}.csv", contacts(20, f"p{n}")), range(count))
        )
    done_all(stack, client, ids)
    return time.perf_counter() - started


def single_during_burst(stack: Stack, burst: int) -> tuple[float, float]:
    """(seconds of another tenant's upload sent after a tenant's burst, seconds of the burst)."""
    bursty, quiet = stack.client("bursty"), stack.client("quiet")
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        ids = list(
            pool.map(lambda n: upload(bursty, f"b{n}.csv", contacts(20, f"b{n}")), range(burst))
        )
    sent = time.perf_counter()
    job_id = upload(quiet, "q.csv", contacts(20, "q"))
    stack.until(quiet, job_id, FINAL)
    single = time.perf_counter() - sent
    done_all(stack, bursty, ids)
    return single, time.perf_counter() - started


def reprocess(stack: Stack) -> float:
    client = stack.client("reviewer")
    flawed = b"email,first_name,last_name,company\ndup@a.io,A,B,C\ndup@a.io,A,B,C\nx,N,M,C\n"
    job_id = upload(client, "f.csv", flawed)
    stack.until(client, job_id, {"NEEDS_REVIEW"})
    decisions = {
        "decisions": [
            {"row": 2, "action": "discard"},
            {"row": 3, "action": "fix", "values": {"email": "x@a.io"}},
        ]
    }
    client.post(f"/v1/jobs/{job_id}/decisions", json=decisions).raise_for_status()
    started = time.perf_counter()
    client.post(f"/v1/jobs/{job_id}/reprocess").raise_for_status()
    stack.until(client, job_id, {"COMPLETED"})
    return time.perf_counter() - started


def big_upload(stack: Stack, rows: int) -> tuple[float, float]:
    """(API upload -> COMPLETED, `ingestion-pipeline import` of the same file) in seconds."""
    content = contacts(rows, "big")
    client = stack.client("big")
    started = time.perf_counter()
    job_id = upload(client, "big.csv", content)
    stack.until(client, job_id, FINAL)
    api = time.perf_counter() - started
    path = stack.work / "big-cli.csv"
    path.write_bytes(contacts(rows, "cli"))
    started = time.perf_counter()
    subprocess.run(
        [str(BIN / "ingestion-pipeline"), "import", str(path), "--tenant", "bigcli", "--json"],
        env=stack.env,
        check=True,
        capture_output=True,
    )
    return api, time.perf_counter() - started


def many_tenants(stack: Stack, files: int, tenants: int) -> float:
    clients = [stack.client(f"t{n:02d}") for n in range(tenants)]
    started = time.perf_counter()

    def send(n: int) -> tuple[int, str]:
        client = clients[n % tenants]
        return n % tenants, upload(client, f"m{n}.csv", contacts(10 + n % 91, f"m{n}"))

    with ThreadPoolExecutor(8) as pool:
        sent = list(pool.map(send, range(files)))
    for tenant in range(tenants):
        done_all(stack, clients[tenant], [j for t, j in sent if t == tenant])
    return 60 * files / (time.perf_counter() - started)


def measure(label: str, server_url: str, args: argparse.Namespace, warm: bool) -> dict:
    lane = "warm lane" if warm else "today's path (sensors + run queue)"
    print(f"\n== {label}: {lane} ==", flush=True)
    stack = Stack(server_url, label, warm, args.workers)
    found: dict = {}
    try:
        serial = one_in_a_row(stack, args.serial if warm else args.baseline_serial)
        found["serial"] = serial
        print(f"  20-row uploads one after another: {[round(s, 2) for s in serial]}", flush=True)
        found["parallel"] = parallel_of_one_tenant(stack, 20)
        print(f"  20 parallel uploads of one tenant: {found['parallel']:.2f} s", flush=True)
        found["reprocess"] = reprocess(stack)
        print(f"  reprocess -> COMPLETED: {found['reprocess']:.2f} s", flush=True)
        if warm or args.baseline_all:
            found["burst"] = single_during_burst(stack, args.burst)
            print(
                f"  another tenant during a {args.burst}-file burst: {found['burst']}", flush=True
            )
            found["big"] = big_upload(stack, args.big_rows)
            print(f"  {args.big_rows:,}-row upload vs CLI import: {found['big']}", flush=True)
            found["many"] = many_tenants(stack, args.files, 20)
            print(
                f"  {args.files} uploads over 20 tenants: {found['many']:.0f} files/min", flush=True
            )
    finally:
        stack.stop()
    return found


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def report(label: str, warm: dict, queue: dict, args: argparse.Namespace) -> None:
    def cell(found: dict, key: str, fmt) -> str:
        return fmt(found[key]) if key in found else "not measured"

    serial = lambda s: f"p50 {statistics.median(s):.2f} s, p95 {p95(s):.2f} s"  # noqa: E731
    secs = lambda s: f"{s:.2f} s"  # noqa: E731
    print(f"\n{label}, {args.workers} worker(s)\n")
    print("| what | target | warm lane | today's path |")
    print("| --- | --- | ---: | ---: |")
    print(
        f"| 20-row upload -> final status ({args.serial} in a row / {args.baseline_serial}) "
        f"| p50 <= 1 s, p95 <= 2 s | {cell(warm, 'serial', serial)} | "
        f"{cell(queue, 'serial', serial)} |"
    )
    print(
        f"| 20 parallel uploads of one tenant, all done | <= 5 s | "
        f"{cell(warm, 'parallel', secs)} | {cell(queue, 'parallel', secs)} |"
    )
    print(
        f"| another tenant's 20-row upload during a {args.burst}-file burst | <= 3 s | "
        f"{cell(warm, 'burst', lambda b: secs(b[0]))} | "
        f"{cell(queue, 'burst', lambda b: secs(b[0]))} |"
    )
    print(
        f"| decisions + reprocess -> COMPLETED | <= 1 s | {cell(warm, 'reprocess', secs)} | "
        f"{cell(queue, 'reprocess', secs)} |"
    )
    print(
        f"| {args.big_rows:,}-row upload -> COMPLETED (CLI import of the same file) | "
        f"<= 1.2x CLI | {cell(warm, 'big', lambda b: f'{b[0]:.2f} s ({b[1]:.2f} s)')} | "
        f"{cell(queue, 'big', lambda b: f'{b[0]:.2f} s ({b[1]:.2f} s)')} |"
    )
    print(
        f"| {args.files:,} uploads over 20 tenants | >= 1,000 files/min | "
        f"{cell(warm, 'many', lambda f: f'{f:.0f} files/min')} | "
        f"{cell(queue, 'many', lambda f: f'{f:.0f} files/min')} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--serial", type=int, default=20)
    parser.add_argument("--baseline-serial", type=int, default=5)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--big-rows", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument(
        "--baseline-all", action="store_true", help="also the burst, big and many on today's path"
    )
    parser.add_argument("--server", choices=["all", "embedded", "plain"], default="all")
    args = parser.parse_args()
    found = servers()
    if args.server == "embedded":
        found = found[:1]
    elif args.server == "plain":
        found = found[1:]
    for label, server_url in found:
        warm = measure(label, server_url, args, warm=True)
        queue = measure(label, server_url, args, warm=False)
        report(label, warm, queue, args)


if __name__ == "__main__":
    main()
