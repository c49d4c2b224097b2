"""Request and response models: the HTTP edge of ../shared/API.md."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

COLLECTION_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class CollectionCreate(BaseModel):
    name: str = Field(pattern=COLLECTION_NAME, description="Letters, digits, '_', '.', '-'.")
    embedder: str | None = None


class CollectionOut(BaseModel):
    name: str
    embedder: str
    documents: int
    chunks: int
    index_version: int
    created_at: datetime
    previous_embedder: str | None = None


class CollectionList(BaseModel):
    collections: list[CollectionOut]


class UploadedDocument(BaseModel):
    document_id: str
    filename: str
    status: Literal["queued", "duplicate"]


class UploadAccepted(BaseModel):
    job_id: str
    documents: list[UploadedDocument]
    errors: list[dict[str, Any]] = Field(default_factory=list)


class Progress(BaseModel):
    done: int
    total: int


class JobOut(BaseModel):
    job_id: str
    kind: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    collection: str | None = None
    progress: Progress
    errors: list[dict[str, Any]]
    created_at: datetime
    finished_at: datetime | None = None


class DocumentOut(BaseModel):
    document_id: str
    filename: str
    status: str
    chunks: int
    sha256: str
    media_type: str
    error: str | None = None


class DocumentDetail(DocumentOut):
    text: str | None = Field(description="The extracted text that chunk offsets point into.")


class DocumentList(BaseModel):
    documents: list[DocumentOut]


class SearchRequest(BaseModel):
    collection: str = Field(pattern=COLLECTION_NAME)
    query: str = Field(min_length=1, max_length=4000)
    top_k: int = Field(default=5, ge=1, le=100)


class SearchHit(BaseModel):
    chunk_id: int
    document_id: str
    filename: str
    text: str
    score: float
    start: int
    end: int


class SearchResponse(BaseModel):
    hits: list[SearchHit]
    index_version: int
    embedder: str


class IndexRebuilt(BaseModel):
    collection: str
    embedder: str
    vectors: int
    index_version: int


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: Literal["ok", "degraded"]
    checks: dict[str, str]
