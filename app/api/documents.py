"""Ingestion (admin) and document listing."""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Annotated, Any

from fastapi import APIRouter, File, Response, UploadFile, status

from app.deps import ServicesDep
from app.schemas import (
    DocumentDetail,
    DocumentList,
    DocumentOut,
    UploadAccepted,
    UploadedDocument,
)
from core import repository
from core.errors import DocumentError, RagError
from core.models import Document
from core.settings import IngestSettings
from retrieval.parsing import detect_media_type

router = APIRouter(tags=["documents"])

_READ_BLOCK = 1 << 20


@router.post("/admin/v1/collections/{name}/documents", status_code=status.HTTP_202_ACCEPTED)
async def upload_documents(
    name: str, files: Annotated[list[UploadFile], File()], services: ServicesDep
) -> UploadAccepted:
    """Accept files for ingestion; returns at once with a job to poll."""
    limits = services.settings.ingest
    if len(files) > limits.max_files_per_request:
        raise RagError(
            "file_too_large",
            f"{len(files)} files in one request; the limit is {limits.max_files_per_request}",
        )
    uploads: list[repository.UploadedFile] = []
    errors: list[dict[str, Any]] = []
    for upload in files:
        filename = clean_filename(upload.filename)
        data = await read_limited(upload, filename, limits)
        if not data.strip():
            errors.append({"filename": filename, "message": "the file is empty"})
            continue
        try:
            media_type = detect_media_type(filename, data)
        except DocumentError as exc:
            raise RagError("unsupported_media_type", f"{filename}: {exc.message}") from exc
        uploads.append(
            repository.UploadedFile(filename, media_type, hashlib.sha256(data).hexdigest(), data)
        )
    with services.db.session() as session:
        collection = repository.get_collection(session, name)
        job, outcomes = repository.create_ingest_job(session, collection, uploads, errors)
        job_id = job.id
    queued = [o.document_id for o in outcomes if o.status == "queued"]
    try:
        services.queue.enqueue_documents(queued)
    except RagError:
        # The broker is down (503): take the upload back, so that the client's retry is a fresh
        # upload and not a "duplicate" of documents that no task would ever process.
        with services.db.session() as session:
            repository.withdraw_upload(session, job_id, queued)
        raise
    return UploadAccepted(
        job_id=job_id,
        documents=[
            UploadedDocument(document_id=o.document_id, filename=o.filename, status=o.status)
            for o in outcomes
        ],
        errors=errors,
    )


def clean_filename(raw: str | None) -> str:
    """Keep the client's filename as metadata: printable, bounded; it never becomes a path."""
    name = "".join(ch for ch in (raw or "") if unicodedata.category(ch)[0] != "C")
    return name.strip()[:255] or "unnamed"


async def read_limited(upload: UploadFile, filename: str, limits: IngestSettings) -> bytes:
    """Read an upload fully, or fail with 413 once it passes the size limit."""
    parts: list[bytes] = []
    size = 0
    while block := await upload.read(_READ_BLOCK):
        size += len(block)
        if size > limits.max_file_bytes:
            raise RagError(
                "file_too_large",
                f"{filename} is larger than the limit of {limits.max_file_bytes} bytes",
            )
        parts.append(block)
    return b"".join(parts)


def document_out(doc: Document, chunks: int) -> DocumentOut:
    return DocumentOut(
        document_id=doc.id,
        filename=doc.filename,
        status=doc.status,
        chunks=chunks,
        sha256=doc.sha256,
        media_type=doc.media_type,
        error=doc.error,
    )


@router.get("/v1/collections/{name}/documents")
def list_documents(name: str, services: ServicesDep) -> DocumentList:
    """The collection's documents with their status and chunk counts."""
    with services.db.session() as session:
        collection = repository.get_collection(session, name)
        rows = repository.list_documents(session, collection.id)
        return DocumentList(documents=[document_out(doc, chunks) for doc, chunks in rows])


@router.get("/v1/collections/{name}/documents/{document_id}")
def get_document(name: str, document_id: str, services: ServicesDep) -> DocumentDetail:
    """One document with its extracted text (what hit and citation offsets point into)."""
    with services.db.session() as session:
        collection = repository.get_collection(session, name)
        doc, chunks = repository.get_document(session, collection, document_id)
        return DocumentDetail(**document_out(doc, chunks).model_dump(), text=doc.text)


@router.delete(
    "/admin/v1/collections/{name}/documents/{document_id}",
    status_code=status.HTTP_204_NO_CONTENT,
)
def delete_document(name: str, document_id: str, services: ServicesDep) -> Response:
    """Delete a document; its chunks never appear in results afterwards."""
    with services.db.session() as session:
        collection = repository.get_collection(session, name)
        repository.delete_document(session, collection, document_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
