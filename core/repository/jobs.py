"""Uploads and jobs: ingest jobs, their progress and errors, unfinished work."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import RagError
from core.models import (
    Collection,
    Document,
    DocumentBlob,
    DocumentStatus,
    Job,
    JobStatus,
    utcnow,
)
from core.repository.values import UploadedFile, UploadOutcome


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
