"""Ingest documents: parse, chunk, embed, store. Called by the Celery tasks, in any process:
one document at a time, or several as one unit (one encoder call, one transaction).

Idempotent: a document already finished is skipped, and the (document_id, ordinal) unique
constraint turns a concurrent second run into a rolled-back no-op instead of duplicate chunks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import repository
from core.db import Database
from core.errors import DocumentError, RagError
from core.foreground import encode_in_background
from core.models import DocumentStatus
from core.settings import IngestSettings
from retrieval.chunker import ChunkSpan, chunk_text
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


@dataclass(frozen=True)
class _Parsed:
    """A document read, parsed and chunked, waiting for its vectors."""

    document_id: str
    job_id: str | None
    collection_id: str
    embedder_id: str
    text: str
    spans: list[ChunkSpan]


def ingest_document(
    db: Database, embedders: EmbedderPool, settings: IngestSettings, document_id: str
) -> IngestResult:
    """Turn a queued document into chunks and vectors.

    Raises only transient errors (database unreachable and the like) for the caller to retry;
    a document that cannot be parsed is marked failed with a message and the job moves on.
    """
    parsed = _parse(db, settings, document_id)
    if isinstance(parsed, IngestResult):
        return parsed
    vectors = encode_in_background(
        embedders.get(parsed.embedder_id).embed_documents, [s.text for s in parsed.spans]
    )
    return _store_one(db, embedders, parsed, vectors)


def ingest_documents(
    db: Database, embedders: EmbedderPool, settings: IngestSettings, document_ids: list[str]
) -> list[IngestResult]:
    """Several documents as one unit of work: each is parsed on its own (a broken file fails
    alone), the chunks of all of them are embedded in one encoder call per embedder (the
    encoder sorts them by length, so batches pad little across documents), and all are stored
    in one transaction that recounts each job once. If that transaction cannot take them all
    (a concurrent delivery stored one first, a collection was deleted), each is stored alone,
    with the single-document rules. Results are in the order of `document_ids`.
    """
    results: dict[str, IngestResult] = {}
    parsed: list[_Parsed] = []
    for document_id in document_ids:
        outcome = _parse(db, settings, document_id)
        if isinstance(outcome, IngestResult):
            results[document_id] = outcome
        else:
            parsed.append(outcome)
    vectors = _embed_together(embedders, parsed)
    try:
        results.update(_store_together(db, embedders, parsed, vectors))
    except (IntegrityError, RagError) as exc:
        if isinstance(exc, RagError) and exc.code != "collection_not_found":
            raise
        log.info("storing %d documents together failed (%s); storing each alone", len(parsed), exc)
        for p in parsed:
            results[p.document_id] = _store_one(db, embedders, p, vectors[p.document_id])
    return [results[document_id] for document_id in document_ids]


def _parse(db: Database, settings: IngestSettings, document_id: str) -> _Parsed | IngestResult:
    """Claim a queued document (mark it processing), read and chunk it; an IngestResult when
    there is nothing to embed (skipped, or failed with its message)."""
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
        # Its job runs from now on (not only once a first document is done).
        repository.start_ingest_jobs(session, [job_id])

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
    return _Parsed(document_id, job_id, collection_id, embedder_id, text, spans)


def _embed_together(embedders: EmbedderPool, parsed: list[_Parsed]) -> dict[str, np.ndarray]:
    """Each document's vectors, from one encoder call per embedder over all their chunks."""
    vectors: dict[str, np.ndarray] = {}
    for embedder_id in sorted({p.embedder_id for p in parsed}):
        group = [p for p in parsed if p.embedder_id == embedder_id]
        encoded = encode_in_background(
            embedders.get(embedder_id).embed_documents, [s.text for p in group for s in p.spans]
        )
        at = 0
        for p in group:
            vectors[p.document_id] = encoded[at : at + len(p.spans)]
            at += len(p.spans)
    return vectors


def _store_together(
    db: Database,
    embedders: EmbedderPool,
    parsed: list[_Parsed],
    vectors: dict[str, np.ndarray],
) -> dict[str, IngestResult]:
    """Store every parsed document in one transaction (raises IntegrityError or
    RagError("collection_not_found") for the caller to fall back to one at a time)."""
    results: dict[str, IngestResult] = {}
    if not parsed:
        return results
    with db.session() as session:
        # Collections first, then their documents: the lock order of deletes and the switch.
        for collection_id in sorted({p.collection_id for p in parsed}):
            active = repository.lock_collection_by_id(session, collection_id).embedder
            for p in (p for p in parsed if p.collection_id == collection_id):
                results[p.document_id] = _store_locked(session, embedders, p, active, vectors)
        for job_id in sorted({p.job_id for p in parsed if p.job_id}):
            repository.refresh_ingest_job(session, job_id)
    return results


def _store_one(
    db: Database, embedders: EmbedderPool, parsed: _Parsed, vectors: np.ndarray
) -> IngestResult:
    try:
        with db.session() as session:
            # An embedder migration may have switched the collection since we read its
            # embedder; the row lock makes this check and the switch exclusive. (Collection
            # first, then document: the lock order of deletes and of the switch.)
            active = repository.lock_collection_by_id(session, parsed.collection_id).embedder
            result = _store_locked(
                session, embedders, parsed, active, {parsed.document_id: vectors}
            )
            if parsed.job_id and result.outcome is Outcome.READY:
                repository.refresh_ingest_job(session, parsed.job_id)
    except IntegrityError:
        # Another delivery of this task stored the chunks first (or the document was deleted).
        log.info("document %s was stored by a concurrent delivery", parsed.document_id)
        return IngestResult(Outcome.SKIPPED)
    except RagError as exc:
        if exc.code != "collection_not_found":
            raise
        # The collection was deleted while this document was being embedded.
        log.info("collection of document %s was deleted; nothing to store", parsed.document_id)
        return IngestResult(Outcome.SKIPPED)
    return result


def _store_locked(
    session: Session,
    embedders: EmbedderPool,
    parsed: _Parsed,
    active_embedder: str,
    vectors: dict[str, np.ndarray],
) -> IngestResult:
    """Store one document under its collection's lock: skipped when it was deleted or finished
    meanwhile; embedded again when a migration switched the collection's embedder."""
    current = repository.lock_unfinished_document(session, parsed.document_id)
    if current is None:  # deleted meanwhile, or finished by another delivery
        return IngestResult(Outcome.SKIPPED)
    texts = [s.text for s in parsed.spans]
    embedder_id, document_vectors = parsed.embedder_id, vectors[parsed.document_id]
    if active_embedder != embedder_id:
        embedder_id = active_embedder
        document_vectors = embedders.get(active_embedder).embed_documents(texts)
    # The versions it replaces (an upload of the same filename) leave in this transaction.
    replaced = repository.store_chunks(
        session,
        current,
        parsed.text,
        [(s.ordinal, s.start, s.end, s.text) for s in parsed.spans],
        embedder_id,
        document_vectors,
    )
    if replaced:
        log.info("document %s replaces %s", parsed.document_id, ", ".join(replaced))
    return IngestResult(Outcome.READY, len(parsed.spans))


def _fail(db: Database, document_id: str, job_id: str | None, message: str) -> IngestResult:
    with db.session() as session:
        repository.mark_document(session, document_id, DocumentStatus.FAILED, error=message)
        if job_id:
            repository.refresh_ingest_job(session, job_id)
    return IngestResult(Outcome.FAILED)
