"""Ingestion (admin) and document listing."""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Response, UploadFile, status

from app.deps import ServicesDep
from app.openapi import error_responses
from app.schemas import (
    DocumentDetail,
    DocumentList,
    DocumentOut,
    FileType,
    FileTypeList,
    RefusedFile,
    UploadAccepted,
    UploadedDocument,
)
from app.services import Services
from core import repository
from core.errors import DocumentError, RagError
from core.models import Document
from core.settings import IngestSettings
from retrieval.parsing import SUPPORTED_MEDIA_TYPES, detect_media_type

router = APIRouter(tags=["documents"])

_READ_BLOCK = 1 << 20
# Stored filenames are bounded; a longer one keeps its extension and is kept in full aside.
MAX_FILENAME_CHARS = 255
_MAX_EXTENSION_CHARS = 16

OnExisting = Literal["replace", "keep"]


@router.post(
    "/admin/v1/collections/{name}/documents",
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(404, 413, 415, 422, 503),
)
async def upload_documents(
    name: str,
    files: Annotated[
        list[UploadFile],
        File(description="One or more files: " + ", ".join(SUPPORTED_MEDIA_TYPES) + "."),
    ],
    services: ServicesDep,
    on_existing: Annotated[
        OnExisting,
        Form(
            description="What a file does to the collection's documents of the same filename "
            "and other content: `replace` (default) swaps them for it once it is ready, in one "
            "transaction; `keep` keeps them beside it. The same bytes again are a `duplicate` "
            "either way."
        ),
    ] = "replace",
) -> UploadAccepted:
    """Accept files for ingestion; returns at once with a job to poll.

    Files that cannot be taken (empty, unsupported type, not text though named as text, over
    the size limit) are listed in `errors` and the rest are ingested; the request fails as a
    whole only when no file in it can be accepted. A new version of a file already in the
    collection (same filename) replaces the old one when it is ready, unless
    `on_existing=keep`.
    """
    uploads, refused = await read_uploads(files, services.settings.ingest)
    with services.db.session() as session:
        collection = repository.get_collection(session, name)
        job, outcomes = repository.create_ingest_job(
            session,
            collection,
            uploads,
            refused,
            replace_same_name=on_existing == "replace",
        )
        job_id = job.id
    return _enqueue(services, job_id, outcomes, refused)


@router.put(
    "/admin/v1/collections/{name}/documents/{document_id}",
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(404, 413, 415, 422, 503),
)
async def replace_document(
    name: str,
    document_id: str,
    file: Annotated[UploadFile, File(description="The new version of the document.")],
    services: ServicesDep,
) -> UploadAccepted:
    """Replace a document with a new version of it (same document id); returns a job to poll.

    The old version's chunks leave search at once; the new one's arrive when the job is done.
    Uploading the bytes the document already holds changes nothing (status `duplicate`).
    """
    uploads, refused = await read_uploads([file], services.settings.ingest)
    with services.db.session() as session:
        collection = repository.get_collection(session, name)
        replaced = repository.remove_for_replacement(
            session, collection, document_id, uploads[0].sha256
        )
        job, outcomes = repository.create_ingest_job(
            session, collection, uploads, refused, replacing=document_id if replaced else None
        )
        job_id = job.id
    return _enqueue(services, job_id, outcomes, refused, replaces=document_id)


def _enqueue(
    services: Services,
    job_id: str,
    outcomes: list[repository.UploadOutcome],
    refused: list[dict[str, Any]],
    replaces: str | None = None,
) -> UploadAccepted:
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
            UploadedDocument(
                document_id=o.document_id,
                filename=o.filename,
                status=o.status,
                replaces=list(o.replaces),
            )
            for o in outcomes
        ],
        errors=[RefusedFile(**e) for e in refused],
        replaces=replaces,
    )


async def read_uploads(
    files: list[UploadFile], limits: IngestSettings
) -> tuple[list[repository.UploadedFile], list[dict[str, Any]]]:
    """Read and check every file: (the acceptable ones, the refused ones with the reason).

    Raises RagError only when nothing can be accepted: too many files, or every file refused
    (with the first refusal's code, so a lone unsupported file is a 415, a lone big one a 413).
    """
    if len(files) > limits.max_files_per_request:
        raise RagError(
            "file_too_large",
            f"{len(files)} files in one request; the limit is {limits.max_files_per_request}",
        )
    uploads: list[repository.UploadedFile] = []
    refused: list[dict[str, Any]] = []
    for upload in files:
        original = printable_filename(upload.filename)
        filename = shorten_filename(original)
        try:
            data = await read_limited(upload, filename, limits)
            if not data.strip():
                raise DocumentError("empty_document", "the file is empty")
            media_type = detect_media_type(filename, data)
        except RagError as exc:
            refused.append({"filename": filename, "message": exc.message, "code": exc.code})
            continue
        uploads.append(
            repository.UploadedFile(
                filename,
                media_type,
                hashlib.sha256(data).hexdigest(),
                data,
                original_filename=original if original != filename else None,
            )
        )
    if not uploads:
        reasons = "; ".join(f"{r['filename']}: {r['message']}" for r in refused)
        raise RagError(refused[0]["code"], f"no file could be accepted — {reasons}")
    return uploads, refused


def printable_filename(raw: str | None) -> str:
    """The client's filename without control characters; "unnamed" when nothing is left."""
    name = "".join(ch for ch in (raw or "") if unicodedata.category(ch)[0] != "C")
    return name.strip() or "unnamed"


def shorten_filename(name: str, limit: int = MAX_FILENAME_CHARS) -> str:
    """`name` cut to `limit` characters, keeping its extension: "xxx….md", never "xxx"."""
    if len(name) <= limit:
        return name
    stem, dot, extension = name.rpartition(".")
    if dot and stem and 0 < len(extension) <= _MAX_EXTENSION_CHARS:
        return f"{stem[: limit - len(extension) - 2]}….{extension}"
    return name[: limit - 1] + "…"


def clean_filename(raw: str | None) -> str:
    """Keep the client's filename as metadata: printable, bounded; it never becomes a path."""
    return shorten_filename(printable_filename(raw))


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
        original_filename=doc.original_filename,
        status=doc.status,
        chunks=chunks,
        sha256=doc.sha256,
        media_type=doc.media_type,
        error=doc.error,
    )


@router.get("/v1/file-types")
def list_file_types() -> FileTypeList:
    """The file types an upload accepts, by extension (what the web page's drop zone lists)."""
    return FileTypeList(
        file_types=[
            FileType(extension=extension, media_type=media_type)
            for extension, media_type in SUPPORTED_MEDIA_TYPES.items()
        ]
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
