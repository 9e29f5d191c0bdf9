"""Prometheus metrics of one server, in their own registry (no global state)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Latency buckets from 1 ms to 2.5 s: the range a CPU model server lives in, with
# extra resolution around the 50 ms target the benchmarks use.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5,
                   1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class ServerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter("shoestring_requests", "Inference requests by model and status",
                                ["model", "status"], registry=r)
        self.latency = Histogram("shoestring_request_latency_seconds",
                                 "Inference request latency in the server", ["model"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("shoestring_batch_size", "Rows per executed batch",
                                    ["model"], buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram("shoestring_batch_seconds", "Model time per batch",
                                       ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("shoestring_queue_rows", "Rows waiting to be batched",
                                 ["model"], registry=r)
        self.inflight = Gauge("shoestring_inflight_requests",
                              "Inference requests being handled", registry=r)
        self.shed = Counter("shoestring_shed", "Requests refused with 503 to protect latency",
                            ["model", "reason"], registry=r)
        self.usage_units = Counter("shoestring_usage_units", "Units charged to keys",
                                   ["model", "plan"], registry=r)
        self.draining = Gauge("shoestring_draining", "1 while draining after SIGTERM",
                              registry=r)
        self._children: dict[tuple[str, int], tuple] = {}
        self._units: dict[tuple[str, str], Counter] = {}

    def observe(self, model: str, status: int, seconds: float) -> None:
        """Count a finished request (label children cached: ``labels()`` costs µs each)."""
        key = (model, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = (self.requests.labels(model, str(status)),
                                           self.latency.labels(model))
        child[0].inc()
        child[1].observe(seconds)

    def charged(self, model: str, plan: str, units: int) -> None:
        key = (model, plan)
        child = self._units.get(key)
        if child is None:
            child = self._units[key] = self.usage_units.labels(model, plan)
        child.inc(units)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
