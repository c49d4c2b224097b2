"""Collections: create, look up, lock, count, index versions."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, false, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import RagError
from core.models import (
    Chunk,
    Collection,
    Document,
    DocumentStatus,
    Job,
    JobStatus,
)


def create_collection(
    session: Session, name: str, embedder: str, retrieval: str | None = None
) -> Collection:
    collection = Collection(name=name, embedder=embedder, retrieval=retrieval)
    session.add(collection)
    try:
        session.flush()
    except IntegrityError as exc:
        raise RagError("collection_exists", f"collection {name!r} already exists") from exc
    return collection


def take_write_lock(session: Session) -> None:
    """SQLite has no row locks, and pysqlite runs a SELECT outside any transaction: write first,
    so this transaction holds the database's write lock before it reads what it will act on."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(update(Collection).where(false()).values(index_version=0))


def get_collection(session: Session, name: str, *, for_update: bool = False) -> Collection:
    """A collection by name; `for_update` locks its row (FOR NO KEY UPDATE, so inserts that
    only reference the collection, such as uploads, are not held up)."""
    query = select(Collection).where(Collection.name == name)
    if for_update:
        take_write_lock(session)
        query = query.with_for_update(key_share=True)
    collection = session.scalar(query)
    if collection is None:
        raise RagError("collection_not_found", f"collection {name!r} does not exist")
    return collection


def collection_state(session: Session, name: str) -> tuple[str, int, str, str | None]:
    """(id, index_version, active embedder, retrieval mode) of a collection by name: four
    columns, no ORM object (searches and queries read this on every request the
    collection-state cache cannot answer)."""
    row = session.execute(
        select(
            Collection.id, Collection.index_version, Collection.embedder, Collection.retrieval
        ).where(Collection.name == name)
    ).one_or_none()
    if row is None:
        raise RagError("collection_not_found", f"collection {name!r} does not exist")
    return str(row[0]), int(row[1]), str(row[2]), row[3]


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


def document_status_counts(session: Session, collection_id: str) -> dict[str, int]:
    """How many of a collection's documents are in each status (queued, processing, ready,
    failed); a status no document is in is absent."""
    rows = session.execute(
        select(Document.status, func.count())
        .where(Document.collection_id == collection_id)
        .group_by(Document.status)
    ).all()
    return {str(status): int(count) for status, count in rows}


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


def lock_collection_by_id(session: Session, collection_id: str) -> Collection:
    """Lock a collection's row (see `get_collection`); the embedder switch, ingestion's store
    step and deletes serialize here."""
    take_write_lock(session)
    collection = session.scalar(
        select(Collection).where(Collection.id == collection_id).with_for_update(key_share=True)
    )
    if collection is None:
        raise RagError("collection_not_found", f"collection {collection_id!r} does not exist")
    return collection


def set_retrieval(session: Session, name: str, retrieval: str | None) -> Collection:
    """Set a collection's retrieval mode (None: the server default) and bump its version, so
    cached answers retrieved the old way are not served for it."""
    collection = get_collection(session, name, for_update=True)
    if collection.retrieval != retrieval:
        collection.retrieval = retrieval
        collection.index_version += 1
        session.flush()
    return collection


def delete_collection(session: Session, name: str) -> str:
    """Delete a collection and everything stored for it: documents and their bytes, chunks,
    vectors of every embedder, jobs. Returns its id (for the caller to drop derived state:
    FAISS indexes, snapshots, BM25 data).

    The row is locked first, so an ingestion store step or an embedder switch in flight either
    finishes before or finds the collection gone. Refused (409) while an embedder migration
    runs: cancel it first.
    """
    collection = get_collection(session, name, for_update=True)
    running = session.scalar(
        select(Job.id).where(
            Job.collection_id == collection.id,
            Job.kind == "embedder_migration",
            Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]),
        )
    )
    if running is not None:
        raise RagError(
            "migration_running",
            f"an embedder migration (job {running}) is running on {name!r}; cancel it with "
            f"POST /admin/v1/jobs/{running}/cancel, then delete the collection",
        )
    # Foreign keys cascade from here: documents, their blobs, chunks, embeddings, jobs.
    session.execute(delete(Collection).where(Collection.id == collection.id))
    return collection.id
