"""Prometheus metrics shared by the API and the workers (prometheus_client).

Counters and histograms are module-level, so any layer can record them. Values that exist only
at scrape time (queue depth, index sizes) come from a collector passed to `render`.

Several processes: uvicorn `--workers N` and Celery's prefork children each count on their own.
prometheus_client's multiprocess mode merges them: with PROMETHEUS_MULTIPROC_DIR set (the image
sets it; compose mounts a tmpfs there), every process writes its values to files in that folder
and `render` sums them. prometheus_client reads that variable itself when this module is first
imported, which is why it is an environment variable and not one of our settings. The API serves
the merged values on /metrics; a worker container serves its processes' values on
RAG_METRICS__WORKER_PORT (workers/celery_app.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from core.prometheus_dir import multiprocess_dir

CONTENT_TYPE = CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

HTTP_REQUEST_SECONDS = Histogram(
    "rag_http_request_duration_seconds",
    "HTTP request latency by route template (until the last body byte, streams included).",
    ["method", "route", "status"],
    buckets=_LATENCY_BUCKETS,
)
QUERY_STEP_SECONDS = Histogram(
    "rag_query_step_duration_seconds",
    "Latency of each step of a generated (not cached) query: retrieve, relevance, evidence, "
    "analysis, generator (all generator calls) and total.",
    ["step"],
    buckets=_LATENCY_BUCKETS,
)
GENERATOR_TOKENS = Counter(
    "rag_generator_tokens_total",
    "Tokens the generator processed for queries, by kind (prompt, completion, cached_prompt).",
    ["kind"],
)
QUERY_CACHE_REQUESTS = Counter(
    "rag_query_cache_requests_total",
    "Query-cache lookups by result (hit, miss).",
    ["result"],
)
INGESTED_DOCUMENTS = Counter(
    "rag_ingested_documents_total",
    "Ingestion task runs by outcome (ready, failed, skipped).",
    ["outcome"],
)
INGESTED_CHUNKS = Counter(
    "rag_ingested_chunks_total",
    "Chunks embedded and stored by ingestion.",
)


class _Default:
    """This process's own registry, as a collector of a per-scrape registry."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def registry(*extra: Collector) -> CollectorRegistry:
    """All processes' values (multiprocess mode) or this process's, plus `extra` collectors."""
    combined = CollectorRegistry(auto_describe=False)
    if multiprocess_dir() is not None:
        multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
    else:
        combined.register(_Default())
    for collector in extra:
        combined.register(collector)
    return combined


def render(*extra: Collector) -> bytes:
    """The Prometheus text exposition of `registry(*extra)`."""
    return generate_latest(registry(*extra))
