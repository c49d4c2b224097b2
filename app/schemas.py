"""Request and response models: the HTTP edge of ../shared/API.md.

The query's request and response are in app/query_schemas.py. Every field has a description
and every request model an example: /docs and /redoc are the
API's reference, and tests/unit/test_openapi.py walks the generated document to keep it so.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.settings import RetrievalMode

COLLECTION_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
COLLECTION_DESCRIPTION = "Collection name: 1-64 letters, digits, '_', '.', '-'."
# One cap for a search's query and a question: both are embedded as one query (the bundled
# embedder reads its first 256 word pieces, about 1,000-1,500 characters of English), and a
# question also goes into every step's prompt. 2,000 characters is a long paragraph.
QUERY_MAX_CHARS = 2000


def example_config(example: dict[str, Any], *, forbid: bool = False) -> ConfigDict:
    """Model config with an OpenAPI example; `forbid`: unknown fields are a 422 (write routes)."""
    config = ConfigDict(json_schema_extra={"examples": [example]})
    if forbid:
        config["extra"] = "forbid"
    return config


def not_blank(value: str) -> str:
    """Refuse text that is only whitespace: it would search or generate on nothing."""
    if not value.strip():
        raise ValueError("must contain more than whitespace")
    return value


RETRIEVAL_HELP = (
    "dense: nearest embeddings (FAISS); lexical: BM25 over chunk text; hybrid: both, fused by "
    "reciprocal rank."
)


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine code, e.g. `collection_not_found`.")
    message: str = Field(description="A sentence a person can act on.")


class ErrorResponse(BaseModel):
    """The body of every error response, whatever the status."""

    model_config = example_config(
        {"error": {"code": "collection_not_found", "message": "collection 'docs' does not exist"}}
    )

    error: ErrorBody = Field(description="What went wrong.")


class CollectionCreate(BaseModel):
    model_config = example_config({"name": "docs"}, forbid=True)

    name: str = Field(pattern=COLLECTION_NAME, description=COLLECTION_DESCRIPTION)
    embedder: str | None = Field(
        default=None,
        description="Embedder id (GET /v1/embedders lists them); the default when left out.",
    )
    retrieval: RetrievalMode | None = Field(
        default=None, description=RETRIEVAL_HELP + " Unset: the server default."
    )


class CollectionUpdate(BaseModel):
    model_config = example_config({"retrieval": "hybrid"}, forbid=True)

    retrieval: RetrievalMode | None = Field(
        description=RETRIEVAL_HELP + " null: follow the server default."
    )


class CollectionOut(BaseModel):
    name: str = Field(description="The collection's name.")
    embedder: str = Field(description="The embedder its index is built with.")
    documents: int = Field(description="Documents ready for search.")
    documents_queued: int = Field(
        default=0, description="Documents uploaded and waiting to be read (not searchable yet)."
    )
    documents_processing: int = Field(
        default=0, description="Documents being read and embedded now (not searchable yet)."
    )
    documents_failed: int = Field(
        default=0, description="Documents that could not be ingested (their `error` says why)."
    )
    chunks: int = Field(description="Chunks stored (each is one vector in the index).")
    index_version: int = Field(description="Bumped by every change to searchable content.")
    created_at: datetime = Field(description="When the collection was created (UTC).")
    previous_embedder: str | None = Field(
        default=None, description="The embedder served before the last switch (for rollback)."
    )
    retrieval: RetrievalMode = Field(
        description="The mode searches use unless a request names one."
    )
    retrieval_setting: RetrievalMode | None = Field(
        default=None, description="The collection's own setting; null: the server default."
    )


class CollectionList(BaseModel):
    collections: list[CollectionOut] = Field(description="All collections, by name.")


class UploadedDocument(BaseModel):
    document_id: str = Field(description="The document's id (an existing one for a duplicate).")
    filename: str = Field(description="The file's name as stored (at most 255 characters).")
    status: Literal["queued", "duplicate"] = Field(
        description="queued: it will be extracted and embedded; duplicate: the same bytes are "
        "already in the collection, nothing is re-embedded."
    )
    replaces: list[str] = Field(
        default_factory=list,
        description="The ids of the collection's documents of the same filename that this new "
        "version replaces (on_existing=replace): they stay searchable until it is ready, and "
        "are deleted in the transaction that makes it searchable. Empty when it replaces none.",
    )


class RefusedFile(BaseModel):
    filename: str = Field(description="The refused file's name.")
    message: str = Field(description="Why it was refused.")
    code: str | None = Field(
        default=None, description="Machine code: empty_document, unsupported_media_type, ..."
    )


class UploadAccepted(BaseModel):
    model_config = example_config(
        {
            "job_id": "4f1c2a9e0b7d4c3e8a6f5b2d1c0e9f8a",
            "documents": [
                {
                    "document_id": "9a8b7c6d5e4f40312a1b0c9d8e7f6a5b",
                    "filename": "guide.md",
                    "status": "queued",
                }
            ],
            "errors": [
                {
                    "filename": "logo.png",
                    "message": "unsupported file type (.png) and the content is not "
                    "recognisable; supported types: .txt, .md, ...",
                    "code": "unsupported_media_type",
                }
            ],
        }
    )

    job_id: str = Field(description="Poll GET /admin/v1/jobs/{job_id} for progress.")
    documents: list[UploadedDocument] = Field(description="The accepted files, in upload order.")
    errors: list[RefusedFile] = Field(
        default_factory=list,
        description="Files refused at upload (empty, unsupported type); the rest were accepted.",
    )
    replaces: str | None = Field(
        default=None, description="The document id a replacing upload (PUT) stands in for."
    )


class Progress(BaseModel):
    done: int = Field(description="Units finished (documents, or chunks for a migration).")
    total: int = Field(description="Units in all.")


class JobFile(BaseModel):
    document_id: str | None = Field(description="The document; null for a refused file.")
    filename: str = Field(description="The uploaded file's name.")
    status: Literal[
        "queued", "processing", "ready", "failed", "duplicate", "refused", "deleted"
    ] = Field(
        description="Where this file stands: queued/processing/ready/failed for a document of "
        "this job, duplicate when its bytes were already stored, refused at upload, deleted "
        "when its document was deleted since."
    )
    error: str | None = Field(default=None, description="Why it failed or was refused.")


class JobOut(BaseModel):
    job_id: str = Field(description="The job's id.")
    kind: str = Field(description="ingest or embedder_migration.")
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"] = Field(
        description="succeeded once every file is done and at least one is ready (or none "
        "needed work); failed when nothing succeeded."
    )
    collection: str | None = Field(default=None, description="The collection it works on.")
    progress: Progress = Field(description="How far it is.")
    ahead: int | None = Field(
        default=None,
        description="A queued ingest job: how many uploads are served before it starts. "
        "Embedded worker (collections take turns, one task each; uploads to one collection in "
        "order): the earlier unfinished uploads to its collection, plus one for each other "
        "collection that has any. Celery workers (first in, first out): every earlier "
        "unfinished upload. Null once it runs, and for other jobs.",
        examples=[2],
    )
    errors: list[dict[str, Any]] = Field(
        description="Per-file errors: {document_id?, filename?, message}."
    )
    files: list[JobFile] | None = Field(
        default=None, description="An ingest job's files, one entry per uploaded file."
    )
    created_at: datetime = Field(description="When the job was created (UTC).")
    finished_at: datetime | None = Field(default=None, description="When it ended (UTC).")


class JobList(BaseModel):
    jobs: list[JobOut] = Field(description="Jobs, newest first.")
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page."
    )


class DocumentOut(BaseModel):
    document_id: str = Field(description="The document's id.")
    filename: str = Field(description="The file's name as stored (at most 255 characters).")
    original_filename: str | None = Field(
        default=None, description="The full name as uploaded, when it had to be shortened."
    )
    status: str = Field(description="queued, processing, ready or failed.")
    chunks: int = Field(description="Chunks stored for it.")
    sha256: str = Field(description="SHA-256 of the uploaded bytes.")
    media_type: str = Field(description="The detected media type.")
    error: str | None = Field(default=None, description="Why it failed.")


class DocumentDetail(DocumentOut):
    text: str | None = Field(description="The extracted text that chunk offsets point into.")


class DocumentList(BaseModel):
    documents: list[DocumentOut] = Field(description="The collection's documents, oldest first.")


class FileType(BaseModel):
    extension: str = Field(description="A file-name extension an upload accepts, without the dot.")
    media_type: str = Field(description="The media type a file of that extension is read as.")


class FileTypeList(BaseModel):
    file_types: list[FileType] = Field(
        description="Every accepted extension, in the order retrieval/parsing.py lists them."
    )


class SearchRequest(BaseModel):
    model_config = example_config(
        {"collection": "docs", "query": "What does SMTP stand for?", "top_k": 5}, forbid=True
    )

    collection: str = Field(pattern=COLLECTION_NAME, description=COLLECTION_DESCRIPTION)
    query: str = Field(
        min_length=1,
        max_length=QUERY_MAX_CHARS,
        description=f"The text to search for; at most {QUERY_MAX_CHARS} characters.",
    )
    top_k: int = Field(default=5, ge=1, le=100, description="How many hits to return.")
    retrieval: RetrievalMode | None = Field(
        default=None, description=RETRIEVAL_HELP + " Unset: the collection's setting."
    )

    _query_not_blank = field_validator("query")(not_blank)


class SearchHit(BaseModel):
    chunk_id: int = Field(description="The chunk's id.")
    document_id: str = Field(description="The document it belongs to.")
    filename: str = Field(description="That document's filename.")
    text: str = Field(description="The chunk's text.")
    score: float = Field(description="Similarity to the query; higher is nearer.")
    start: int = Field(description="Offset of the chunk in the document's extracted text.")
    end: int = Field(description="End offset (exclusive): text == document.text[start:end].")
    similarity: float | None = Field(
        default=None,
        description="Cosine of the query and the chunk when dense retrieval reached it (dense "
        "and hybrid modes; null otherwise): unlike a hybrid score, comparable across queries.",
    )


class SearchResponse(BaseModel):
    hits: list[SearchHit] = Field(description="Nearest chunks first.")
    index_version: int = Field(description="The collection version the search ran against.")
    embedder: str = Field(description="The embedder that embedded the query.")
    retrieval: RetrievalMode = Field(
        description="The mode used. Scores: cosine (dense), BM25 (lexical), RRF (hybrid)."
    )


class IndexRebuilt(BaseModel):
    collection: str = Field(description="The collection.")
    embedder: str = Field(description="The embedder whose index was rebuilt.")
    vectors: int = Field(description="Vectors in the rebuilt index.")
    index_version: int = Field(description="The collection's version at the rebuild.")
    lexical_chunks: int = Field(description="Chunks in the rebuilt BM25 index.")


class AdapterOut(BaseModel):
    name: str = Field(description="The adapter's name (a query's `adapter`).")
    base_model: str = Field(description="The model it adapts.")
    source: Literal["registered", "bundled", "generator"] = Field(
        description="registered: rag adapters add or POST /admin/v1/adapters; bundled: a "
        "folder under the adapters directory; generator: loaded by the generator itself (e.g. "
        "vLLM --lora-modules)."
    )
    loaded: bool = Field(description="Whether the generator has loaded it (else: on first use).")
    data: list[dict[str, Any]] = Field(
        default_factory=list,
        description="The trajectory sets it was trained on (dataset, split, counts, prompt "
        "version, teacher), from its manifest.",
    )
    training: dict[str, Any] = Field(
        default_factory=dict,
        description="How it was trained (stages, optimizer steps, samples, seconds), from its "
        "manifest.",
    )
    eval: dict[str, Any] = Field(
        default_factory=dict, description="Benchmark scores recorded in its manifest."
    )


class AdapterList(BaseModel):
    adapters: list[AdapterOut] = Field(description="LoRA adapters the generator serves.")


class AdapterCreate(BaseModel):
    model_config = example_config(
        {"name": "reasoner-v1", "path": "/models/reasoner-v1"}, forbid=True
    )

    name: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
        description="Name queries use to pick the adapter.",
    )
    path: str = Field(
        min_length=1, max_length=1024, description="Path of the adapter on the generator's host."
    )


class Identity(BaseModel):
    role: Literal["admin", "query"] = Field(
        description="The caller's role (admin when no keys exist: every route is open)."
    )
    keys_required: bool = Field(description="False: no keys exist and every route is open.")
    key_id: str | None = Field(default=None, description="The key's public id (never its secret).")


class Health(BaseModel):
    status: str = Field(description="ok")


class Readiness(BaseModel):
    status: Literal["ok", "degraded"] = Field(description="ok when every check passes.")
    checks: dict[str, str] = Field(
        description="Per dependency: database, cache, queue, index, generator."
    )
    model: str | None = Field(
        default=None, description="The model the generator serves (catalog or GGUF name)."
    )


class EmbedderOut(BaseModel):
    id: str = Field(description="Embedder id, as a collection's `embedder`.")
    dim: int = Field(description="Vector dimension.")
    backend: str = Field(description="What runs it (sentence-transformers, onnx, ...).")


class EmbedderList(BaseModel):
    embedders: list[EmbedderOut] = Field(description="Embedders this deployment can load.")


class MigrationCreate(BaseModel):
    model_config = example_config({"embedder": "all-MiniLM-L6-v2-onnx-int8"}, forbid=True)

    embedder: str = Field(
        min_length=1, max_length=128, description="The embedder id to migrate to."
    )


class JobAccepted(BaseModel):
    job_id: str = Field(description="Poll GET /admin/v1/jobs/{job_id} for progress.")


class EmbeddingsPruned(BaseModel):
    collection: str = Field(description="The collection.")
    embedder: str = Field(description="The embedder whose vectors were deleted.")
    deleted: int = Field(description="How many vectors were deleted.")
