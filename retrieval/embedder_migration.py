"""Embedder migration: re-embed a collection's stored chunk texts with another embedder, verify
the new index, then switch the collection to it in one transaction.

The work is split so that many workers can share it and any of them can die:
- `plan` lists the chunks that still lack a vector from the target embedder and cuts them into
  id ranges, one batch task each. Planning again (a resumed job) only plans what is missing.
- `run_batch` embeds the chunks of one range that still lack a vector and inserts them with
  "on conflict do nothing": a re-delivered or concurrent batch never stores a chunk twice.
- `finalize` catches up with chunks uploaded since planning, verifies the new vectors (one per
  chunk, and a sample of chunks finds itself as the top hit), and switches under the
  collection's row lock, embedding what arrived in the last moment while holding it.

Uploads during a migration are embedded with the old embedder by ingestion and caught up by
`finalize`; ingestion re-checks the active embedder under the same row lock, so a document
stored after the switch is embedded with the new one. Deleted chunks take their vectors with
them (foreign key cascade). The old embedder's vectors are kept for a rollback until pruned.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import repository
from core.db import Database
from core.foreground import encode_in_background
from core.models import Job, JobStatus, utcnow
from core.settings import IndexSettings
from retrieval.embedders import EmbedderPool
from retrieval.faiss_index import build_index

log = logging.getLogger(__name__)

VERIFY_SAMPLE = 20


@dataclass(frozen=True)
class Plan:
    ranges: list[tuple[int, int]]
    """Inclusive chunk-id ranges, one batch task each; empty when only finalizing is left."""


class VerificationError(Exception):
    """The new vectors do not make a complete, working index; the old one keeps serving."""


def plan(db: Database, job_id: str, batch_size: int) -> Plan | None:
    """Start (or resume) a migration job; None if it is over or cancelled."""
    with db.session() as session:
        job = repository.lock_job(session, job_id)
        if job is None or job.status in JobStatus.TERMINAL:
            return None
        target = _target(job)
        missing = repository.missing_embedding_ids(session, job.collection_id, target)
        job.status = JobStatus.RUNNING
        job.started_at = job.started_at or utcnow()
        job.params = {**job.params, "planned_max_id": missing[-1] if missing else 0}
        _update_progress(session, job)
    ranges = [
        (missing[i], missing[min(i + batch_size, len(missing)) - 1])
        for i in range(0, len(missing), batch_size)
    ]
    log.info(
        "migration %s to %s: %d chunks in %d batches", job_id, target, len(missing), len(ranges)
    )
    return Plan(ranges)


def run_batch(db: Database, embedders: EmbedderPool, job_id: str, lo: int, hi: int) -> bool:
    """Embed the chunks in [lo, hi] that lack a target vector.

    Returns True when the planned work is complete (the caller then enqueues `finalize`).
    Two batches finishing together may both return True: finalize is safe to run twice, and a
    once-only flag could be lost with a worker killed between setting it and enqueueing.
    """
    with db.session() as session:
        job = repository.get_job(session, job_id)
        if job.status in JobStatus.TERMINAL:
            return False
        collection_id, target = job.collection_id, _target(job)
    _embed_missing(db, embedders, collection_id, target, id_range=(lo, hi))
    with db.session() as session:
        locked = repository.lock_job(session, job_id)
        if locked is None or locked.status in JobStatus.TERMINAL:
            return False
        job = locked
        _update_progress(session, job)
        planned_max = int(job.params.get("planned_max_id", 0))
        left = repository.count_missing_embeddings(
            session, collection_id, target, max_id=planned_max
        )
        return left == 0


def finalize(
    db: Database,
    embedders: EmbedderPool,
    index_settings: IndexSettings,
    job_id: str,
    batch_size: int,
) -> str:
    """Catch up, verify and switch. Returns the job's final status (or its current one)."""
    with db.session() as session:
        job = repository.get_job(session, job_id)
        if job.status in JobStatus.TERMINAL:
            return job.status
        collection_id, target = job.collection_id, _target(job)
    # Chunks uploaded since planning; loops until none are missing (uploads are finite).
    while _embed_missing(db, embedders, collection_id, target, limit=batch_size):
        if (status := _status(db, job_id)) in JobStatus.TERMINAL:
            return status
    with db.session() as session:
        # Chunks stored after this point are embedded under the lock below, not verified here.
        caught_up_to = repository.max_chunk_id(session, collection_id)
    try:
        _verify(db, embedders, index_settings, collection_id, target, caught_up_to)
    except VerificationError as exc:
        log.error("migration %s failed verification: %s", job_id, exc)
        return _finish(db, job_id, JobStatus.FAILED, str(exc))
    with db.session() as session:
        collection = repository.lock_collection_by_id(session, collection_id)
        locked = repository.lock_job(session, job_id)
        if locked is None or locked.status in JobStatus.TERMINAL:
            return locked.status if locked else JobStatus.CANCELLED
        job = locked
        # Anything stored between the verification and this lock: few chunks, embedded while
        # holding it so that nothing can slip in between this check and the switch.
        late = repository.chunks_missing_embedding(session, collection_id, target)
        if late:
            vectors = embedders.get(target).embed_documents([text for _, text in late])
            repository.insert_embeddings(
                session, collection_id, target, [i for i, _ in late], vectors
            )
        repository.switch_embedder(collection, target)
        job.status = JobStatus.SUCCEEDED
        job.finished_at = utcnow()
        _update_progress(session, job)
        log.info(
            "collection %s switched from %s to %s at index version %d",
            collection.name,
            collection.previous_embedder,
            target,
            collection.index_version,
        )
        return job.status


def _embed_missing(
    db: Database,
    embedders: EmbedderPool,
    collection_id: str,
    target: str,
    *,
    id_range: tuple[int, int] | None = None,
    limit: int | None = None,
) -> int:
    """Embed and store chunks lacking a target vector; returns how many were embedded."""
    embedder = embedders.get(target)
    for attempt in range(3):
        with db.session() as session:
            rows = repository.chunks_missing_embedding(
                session, collection_id, target, id_range=id_range, limit=limit
            )
        if not rows:
            return 0
        vectors = encode_in_background(embedder.embed_documents, [text for _, text in rows])
        try:
            with db.session() as session:
                repository.insert_embeddings(
                    session, collection_id, target, [i for i, _ in rows], vectors
                )
        except IntegrityError:
            # A chunk was deleted while we embedded it: select again without it.
            log.info("chunks deleted during a migration batch; retrying (%d)", attempt + 1)
            continue
        return len(rows)
    raise RuntimeError("chunks kept disappearing during a migration batch")


def _verify(
    db: Database,
    embedders: EmbedderPool,
    index_settings: IndexSettings,
    collection_id: str,
    target: str,
    caught_up_to: int,
) -> None:
    """A vector for every chunk up to `caught_up_to`, and sampled chunks find themselves
    through a fresh index. (Deletes meanwhile take chunk and vector together.)"""
    with db.session() as session:
        lacking = repository.count_missing_embeddings(
            session, collection_id, target, max_id=caught_up_to
        )
        ids, vectors = repository.embedding_vectors(session, collection_id, target)
        sample_ids = random.sample(ids.tolist(), min(VERIFY_SAMPLE, len(ids)))
        texts = {
            row.chunk_id: row.text for row in repository.chunk_rows(session, sample_ids).values()
        }
    if lacking:
        raise VerificationError(f"{lacking} chunks have no {target} vector")
    if len(ids) == 0:
        return
    embedder = embedders.get(target)
    if vectors.shape[1] != embedder.dim:
        raise VerificationError(f"vectors have {vectors.shape[1]} dimensions, not {embedder.dim}")
    index = build_index(index_settings, ids, vectors, vectors.shape[1])
    sample = list(texts.items())
    queries = embedder.embed_documents([text for _, text in sample])
    lost = []
    for (chunk_id, _), query in zip(sample, queries, strict=True):
        scores, hits = index.search(query, 5)
        # Chunks with identical text tie for the top: accept the chunk anywhere in the tie.
        tied = hits[scores >= scores[0] - 1e-4]
        if chunk_id not in tied:
            lost.append(chunk_id)
    if lost:
        raise VerificationError(
            f"{len(lost)} of {len(sample)} sampled chunks do not find themselves "
            f"as the top hit (e.g. chunk {lost[0]})"
        )


def _update_progress(session: Session, job: Job) -> None:
    _, chunks = repository.collection_counts(session, job.collection_id)
    embedded = repository.count_embeddings(session, job.collection_id, _target(job))
    job.total = chunks
    job.done = min(embedded, chunks)


def fail(db: Database, job_id: str, message: str) -> str:
    """Mark a migration failed (a task gave up); the collection keeps its current embedder."""
    return _finish(db, job_id, JobStatus.FAILED, message)


def _finish(db: Database, job_id: str, status: str, message: str) -> str:
    with db.session() as session:
        job = repository.lock_job(session, job_id)
        if job is None or job.status in JobStatus.TERMINAL:
            return job.status if job else status
        job.status = status
        job.errors = [*job.errors, {"message": message}]
        job.finished_at = utcnow()
        return status


def _status(db: Database, job_id: str) -> str:
    with db.session() as session:
        return repository.get_job(session, job_id).status


def _target(job: Job) -> str:
    return str(job.params["embedder"])
