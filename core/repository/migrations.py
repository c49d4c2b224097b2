"""Embedder migrations: jobs, missing vectors, inserts, the switch, pruning."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.errors import RagError
from core.models import (
    Chunk,
    Collection,
    Embedding,
    Job,
    JobStatus,
    utcnow,
)
from core.repository.collections import collection_counts, get_collection, take_write_lock

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
    take_write_lock(session)
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
