"""Prometheus metrics (GET /metrics): request counts and latencies from the guard, and
at each scrape the queue's state from the database and the backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300, 600)


class Metrics:
    def __init__(self, snapshot: Callable[[], dict], waiting: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ocrq_http_requests",
            "HTTP requests answered, by route and status code.",
            ["method", "route", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ocrq_http_request_duration_seconds",
            "Seconds from a request's arrival to the end of its answer, by route.",
            ["method", "route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.infer = Histogram(
            "ocrq_infer_seconds",
            "Seconds a POST /infer that answered with its result took (upload to result).",
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.rejected = Counter(
            "ocrq_rejected_requests",
            "Requests refused at the door, by reason (auth, host, too_large, overload, connections).",
            ["reason"],
            registry=self.registry,
        )
        waiting_gauge = Gauge(
            "ocrq_infer_waiting",
            "POST /infer requests held open now.",
            registry=self.registry,
        )
        waiting_gauge.set_function(waiting)
        self.registry.register(_QueueCollector(snapshot))


class _QueueCollector(Collector):
    def __init__(self, snapshot: Callable[[], dict]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        data = self.snapshot()
        jobs = GaugeMetricFamily(
            "ocrq_jobs", "Page jobs in the results database, by status.", labels=["status"]
        )
        for status, n in data["jobs"].items():
            jobs.add_metric([status], n)
        yield jobs
        depth = data.get("queue_depth")
        yield GaugeMetricFamily(
            "ocrq_queue_depth",
            "Page jobs waiting for a worker (local pool: handed to it, not started; queue "
            "mode: messages in the broker's queue).",
            value=depth if depth is not None else float("nan"),
        )
        yield GaugeMetricFamily(
            "ocrq_pages_per_second",
            "Pages finished per second over the last minute.",
            value=data["pages_per_second"],
        )
        yield GaugeMetricFamily(
            "ocrq_spool_bytes",
            "Bytes of uploads kept in the spool (at the last sweep).",
            value=data["spool"]["bytes"],
        )
        busy = sum(1 for w in data["workers"] if w["state"] == "busy")
        yield GaugeMetricFamily(
            "ocrq_workers", "Workers seen (local pool: children).", value=len(data["workers"])
        )
        yield GaugeMetricFamily("ocrq_workers_busy", "Workers running a job now.", value=busy)
