"""Ingest one document: parse, chunk, embed, store. Called by the Celery task, in any process.

Idempotent: a document already finished is skipped, and the (document_id, ordinal) unique
constraint turns a concurrent second run into a rolled-back no-op instead of duplicate chunks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.exc import IntegrityError

from core import repository
from core.db import Database
from core.errors import DocumentError, RagError
from core.models import DocumentStatus
from core.settings import IngestSettings
from retrieval.chunker import chunk_text
from retrieval.embedders import EmbedderPool
from retrieval.parsing import extract_text

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    READY = "ready"
    FAILED = "failed"
    SKIPPED = "skipped"  # gone, already done, or done by a concurrent delivery


@dataclass(frozen=True)
class IngestResult:
    outcome: Outcome
    chunks: int = 0


def ingest_document(
    db: Database, embedders: EmbedderPool, settings: IngestSettings, document_id: str
) -> IngestResult:
    """Turn a queued document into chunks and vectors.

    Raises only transient errors (database unreachable and the like) for the caller to retry;
    a document that cannot be parsed is marked failed with a message and the job moves on.
    """
    with db.session() as session:
        loaded = repository.load_document_for_processing(session, document_id)
        if loaded is None:
            return IngestResult(Outcome.SKIPPED)
        document, data = loaded
        job_id, media_type, collection_id = (
            document.job_id,
            document.media_type,
            document.collection_id,
        )
        _, embedder_id = repository.index_version(session, collection_id)
        repository.mark_document(session, document_id, DocumentStatus.PROCESSING)

    try:
        text = extract_text(
            data,
            media_type,
            pdf_timeout_s=settings.pdf_timeout_s,
            pdf_memory_mb=settings.pdf_memory_mb,
            max_chars=settings.max_text_chars,
            max_unpacked_bytes=settings.max_unpacked_mb * 1024 * 1024,
        )
        spans = chunk_text(text, settings.chunk_size, settings.chunk_overlap)
    except DocumentError as exc:
        return _fail(db, document_id, job_id, exc.message)
    except Exception as exc:  # a parser bug must fail this document alone, not loop forever
        log.exception("parsing document %s failed", document_id)
        return _fail(db, document_id, job_id, f"could not parse the file: {type(exc).__name__}")

    vectors = embedders.get(embedder_id).embed_documents([s.text for s in spans])

    try:
        with db.session() as session:
            # An embedder migration may have switched the collection since we read its
            # embedder; the row lock makes this check and the switch exclusive. (Collection
            # first, then document: the lock order of deletes and of the switch.)
            active = repository.lock_collection_by_id(session, collection_id).embedder
            current = repository.lock_unfinished_document(session, document_id)
            if current is None:  # deleted meanwhile, or finished by another delivery
                return IngestResult(Outcome.SKIPPED)
            if active != embedder_id:
                embedder_id = active
                vectors = embedders.get(active).embed_documents([s.text for s in spans])
            repository.store_chunks(
                session,
                current,
                text,
                [(s.ordinal, s.start, s.end, s.text) for s in spans],
                embedder_id,
                vectors,
            )
            if job_id:
                repository.refresh_ingest_job(session, job_id)
    except IntegrityError:
        # Another delivery of this task stored the chunks first (or the document was deleted).
        log.info("document %s was stored by a concurrent delivery; nothing to do", document_id)
        return IngestResult(Outcome.SKIPPED)
    except RagError as exc:
        if exc.code != "collection_not_found":
            raise
        # The collection was deleted while this document was being embedded.
        log.info("collection of document %s was deleted; nothing to store", document_id)
        return IngestResult(Outcome.SKIPPED)
    return IngestResult(Outcome.READY, len(spans))


def _fail(db: Database, document_id: str, job_id: str | None, message: str) -> IngestResult:
    with db.session() as session:
        repository.mark_document(session, document_id, DocumentStatus.FAILED, error=message)
        if job_id:
            repository.refresh_ingest_job(session, job_id)
    return IngestResult(Outcome.FAILED)
