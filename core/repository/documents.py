"""Documents and their chunks: list, read, delete, process, store."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from core.errors import RagError
from core.models import (
    Chunk,
    Collection,
    Document,
    DocumentBlob,
    DocumentStatus,
    Embedding,
    Job,
    JobStatus,
    utcnow,
)
from core.repository.collections import bump_index_version, lock_collection_by_id
from core.repository.jobs import refresh_ingest_job


def list_documents(session: Session, collection_id: str) -> list[tuple[Document, int]]:
    chunk_counts = (
        select(Chunk.document_id, func.count().label("n"))
        .where(Chunk.collection_id == collection_id)
        .group_by(Chunk.document_id)
        .subquery()
    )
    rows = session.execute(
        select(Document, func.coalesce(chunk_counts.c.n, 0))
        .outerjoin(chunk_counts, chunk_counts.c.document_id == Document.id)
        .where(Document.collection_id == collection_id)
        .order_by(Document.created_at, Document.filename)
    ).all()
    return [(doc, int(n)) for doc, n in rows]


def get_document(
    session: Session, collection: Collection, document_id: str
) -> tuple[Document, int]:
    document = session.get(Document, document_id)
    if document is None or document.collection_id != collection.id:
        raise RagError(
            "document_not_found", f"document {document_id!r} is not in {collection.name!r}"
        )
    chunks = session.scalar(
        select(func.count()).select_from(Chunk).where(Chunk.document_id == document_id)
    )
    return document, int(chunks or 0)


def delete_document(session: Session, collection: Collection, document_id: str) -> None:
    """Delete a document with its chunks and embeddings, and bump the collection's version.

    The collection row is locked first, as ingestion and the embedder switch do: one lock
    order, no deadlock.
    """
    lock_collection_by_id(session, collection.id)
    job_id = session.scalar(
        select(Document.job_id).where(
            Document.id == document_id, Document.collection_id == collection.id
        )
    )
    result = session.execute(
        delete(Document).where(Document.id == document_id, Document.collection_id == collection.id)
    )
    if getattr(result, "rowcount", 0) == 0:
        raise RagError(
            "document_not_found", f"document {document_id!r} is not in {collection.name!r}"
        )
    _release_from_jobs(session, [job_id])
    bump_index_version(session, collection.id)


def _release_from_jobs(session: Session, job_ids: Iterable[str | None]) -> None:
    """Deleted documents (one job id each) stop counting toward their jobs: an unfinished job's
    total drops by its documents deleted and it is recounted, so that it still finishes (it
    waits for its documents, and a deleted one never reports)."""
    counts: dict[str, int] = {}
    for job_id in job_ids:
        if job_id is not None:
            counts[job_id] = counts.get(job_id, 0) + 1
    for job_id, deleted in sorted(counts.items()):
        job = session.scalar(select(Job).where(Job.id == job_id).with_for_update())
        if job is None or job.kind != "ingest" or job.status in JobStatus.TERMINAL:
            continue
        job.total = max(0, job.total - deleted)
        session.flush()
        refresh_ingest_job(session, job_id)


def remove_for_replacement(
    session: Session, collection: Collection, document_id: str, sha256: str
) -> bool:
    """Delete a document that an upload of `sha256` is to replace (its id is then reused).

    Returns False, deleting nothing, when the document already holds exactly these bytes.
    Raises RagError("document_not_found") when it is not in the collection.
    """
    document, _ = get_document(session, collection, document_id)
    if document.sha256 == sha256:
        return False
    # The ORM object must not linger in the session: a new row takes its primary key.
    session.expunge(document)
    delete_document(session, collection, document_id)
    return True


def replaced_by(session: Session, document: Document) -> list[str]:
    """The ids of the documents that `document` replaces, as its upload recorded them (the
    `replaces` of its entry in the job's `params["files"]`); empty when it replaces none."""
    if document.job_id is None:
        return []
    params = session.scalar(select(Job.params).where(Job.id == document.job_id)) or {}
    for entry in params.get("files", []):
        if entry.get("document_id") == document.id and entry.get("status") == "queued":
            return [str(i) for i in entry.get("replaces", []) if i != document.id]
    return []


def retire_replaced(session: Session, document: Document) -> list[str]:
    """Delete the documents `document` replaces (with their bytes, chunks and vectors), in the
    caller's transaction: the one that makes `document` searchable, so that searches see either
    the old versions or the new one, never both and never neither. Those already gone are
    skipped. Returns the ids deleted. The caller holds the collection's lock."""
    ids = replaced_by(session, document)
    if not ids:
        return []
    present = session.execute(
        select(Document.id, Document.job_id).where(
            Document.id.in_(ids), Document.collection_id == document.collection_id
        )
    ).all()
    if not present:
        return []
    session.execute(delete(Document).where(Document.id.in_([row.id for row in present])))
    _release_from_jobs(session, [row.job_id for row in present])
    return [row.id for row in present]


def lock_unfinished_document(session: Session, document_id: str) -> Document | None:
    """Lock a document for its ingestion task; None if it is gone or already finished."""
    document = session.scalar(select(Document).where(Document.id == document_id).with_for_update())
    if document is None or document.status in DocumentStatus.TERMINAL:
        return None
    return document


def load_document_for_processing(
    session: Session, document_id: str
) -> tuple[Document, bytes] | None:
    """Lock a document and read its bytes; None if it is gone or already finished."""
    document = lock_unfinished_document(session, document_id)
    if document is None:
        return None
    blob = session.get(DocumentBlob, document_id)
    if blob is None:
        return None
    return document, blob.data


def mark_document(
    session: Session, document_id: str, status: str, *, error: str | None = None
) -> None:
    session.execute(
        update(Document)
        .where(Document.id == document_id)
        .values(status=status, error=error, updated_at=utcnow())
    )


def store_chunks(
    session: Session,
    document: Document,
    text: str,
    spans: Sequence[tuple[int, int, int, str]],
    embedder: str,
    vectors: np.ndarray,
) -> list[str]:
    """Insert a document's chunks and their vectors and mark it ready, in the caller's transaction,
    deleting in the same transaction the documents it replaces (`retire_replaced`).

    Returns the ids of the replaced documents deleted. Raises IntegrityError if the chunks exist
    already (a re-delivered task): the caller rolls back.
    """
    chunks = [
        Chunk(
            document_id=document.id,
            collection_id=document.collection_id,
            ordinal=ordinal,
            start_offset=start,
            end_offset=end,
            text=chunk_text,
        )
        for ordinal, start, end, chunk_text in spans
    ]
    session.add_all(chunks)
    session.flush()
    vectors = np.ascontiguousarray(vectors, dtype="<f4")
    session.add_all(
        Embedding(
            chunk_id=chunk.id,
            embedder=embedder,
            collection_id=document.collection_id,
            vector=vectors[i].tobytes(),
        )
        for i, chunk in enumerate(chunks)
    )
    document.text = text
    document.status = DocumentStatus.READY
    document.error = None
    session.flush()
    replaced = retire_replaced(session, document)
    bump_index_version(session, document.collection_id)
    return replaced


def document_texts(session: Session, document_ids: Iterable[str]) -> dict[str, str]:
    """Extracted texts of ready documents, by id (citations are verified against these)."""
    rows = session.execute(
        select(Document.id, Document.text).where(
            Document.id.in_(list(document_ids)), Document.status == DocumentStatus.READY
        )
    ).all()
    return {doc_id: text for doc_id, text in rows if text is not None}
