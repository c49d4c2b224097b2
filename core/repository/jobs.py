"""Uploads and jobs: ingest jobs, their progress and errors, unfinished work."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
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
    *,
    replacing: str | None = None,
    replace_same_name: bool = False,
) -> tuple[Job, list[UploadOutcome]]:
    """Record an upload: one job, a queued document per new content hash.

    A file whose sha256 is already in the collection (or earlier in the same upload) is reported
    `duplicate` with the existing document's id. Concurrent uploads of the same bytes race on the
    (collection_id, sha256) unique constraint; the loser reports `duplicate`.

    `replacing`: the id of a document the (single) file replaces; the new document takes that
    id (see `replace_document`). Every file, refused ones included, is recorded in the job's
    `params["files"]` for the per-file status of `job_files`.

    `replace_same_name`: a queued file replaces the collection's documents of the same filename
    (and an earlier file of that name in this upload) once it is ready: their ids are its
    outcome's `replaces`, recorded in `params["files"]` for `store_chunks` to delete them in the
    transaction that makes it searchable (see `retire_replaced`).
    """
    files = list(files)
    job = Job(kind="ingest", collection_id=collection.id, errors=list(errors))
    session.add(job)
    session.flush()
    same_named = (
        _same_named_documents(session, collection.id, {f.filename for f in files})
        if replace_same_name
        else {}
    )
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
            original_filename=upload.original_filename,
            media_type=upload.media_type,
            sha256=upload.sha256,
            size_bytes=len(upload.data),
        )
        if replacing is not None:
            document.id = replacing
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
        older = same_named.setdefault(upload.filename, []) if replace_same_name else []
        outcomes.append(UploadOutcome(document.id, upload.filename, "queued", tuple(older)))
        older.append(document.id)  # a later file of the same name replaces this one
    job.total = sum(1 for o in outcomes if o.status == "queued")
    job.params = {
        "files": [
            {"document_id": o.document_id, "filename": o.filename, "status": o.status}
            | ({"replaces": list(o.replaces)} if o.replaces else {})
            for o in outcomes
        ]
        + [
            {
                "document_id": None,
                "filename": e.get("filename", "?"),
                "status": "refused",
                "error": e.get("message"),
            }
            for e in errors
        ]
    }
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


def _same_named_documents(
    session: Session, collection_id: str, filenames: Iterable[str]
) -> dict[str, list[str]]:
    """The ids of the collection's documents named each of `filenames`, oldest first (names
    without a document are left out). Any status: a failed or queued version is replaced too."""
    names = list(set(filenames))
    if not names:
        return {}
    rows = session.execute(
        select(Document.filename, Document.id)
        .where(Document.collection_id == collection_id, Document.filename.in_(names))
        .order_by(Document.created_at, Document.id)
    ).all()
    found: dict[str, list[str]] = {}
    for filename, document_id in rows:
        found.setdefault(filename, []).append(document_id)
    return found


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


def job_files(session: Session, job: Job) -> list[dict[str, Any]] | None:
    """Every uploaded file of an ingest job with its status now: a queued document's status
    is read from the document (queued, processing, ready, failed; deleted once gone);
    duplicates and refused files stay as they were recorded. None for other kinds of job."""
    if job.kind != "ingest":
        return None
    recorded: list[dict[str, Any]] = list((job.params or {}).get("files", []))
    if not recorded:
        # A job recorded before per-file status existed: its own documents are all we know.
        recorded = [
            {"document_id": doc_id, "filename": filename, "status": "queued"}
            for doc_id, filename in session.execute(
                select(Document.id, Document.filename)
                .where(Document.job_id == job.id)
                .order_by(Document.created_at)
            )
        ]
    ids = [f["document_id"] for f in recorded if f["status"] == "queued"]
    current = {
        doc_id: (status, error)
        for doc_id, status, error in session.execute(
            select(Document.id, Document.status, Document.error).where(
                Document.id.in_(ids), Document.job_id == job.id
            )
        )
    }
    files = []
    for entry in recorded:
        entry = {"error": None, **entry}
        if entry["status"] == "queued":
            status, error = current.get(entry["document_id"], ("deleted", None))
            entry.update(status=status, error=error)
        files.append(entry)
    return files


def list_jobs(
    session: Session,
    *,
    collection_id: str | None = None,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Job], str | None]:
    """Jobs newest first, filtered; at most `limit`, and the cursor of the next page (None on
    the last one). The cursor is the (created_at, id) of the page's last job: a keyset, so
    jobs created while a client pages through never shift or repeat entries.

    Raises RagError("validation_error") for a cursor this function did not make.
    """
    query = select(Job)
    if collection_id is not None:
        query = query.where(Job.collection_id == collection_id)
    if status is not None:
        query = query.where(Job.status == status)
    if kind is not None:
        query = query.where(Job.kind == kind)
    if cursor is not None:
        created_at, job_id = _decode_cursor(cursor)
        query = query.where(
            or_(Job.created_at < created_at, and_(Job.created_at == created_at, Job.id < job_id))
        )
    jobs = list(
        session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1))
    )
    if len(jobs) <= limit:
        return jobs, None
    last = jobs[limit - 1]
    return jobs[:limit], _encode_cursor(last.created_at, last.id)


def _encode_cursor(created_at: datetime, job_id: str) -> str:
    raw = f"{created_at.isoformat()}|{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, job_id = raw.split("|", 1)
        return datetime.fromisoformat(created_at), job_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise RagError(
            "validation_error", "cursor is not one this service handed out; start without it"
        ) from None


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


def start_ingest_jobs(session: Session, job_ids: Iterable[str | None]) -> None:
    """Mark queued ingest jobs running: a worker has claimed one of their documents. (A job
    says `running` as soon as any of its files is `processing`.)"""
    ids = sorted({j for j in job_ids if j is not None})
    if ids:
        session.execute(
            update(Job)
            .where(Job.id.in_(ids), Job.status == JobStatus.QUEUED)
            .values(status=JobStatus.RUNNING, started_at=utcnow())
        )


def jobs_ahead(session: Session, job: Job, *, collections_take_turns: bool) -> int | None:
    """How many uploads are served before a queued ingest job starts (None unless `job` is a
    queued ingest job): of the ingest jobs created before it and not ended,

    - `collections_take_turns` (the embedded worker: one task of each collection in turn,
      first in, first out within a collection): those of its own collection, plus one for each
      other collection that has any (each gets one turn first);
    - else (a broker's queue, first in, first out): all of them.
    """
    if job.kind != "ingest" or job.status != JobStatus.QUEUED:
        return None
    earlier = (
        select(Job.collection_id, func.count().label("jobs"))
        .where(
            Job.kind == "ingest",
            Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]),
            or_(
                Job.created_at < job.created_at,
                and_(Job.created_at == job.created_at, Job.id < job.id),
            ),
        )
        .group_by(Job.collection_id)
    )
    counts = {collection_id: int(n) for collection_id, n in session.execute(earlier)}
    if not collections_take_turns:
        return sum(counts.values())
    own = counts.pop(job.collection_id, 0)
    return own + len(counts)


def document_collection(session: Session, document_id: str) -> str | None:
    """The collection an uploaded document belongs to (None once it is gone)."""
    return session.scalar(select(Document.collection_id).where(Document.id == document_id))


def unfinished_documents(session: Session) -> list[list[str]]:
    """Documents queued or interrupted mid-processing (for re-enqueueing), one list per
    upload (job), oldest upload first, each in upload order."""
    rows = session.execute(
        select(Document.id, Document.job_id)
        .where(Document.status.in_([DocumentStatus.QUEUED, DocumentStatus.PROCESSING]))
        .order_by(Document.created_at, Document.id)
    ).all()
    by_job: dict[str | None, list[str]] = {}
    for document_id, job_id in rows:
        by_job.setdefault(job_id, []).append(document_id)
    return list(by_job.values())
