"""Queries. Routes and tasks call these; nothing else writes SQL."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, false, func, select, update
from sqlalchemy.exc import IntegrityError
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


@dataclass(frozen=True)
class UploadedFile:
    filename: str
    media_type: str
    sha256: str
    data: bytes


@dataclass(frozen=True)
class UploadOutcome:
    document_id: str
    filename: str
    status: str  # "queued" | "duplicate"


@dataclass(frozen=True)
class ChunkRow:
    """A stored chunk with what a search hit needs."""

    chunk_id: int
    document_id: str
    filename: str
    text: str
    start: int
    end: int


# Collections ----------------------------------------------------------------------------------


def create_collection(session: Session, name: str, embedder: str) -> Collection:
    collection = Collection(name=name, embedder=embedder)
    session.add(collection)
    try:
        session.flush()
    except IntegrityError as exc:
        raise RagError("collection_exists", f"collection {name!r} already exists") from exc
    return collection


def _take_write_lock(session: Session) -> None:
    """SQLite has no row locks, and pysqlite runs a SELECT outside any transaction: write first,
    so this transaction holds the database's write lock before it reads what it will act on."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(update(Collection).where(false()).values(index_version=0))


def get_collection(session: Session, name: str, *, for_update: bool = False) -> Collection:
    """A collection by name; `for_update` locks its row (FOR NO KEY UPDATE, so inserts that
    only reference the collection, such as uploads, are not held up)."""
    query = select(Collection).where(Collection.name == name)
    if for_update:
        _take_write_lock(session)
        query = query.with_for_update(key_share=True)
    collection = session.scalar(query)
    if collection is None:
        raise RagError("collection_not_found", f"collection {name!r} does not exist")
    return collection


def collection_state(session: Session, name: str) -> tuple[int, str]:
    """(index_version, active embedder) of a collection by name: two columns, no ORM object
    (the cached-query path reads this on every request)."""
    row = session.execute(
        select(Collection.index_version, Collection.embedder).where(Collection.name == name)
    ).one_or_none()
    if row is None:
        raise RagError("collection_not_found", f"collection {name!r} does not exist")
    return int(row[0]), str(row[1])


def list_collections(session: Session) -> Sequence[Collection]:
    return session.scalars(select(Collection).order_by(Collection.name)).all()


def collection_counts(session: Session, collection_id: str) -> tuple[int, int]:
    """(documents ready, chunks) of a collection."""
    documents = session.scalar(
        select(func.count())
        .select_from(Document)
        .where(Document.collection_id == collection_id, Document.status == DocumentStatus.READY)
    )
    chunks = session.scalar(
        select(func.count()).select_from(Chunk).where(Chunk.collection_id == collection_id)
    )
    return int(documents or 0), int(chunks or 0)


def bump_index_version(session: Session, collection_id: str) -> None:
    session.execute(
        update(Collection)
        .where(Collection.id == collection_id)
        .values(index_version=Collection.index_version + 1)
    )


def index_version(session: Session, collection_id: str) -> tuple[int, str]:
    """(index_version, active embedder) of a collection, read fresh from the database."""
    row = session.execute(
        select(Collection.index_version, Collection.embedder).where(Collection.id == collection_id)
    ).one()
    return int(row[0]), str(row[1])


# Uploads and jobs -----------------------------------------------------------------------------


def create_ingest_job(
    session: Session,
    collection: Collection,
    files: Iterable[UploadedFile],
    errors: list[dict[str, Any]],
) -> tuple[Job, list[UploadOutcome]]:
    """Record an upload: one job, a queued document per new content hash.

    A file whose sha256 is already in the collection (or earlier in the same upload) is reported
    `duplicate` with the existing document's id. Concurrent uploads of the same bytes race on the
    (collection_id, sha256) unique constraint; the loser reports `duplicate`.
    """
    job = Job(kind="ingest", collection_id=collection.id, errors=list(errors))
    session.add(job)
    session.flush()
    outcomes: list[UploadOutcome] = []
    for upload in files:
        existing = _document_by_hash(session, collection.id, upload.sha256)
        if existing is not None:
            outcomes.append(UploadOutcome(existing, upload.filename, "duplicate"))
            continue
        document = Document(
            collection_id=collection.id,
            job_id=job.id,
            filename=upload.filename,
            media_type=upload.media_type,
            sha256=upload.sha256,
            size_bytes=len(upload.data),
        )
        try:
            with session.begin_nested():
                session.add(document)
                session.flush()
                session.add(DocumentBlob(document_id=document.id, data=upload.data))
                session.flush()
        except IntegrityError:
            winner = _document_by_hash(session, collection.id, upload.sha256)
            outcomes.append(UploadOutcome(winner or "", upload.filename, "duplicate"))
            continue
        outcomes.append(UploadOutcome(document.id, upload.filename, "queued"))
    job.total = sum(1 for o in outcomes if o.status == "queued")
    if job.total == 0:
        # Nothing to embed: the job is over as soon as it exists.
        job.status = JobStatus.FAILED if job.errors else JobStatus.SUCCEEDED
        job.finished_at = utcnow()
    return job, outcomes


def withdraw_upload(session: Session, job_id: str, document_ids: Sequence[str]) -> None:
    """Undo an upload whose tasks could not be sent: delete its still-queued documents, and the
    job unless some of its documents are already being processed."""
    if document_ids:
        session.execute(
            delete(Document).where(
                Document.id.in_(list(document_ids)), Document.status == DocumentStatus.QUEUED
            )
        )
    remaining = session.scalar(select(func.count()).where(Document.job_id == job_id))
    if not remaining:
        session.execute(delete(Job).where(Job.id == job_id))


def _document_by_hash(session: Session, collection_id: str, sha256: str) -> str | None:
    return session.scalar(
        select(Document.id).where(
            Document.collection_id == collection_id, Document.sha256 == sha256
        )
    )


def get_job(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise RagError("job_not_found", f"job {job_id!r} does not exist")
    return job


def job_errors(session: Session, job: Job) -> list[dict[str, Any]]:
    """Upload-time errors plus the failed documents of the job."""
    failed = session.execute(
        select(Document.id, Document.filename, Document.error)
        .where(Document.job_id == job.id, Document.status == DocumentStatus.FAILED)
        .order_by(Document.created_at)
    ).all()
    return list(job.errors) + [
        {"document_id": doc_id, "filename": filename, "message": error or "failed"}
        for doc_id, filename, error in failed
    ]


def refresh_ingest_job(session: Session, job_id: str) -> None:
    """Recompute an ingest job's progress and status from its documents.

    The job row is locked so that workers finishing documents at the same time serialize here
    and the last one sees every other's result.
    """
    job = session.scalar(select(Job).where(Job.id == job_id).with_for_update())
    if job is None or job.status in JobStatus.TERMINAL:
        return
    rows = session.execute(
        select(Document.status, func.count())
        .where(Document.job_id == job_id)
        .group_by(Document.status)
    ).all()
    by_status = {status: int(count) for status, count in rows}
    done = sum(by_status.get(s, 0) for s in DocumentStatus.TERMINAL)
    job.done = done
    if job.started_at is None:
        job.started_at = utcnow()
    if done >= job.total:
        succeeded = by_status.get(DocumentStatus.READY, 0)
        job.status = JobStatus.SUCCEEDED if succeeded or not job.total else JobStatus.FAILED
        job.finished_at = utcnow()
    else:
        job.status = JobStatus.RUNNING


def unfinished_documents(session: Session) -> list[str]:
    """Documents queued or interrupted mid-processing, oldest first (for re-enqueueing)."""
    return list(
        session.scalars(
            select(Document.id)
            .where(Document.status.in_([DocumentStatus.QUEUED, DocumentStatus.PROCESSING]))
            .order_by(Document.created_at)
        )
    )


# Documents ------------------------------------------------------------------------------------


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
    result = session.execute(
        delete(Document).where(Document.id == document_id, Document.collection_id == collection.id)
    )
    if getattr(result, "rowcount", 0) == 0:
        raise RagError(
            "document_not_found", f"document {document_id!r} is not in {collection.name!r}"
        )
    bump_index_version(session, collection.id)


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
) -> None:
    """Insert a document's chunks and their vectors and mark it ready, in the caller's transaction.

    Raises IntegrityError if the chunks exist already (a re-delivered task): the caller rolls back.
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
    bump_index_version(session, document.collection_id)


def document_texts(session: Session, document_ids: Iterable[str]) -> dict[str, str]:
    """Extracted texts of ready documents, by id (citations are verified against these)."""
    rows = session.execute(
        select(Document.id, Document.text).where(
            Document.id.in_(list(document_ids)), Document.status == DocumentStatus.READY
        )
    ).all()
    return {doc_id: text for doc_id, text in rows if text is not None}


# Index data -----------------------------------------------------------------------------------


def embedding_ids(session: Session, collection_id: str, embedder: str) -> np.ndarray:
    ids = session.scalars(
        select(Embedding.chunk_id).where(
            Embedding.collection_id == collection_id, Embedding.embedder == embedder
        )
    ).all()
    return np.asarray(ids, dtype=np.int64)


def embedding_vectors(
    session: Session, collection_id: str, embedder: str, ids: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of a collection's embeddings for one embedder; all of them, or `ids`."""
    query = select(Embedding.chunk_id, Embedding.vector).where(
        Embedding.collection_id == collection_id, Embedding.embedder == embedder
    )
    out_ids: list[int] = []
    blobs: list[bytes] = []
    batches = [None] if ids is None else [ids[i : i + 5000] for i in range(0, len(ids), 5000)]
    for batch in batches:
        batch_query = query if batch is None else query.where(Embedding.chunk_id.in_(batch))
        for chunk_id, vector in session.execute(batch_query):
            out_ids.append(int(chunk_id))
            blobs.append(vector)
    if not blobs:
        return np.empty(0, dtype=np.int64), np.empty((0, 0), dtype=np.float32)
    matrix = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), -1)
    return np.asarray(out_ids, dtype=np.int64), matrix.astype(np.float32, copy=False)


def chunk_rows(session: Session, chunk_ids: Sequence[int]) -> dict[int, ChunkRow]:
    """Chunks by id, only those whose document is still ready (deleted ones are simply absent)."""
    if not chunk_ids:
        return {}
    rows = session.execute(
        select(
            Chunk.id,
            Chunk.document_id,
            Document.filename,
            Chunk.text,
            Chunk.start_offset,
            Chunk.end_offset,
        )
        .join(Document, Document.id == Chunk.document_id)
        .where(Chunk.id.in_(list(chunk_ids)), Document.status == DocumentStatus.READY)
    ).all()
    return {int(r[0]): ChunkRow(int(r[0]), r[1], r[2], r[3], int(r[4]), int(r[5])) for r in rows}


# Embedder migrations --------------------------------------------------------------------------

MIGRATION = "embedder_migration"


def active_migration(session: Session, collection_id: str) -> Job | None:
    """The collection's queued or running embedder migration, if any."""
    return session.scalar(
        select(Job).where(
            Job.collection_id == collection_id,
            Job.kind == MIGRATION,
            Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]),
        )
    )


def active_migrations(session: Session) -> list[tuple[str, str, str]]:
    """(job id, collection id, target embedder) of every unfinished migration, oldest first."""
    rows = session.execute(
        select(Job.id, Job.collection_id, Job.params)
        .where(Job.kind == MIGRATION, Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
        .order_by(Job.created_at)
    ).all()
    return [
        (job_id, collection_id, str(params["embedder"])) for job_id, collection_id, params in rows
    ]


def create_migration_job(
    session: Session, collection_name: str, embedder: str, *, rollback: bool = False
) -> Job:
    """Record a migration of a collection to `embedder`; at most one runs per collection.

    The collection row is locked so two concurrent requests cannot both start one.
    """
    collection = get_collection(session, collection_name, for_update=True)
    running = active_migration(session, collection.id)
    if running is not None:
        raise RagError(
            "migration_running",
            f"collection {collection_name!r} is already migrating "
            f"(job {running.id} to {running.params.get('embedder')!r})",
        )
    if embedder == collection.embedder:
        raise RagError(
            "embedder_active", f"collection {collection_name!r} already uses {embedder!r}"
        )
    job = Job(
        kind=MIGRATION,
        collection_id=collection.id,
        params={"embedder": embedder, "from": collection.embedder, "rollback": rollback},
        total=collection_counts(session, collection.id)[1],
    )
    session.add(job)
    session.flush()
    return job


def lock_job(session: Session, job_id: str) -> Job | None:
    _take_write_lock(session)
    return session.scalar(select(Job).where(Job.id == job_id).with_for_update())


def cancel_job(session: Session, job_id: str) -> Job:
    """Mark a job cancelled; a finished job is left as it is (and returned)."""
    job = lock_job(session, job_id)
    if job is None:
        raise RagError("job_not_found", f"job {job_id!r} does not exist")
    if job.status not in JobStatus.TERMINAL:
        job.status = JobStatus.CANCELLED
        job.finished_at = utcnow()
    return job


def _missing_embedding(collection_id: str, embedder: str) -> Any:
    has_vector = (
        select(Embedding.chunk_id)
        .where(Embedding.chunk_id == Chunk.id, Embedding.embedder == embedder)
        .exists()
    )
    return (Chunk.collection_id == collection_id) & ~has_vector


def chunks_missing_embedding(
    session: Session,
    collection_id: str,
    embedder: str,
    *,
    id_range: tuple[int, int] | None = None,
    limit: int | None = None,
) -> list[tuple[int, str]]:
    """(chunk id, text) of the collection's chunks with no vector from `embedder`, by id."""
    query = select(Chunk.id, Chunk.text).where(_missing_embedding(collection_id, embedder))
    if id_range is not None:
        query = query.where(Chunk.id.between(*id_range))
    rows = session.execute(query.order_by(Chunk.id).limit(limit)).all()
    return [(int(chunk_id), text) for chunk_id, text in rows]


def missing_embedding_ids(session: Session, collection_id: str, embedder: str) -> list[int]:
    return list(
        session.scalars(
            select(Chunk.id).where(_missing_embedding(collection_id, embedder)).order_by(Chunk.id)
        )
    )


def count_missing_embeddings(
    session: Session, collection_id: str, embedder: str, *, max_id: int | None = None
) -> int:
    query = (
        select(func.count()).select_from(Chunk).where(_missing_embedding(collection_id, embedder))
    )
    if max_id is not None:
        query = query.where(Chunk.id <= max_id)
    return int(session.scalar(query) or 0)


def insert_embeddings(
    session: Session, collection_id: str, embedder: str, ids: Sequence[int], vectors: np.ndarray
) -> None:
    """Store vectors; a (chunk, embedder) pair stored already is left as it is.

    Safe for a re-delivered or concurrent batch: the primary key keeps one row per pair.
    Raises IntegrityError if a chunk was deleted meanwhile (the caller retries the batch).
    """
    if not ids:
        return
    vectors = np.ascontiguousarray(vectors, dtype="<f4")
    rows = [
        {
            "chunk_id": chunk_id,
            "embedder": embedder,
            "collection_id": collection_id,
            "vector": vectors[i].tobytes(),
        }
        for i, chunk_id in enumerate(ids)
    ]
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(pg_insert(Embedding).on_conflict_do_nothing(), rows)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        session.execute(sqlite_insert(Embedding).on_conflict_do_nothing(), rows)


def count_embeddings(session: Session, collection_id: str, embedder: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Embedding)
            .where(Embedding.collection_id == collection_id, Embedding.embedder == embedder)
        )
        or 0
    )


def max_chunk_id(session: Session, collection_id: str) -> int:
    return int(
        session.scalar(select(func.max(Chunk.id)).where(Chunk.collection_id == collection_id)) or 0
    )


def lock_collection_by_id(session: Session, collection_id: str) -> Collection:
    """Lock a collection's row (see `get_collection`); the embedder switch, ingestion's store
    step and deletes serialize here."""
    _take_write_lock(session)
    collection = session.scalar(
        select(Collection).where(Collection.id == collection_id).with_for_update(key_share=True)
    )
    if collection is None:
        raise RagError("collection_not_found", f"collection {collection_id!r} does not exist")
    return collection


def switch_embedder(collection: Collection, embedder: str) -> None:
    """Make `embedder` the collection's active one, keeping the old one for a rollback.

    The caller holds the collection's row lock. The index_version bump makes every API
    process catch up and every cached answer computed with the old embedder unreachable.
    """
    collection.previous_embedder = collection.embedder
    collection.embedder = embedder
    collection.index_version = collection.index_version + 1


def prune_embeddings(session: Session, collection_name: str, embedder: str) -> tuple[str, int]:
    """Delete a collection's vectors from an embedder it no longer serves.

    Returns (collection id, vectors deleted).
    """
    collection = get_collection(session, collection_name, for_update=True)
    if embedder == collection.embedder:
        raise RagError("embedder_active", f"{embedder!r} is the active embedder of the collection")
    running = active_migration(session, collection.id)
    if running is not None and running.params.get("embedder") == embedder:
        raise RagError("migration_running", f"a migration to {embedder!r} is running")
    result = session.execute(
        delete(Embedding).where(
            Embedding.collection_id == collection.id, Embedding.embedder == embedder
        )
    )
    if collection.previous_embedder == embedder:
        collection.previous_embedder = None
    return collection.id, int(getattr(result, "rowcount", 0) or 0)
