"""The API's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    """The API's Prometheus metrics, on a registry of its own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "enclave_requests_total",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "enclave_request_seconds",
            "HTTP request latency by route (streams: until the last byte).",
            ["route"],
            registry=self.registry,
        )
        self.stages = Histogram(
            "enclave_stage_seconds",
            "Time per answer stage: embed, search, rerank, rewrite, first_token, generate.",
            ["stage"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry,
        )
        self.tokens = Counter(
            "enclave_llm_tokens_total",
            "LLM tokens by model and kind (prompt, completion).",
            ["model", "kind"],
            registry=self.registry,
        )
        self.ingest_files = Counter(
            "enclave_ingest_files_total",
            "Files handled by API ingestion jobs, by result.",
            ["result"],
            registry=self.registry,
        )
        self.ingest_chunks = Counter(
            "enclave_ingest_chunks_total",
            "Chunks written by API ingestion jobs.",
            registry=self.registry,
        )

    def observe_stages(self, timings: dict[str, float]) -> None:
        for stage, seconds in timings.items():
            self.stages.labels(stage).observe(seconds)
