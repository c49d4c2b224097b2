"""Ingestion tasks: thin wrappers over retrieval.ingestion."""

from __future__ import annotations

import logging
from typing import Any

from core.metrics import INGESTED_CHUNKS, INGESTED_DOCUMENTS
from retrieval.ingestion import IngestResult
from retrieval.ingestion import ingest_document as ingest
from retrieval.ingestion import ingest_documents as ingest_many
from workers.celery_app import celery_app
from workers.context import current_context
from workers.retry import RETRY
from workers.task_names import INGEST_DOCUMENT, INGEST_DOCUMENTS

log = logging.getLogger(__name__)


@celery_app.task(name=INGEST_DOCUMENT, **RETRY)
def ingest_document(document_id: str) -> dict[str, Any]:
    """Parse, chunk and embed one document. Safe to run more than once."""
    context = current_context()
    result = ingest(context.db, context.embedders, context.settings.ingest, document_id)
    return _report(document_id, result)


@celery_app.task(name=INGEST_DOCUMENTS, **RETRY)
def ingest_documents(document_ids: list[str]) -> list[dict[str, Any]]:
    """Several documents as one unit (one encoder call, one transaction). Safe to run more
    than once: a retry skips the documents already finished."""
    context = current_context()
    results = ingest_many(context.db, context.embedders, context.settings.ingest, document_ids)
    return [_report(d, r) for d, r in zip(document_ids, results, strict=True)]


def _report(document_id: str, result: IngestResult) -> dict[str, Any]:
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
