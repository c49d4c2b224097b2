"""Ingestion tasks: thin wrappers over retrieval.ingestion."""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import DBAPIError, OperationalError

from core.metrics import INGESTED_CHUNKS, INGESTED_DOCUMENTS
from retrieval.ingestion import ingest_document as ingest
from workers.celery_app import celery_app
from workers.context import get_context
from workers.task_names import INGEST_DOCUMENT

log = logging.getLogger(__name__)

# Only failures that a later try can fix; a broken file is not one of them (it fails alone).
TRANSIENT_ERRORS = (
    OperationalError,
    DBAPIError,
    RedisConnectionError,
    ConnectionError,
    TimeoutError,
)


@celery_app.task(
    name=INGEST_DOCUMENT,
    acks_late=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=2,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=8,
)
def ingest_document(document_id: str) -> dict[str, Any]:
    """Parse, chunk and embed one document. Safe to run more than once."""
    context = get_context()
    result = ingest(context.db, context.embedders, context.settings.ingest, document_id)
    INGESTED_DOCUMENTS.labels(result.outcome.value).inc()
    INGESTED_CHUNKS.inc(result.chunks)
    log.info(
        "ingested document %s: %s, %d chunks",
        document_id,
        result.outcome.value,
        result.chunks,
        extra={"document_id": document_id, "outcome": result.outcome.value},
    )
    return {"document_id": document_id, "outcome": result.outcome.value, "chunks": result.chunks}
