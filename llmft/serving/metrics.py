"""Prometheus metrics of one server (its own registry, so two apps in one process do not collide): requests by route
and status, errors, latency, tokens generated and the sizes of the batches the model ran (and their streamed requests)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest


class Metrics:
    """The counters and histograms `GET /metrics` exposes."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "llmft_requests", "HTTP requests by route and status", ["route", "status"], registry=self.registry
        )
        self.errors = Counter(
            "llmft_request_errors",
            "requests answered with a 4xx/5xx, by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "llmft_request_latency_seconds",
            "time to the response (to its first byte when streamed)",
            ["route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.tokens = Counter("llmft_generated_tokens", "tokens generated (completion tokens)", registry=self.registry)
        self.batch_size = Histogram(
            "llmft_batch_size", "requests per batch the model ran", registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128)
        )
        self.batch_streams = Histogram(
            "llmft_batch_streamed_requests",
            "streamed requests per batch the model ran",
            registry=self.registry,
            buckets=(0, 1, 2, 4, 8, 16, 32, 64, 128),
        )

    def observe_batch(self, size: int, streamed: int) -> None:
        """One batch the model ran: its requests, and how many of them are streamed."""
        self.batch_size.observe(size)
        self.batch_streams.observe(streamed)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """One answered request."""
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if status >= 400:
            self.errors.labels(route, str(status)).inc()

    def render(self) -> bytes:
        """The text exposition format Prometheus scrapes."""
        return generate_latest(self.registry)
