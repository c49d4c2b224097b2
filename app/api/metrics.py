"""Prometheus metrics."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Response
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from app.deps import ServicesDep
from app.services import Services
from core.metrics import CONTENT_TYPE, render

router = APIRouter(tags=["health"])


class ServiceCollector:
    """Values read at scrape time from this API process's long-lived objects."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def collect(self) -> Iterator[Metric]:
        depth = self._services.queue.depth()
        queue = GaugeMetricFamily(
            "rag_queue_depth",
            "Ingestion tasks waiting: LLEN of the Celery queue in the broker, or the embedded "
            "worker's queued and running documents.",
        )
        if depth is not None:  # broker unreachable: no sample rather than a wrong zero
            queue.add_metric([], depth)
        yield queue
        vectors = GaugeMetricFamily(
            "rag_index_vectors",
            "Vectors in each FAISS index loaded in this API process.",
            labels=["collection_id", "embedder"],
        )
        for (collection_id, embedder), count in self._services.indexes.loaded().items():
            vectors.add_metric([collection_id, embedder], count)
        yield vectors


@router.get("/metrics", include_in_schema=False)
def metrics(services: ServicesDep) -> Response:
    """Prometheus text format."""
    return Response(render(ServiceCollector(services)), media_type=CONTENT_TYPE)
