"""Request and response models: the HTTP edge of ../shared/API.md."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from core.settings import RetrievalMode

COLLECTION_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

RETRIEVAL_HELP = (
    "dense: nearest embeddings (FAISS); lexical: BM25 over chunk text; hybrid: both, fused by "
    "reciprocal rank."
)


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class CollectionCreate(BaseModel):
    name: str = Field(pattern=COLLECTION_NAME, description="Letters, digits, '_', '.', '-'.")
    embedder: str | None = None
    retrieval: RetrievalMode | None = Field(
        default=None, description=RETRIEVAL_HELP + " Unset: the server default."
    )


class CollectionUpdate(BaseModel):
    retrieval: RetrievalMode | None = Field(
        description=RETRIEVAL_HELP + " null: follow the server default."
    )


class CollectionOut(BaseModel):
    name: str
    embedder: str
    documents: int
    chunks: int
    index_version: int
    created_at: datetime
    previous_embedder: str | None = None
    retrieval: RetrievalMode = Field(
        description="The mode searches use unless a request names one."
    )
    retrieval_setting: RetrievalMode | None = Field(
        default=None, description="The collection's own setting; null: the server default."
    )


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
    retrieval: RetrievalMode | None = Field(
        default=None, description=RETRIEVAL_HELP + " Unset: the collection's setting."
    )


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
    retrieval: RetrievalMode = Field(
        description="The mode used. Scores: cosine (dense), BM25 (lexical), RRF (hybrid)."
    )


class IndexRebuilt(BaseModel):
    collection: str
    embedder: str
    vectors: int
    index_version: int
    lexical_chunks: int = Field(description="Chunks in the rebuilt BM25 index.")


class QueryRequest(BaseModel):
    collection: str = Field(pattern=COLLECTION_NAME)
    question: str = Field(min_length=1, max_length=2000)
    top_k: int | None = Field(default=None, ge=1, le=20)
    adapter: str | None = Field(default=None, min_length=1, max_length=128)
    stream: bool = False
    allow_unsupported: bool = False
    use_cache: bool = Field(default=True, description="False skips the cache lookup (evaluation).")
    mode: Literal["steps", "single_pass", "one_call", "closed_book"] | None = Field(
        default=None,
        description="steps (default): relevance, evidence, analysis as three calls; single_pass: "
        "one call emits the whole trajectory; one_call and closed_book are evaluation baselines.",
    )
    retrieval: RetrievalMode | None = Field(
        default=None, description=RETRIEVAL_HELP + " Unset: the collection's setting."
    )


class Citation(BaseModel):
    id: int
    document_id: str
    filename: str
    chunk_id: int
    quote: str
    start: int
    end: int


class Judgement(BaseModel):
    chunk_id: int
    document_id: str
    relevant: bool
    reason: str


class EvidenceItem(BaseModel):
    id: int
    sentence: str
    chunk_id: int
    document_id: str
    filename: str
    quote: str
    start: int
    end: int
    reason: str


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int = 0


class QueryResponse(BaseModel):
    answer: str
    analysis: str
    citations: list[Citation]
    relevance: list[Judgement]
    evidence: list[EvidenceItem]
    cached: bool
    model: str
    mode: str
    supported: bool = Field(default=False, description="True when the answer cites evidence.")
    degraded: str | None = Field(default=None, description="Set when the answer is degraded.")
    hits: list[SearchHit] | None = Field(
        default=None, description="Top hits, in a retrieval-only response."
    )
    answer_source: Literal["model", "extractive"] | None = Field(
        default=None,
        description="model: the model's answer, supported by the evidence; extractive: the "
        "model's answer was not, so the answer is the best cited evidence sentence.",
    )
    index_version: int
    usage: Usage
    timings_ms: dict[str, float]


class AdapterOut(BaseModel):
    name: str
    base_model: str


class AdapterList(BaseModel):
    adapters: list[AdapterOut]


class AdapterCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    path: str = Field(min_length=1, max_length=1024)


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: Literal["ok", "degraded"]
    checks: dict[str, str]


class EmbedderOut(BaseModel):
    id: str
    dim: int
    backend: str


class EmbedderList(BaseModel):
    embedders: list[EmbedderOut]


class MigrationCreate(BaseModel):
    embedder: str = Field(min_length=1, max_length=128)


class JobAccepted(BaseModel):
    job_id: str


class EmbeddingsPruned(BaseModel):
    collection: str
    embedder: str
    deleted: int
