"""The Prometheus metrics a process of the pipeline keeps: one registry, the metric objects, and
what observes them. Plain Python (no Dagster, no FastAPI): the HTTP service observes its
requests here, and a worker process can import it to observe the jobs it runs.

`GET /metrics` of `ingestion-pipeline serve` exposes this registry together with the gauges it
reads from the database at scrape time (ingestion_pipeline.service.routes.operations).
With PROMETHEUS_MULTIPROC_DIR set (`serve --workers N`), prometheus_client keeps the values
in files there, and `exposition()` sums the processes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

# Claim to finish: from a lane taking a job (a worker's claim, a run's start) to its end.
JOB_SECONDS = Histogram(
    "ingestion_job_seconds",
    "Seconds from claiming an import job to finishing it, by lane (warm, queue).",
    ["lane"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
    registry=REGISTRY,
)

HTTP_REQUEST_SECONDS = Histogram(
    "ingestion_http_request_duration_seconds",
    "Seconds the HTTP service took to answer, by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)

UPLOAD_REQUESTS = Counter(
    "ingestion_upload_requests",
    "Requests that send file bytes (uploads, upload-session parts and completions), by route "
    "template and status code.",
    ["route", "code"],
    registry=REGISTRY,
)

# The routes whose requests UPLOAD_REQUESTS counts (their templates, as FastAPI names them).
UPLOAD_ROUTES = frozenset(
    {
        "/v1/uploads",
        "/v1/upload-sessions",
        "/v1/upload-sessions/{session_id}/parts/{number}",
        "/v1/upload-sessions/{session_id}/complete",
    }
)
# Requests that matched no route share one label value (paths would be unbounded).
UNMATCHED = "<unmatched>"


def observe_job(lane: str, seconds: float) -> None:
    """Record one job's claim-to-finish time in `lane` ("warm" or "queue")."""
    JOB_SECONDS.labels(lane=lane).observe(max(seconds, 0.0))


def observe_request(method: str, route: str | None, status: int, seconds: float) -> None:
    """Record one HTTP request: its latency, and for an upload route its status."""
    route = route or UNMATCHED
    HTTP_REQUEST_SECONDS.labels(method=method, route=route).observe(max(seconds, 0.0))
    if route in UPLOAD_ROUTES and method in ("POST", "PUT"):
        UPLOAD_REQUESTS.labels(route=route, code=str(status)).inc()


class DatabaseCollector(Collector):
    """Gauges read from PostgreSQL when scraped (one statement each, db/metrics.py): import
    jobs by status and dataset, and the webhook backlog. A scrape that cannot read the
    database reports ingestion_metrics_database_up 0 instead of failing."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def describe(self) -> list[Metric]:
        return []  # nothing is read at registration; every scrape reads anew

    def collect(self) -> Iterator[Metric]:
        from ingestion_pipeline.constants import JobStatus
        from ingestion_pipeline.datasets import LOAD_ORDER
        from ingestion_pipeline.db.metrics import job_counts, webhook_backlog
        from ingestion_pipeline.db.warm_queue import depth

        up = GaugeMetricFamily(
            "ingestion_metrics_database_up",
            "1 if this scrape read the database-backed gauges, else 0.",
        )
        try:
            with self.engine.connect() as conn:
                counts = job_counts(conn)
                backlog = webhook_backlog(conn)
                warm, leases = depth(conn)
        except Exception as exc:  # a scrape still answers; /readyz says what is wrong
            log.warning("metrics: the database could not be read (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily(
            "ingestion_import_jobs",
            "Import jobs by status and dataset (every status of every declared dataset, 0 too).",
            labels=["status", "dataset"],
        )
        # Every declared combination appears, so that a status that empties drops to 0.
        for key in sorted({(s.value, d) for s in JobStatus for d in LOAD_ORDER} | set(counts)):
            jobs.add_metric(list(key), counts.get(key, 0))
        yield jobs
        yield GaugeMetricFamily(
            "ingestion_webhook_deliveries_pending",
            "Webhook deliveries not yet delivered nor given up (due or waiting to retry).",
            value=backlog.pending,
        )
        queue = GaugeMetricFamily(
            "ingestion_warm_queue_jobs",
            "Jobs in the warm lane's queue: waiting, held by a worker, expired (its worker died).",
            labels=["state"],
        )
        for state, count in warm.items():
            queue.add_metric([state], count)
        yield queue
        held = GaugeMetricFamily(
            "ingestion_worker_leases",
            "Jobs each warm-lane worker holds under a running lease.",
            labels=["worker"],
        )
        for worker, count in leases.items():
            held.add_metric([worker], count)
        yield held
        queued = GaugeMetricFamily(
            "ingestion_queue_lane_pending_jobs",
            "PENDING jobs the warm lane does not hold: waiting for the sensors and the run queue.",
        )
        pending = sum(n for (status, _), n in counts.items() if status == "PENDING")
        queued.add_metric([], max(0, pending - warm["waiting"] - warm["held"] - warm["expired"]))
        yield queued
        yield GaugeMetricFamily(
            "ingestion_webhook_oldest_pending_seconds",
            "Age of the oldest pending webhook delivery; 0 without any.",
            value=backlog.oldest_seconds,
        )


def exposition(*scrape_time: Collector) -> tuple[bytes, str]:
    """The text exposition of this process's metrics (every process's, in multiprocess mode)
    followed by `scrape_time` collectors, which are collected now; and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        process_wide = CollectorRegistry()
        multiprocess.MultiProcessCollector(process_wide)
    else:
        process_wide = REGISTRY
    now = CollectorRegistry(auto_describe=False)
    for collector in scrape_time:
        now.register(collector)
    return generate_latest(process_wide) + generate_latest(now), CONTENT_TYPE_LATEST
