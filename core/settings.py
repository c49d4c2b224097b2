"""The one settings object. Environment variables with the prefix `RAG_`, nested with `__`.

With no settings at all the service runs the embedded default: SQLite and a local index under
`RAG_DATA_DIR` (default `./data`), ingestion on an in-process worker thread, the bundled embedder.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class DatabaseSettings(BaseModel):
    # Empty means SQLite at <data_dir>/rag.sqlite3.
    url: str = ""
    pool_size: int = 10
    # Connections for single reads without a transaction (chunk hydration, collection states):
    # this many kept, as many again on demand. Postgres only.
    read_pool_size: int = 5
    echo: bool = False
    # Run `alembic upgrade head` when the API starts (compose runs a one-shot migrate instead).
    auto_migrate: bool = True
    # Cache collection states (id, index version, embedder, retrieval mode) in each API
    # process, dropped on every change (Postgres LISTEN/NOTIFY, SQLite data_version):
    # searches and queries then skip one database round trip (core/collection_state.py).
    state_cache: bool = True
    # Check the LISTEN connection with a query when it has been quiet this long.
    state_cache_ping_s: float = 5.0


class RedisSettings(BaseModel):
    # Empty means no Redis: the embedded default.
    url: str = ""


class BrokerSettings(BaseModel):
    # Empty means ingestion runs on an in-process worker thread through the same Celery task code.
    url: str = ""
    # Result backend; empty means results are not stored (jobs live in the database anyway).
    result_backend: str = ""
    task_expires_s: int = 24 * 3600
    max_retries: int = 5
    worker_concurrency: int = 1
    worker_prefetch: int = 1
    # Redis re-delivers a task that a worker took but never acknowledged (it was killed) after
    # this long; it must exceed the longest ingestion task.
    visibility_timeout_s: int = 3600


class EmbedderSettings(BaseModel):
    # The embedder of new collections (an existing collection keeps its own). auto:
    # all-MiniLM-L6-v2 on torch, except on a CPU without native bfloat16, where the same model
    # with int8 matrix products (all-MiniLM-L6-v2-onnx-int8-dynamic, shipped) encodes about 2x
    # faster than torch float32. Or an embedder id.
    default: str = "auto"
    # Arithmetic of torch embedders. auto: bfloat16 on a CPU that computes it natively
    # (AVX512-BF16 or AMX: documents embed 1.6-1.9x faster, vectors at cosine 0.9999 to
    # float32's, docs/performance.md), else float32 (also on CUDA).
    precision: Literal["auto", "float32", "bfloat16"] = "auto"
    batch_size: int = 64
    # torch CPU threads per process, onnxruntime threads per call, and texts encoded at once by
    # the int8-products export (one thread each); 0 keeps the defaults (all cores). 1 keeps
    # query latency steady when API processes share cores with workers.
    num_threads: int = 0
    # auto: CUDA when torch sees a GPU, else CPU.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Extra sentence-transformers folders, id -> path: RAG_EMBEDDER__FOLDERS='{"my-model": "/m"}'.
    folders: dict[str, str] = Field(default_factory=dict)
    # Chunks per embedder-migration batch task (the unit of work shared between workers).
    migration_batch: int = 256
    # Query encoding. auto: where a faster encoder of the same model is installed, queries
    # use it on CPU: the int8 ONNX export of all-MiniLM-L6-v2 encodes a question 2-13x faster
    # than torch, its vectors at cosine >= 0.99 to torch's, recall@5 within 1 point on the dev
    # sets (docs/performance.md). same: queries use the collection's embedder itself.
    query_encoder: Literal["auto", "same"] = "auto"
    # Query batching across concurrent searches: questions that arrive while one batch is
    # being encoded go together in the next; the first of a burst waits this long for others
    # (0: no wait, batch only what queued meanwhile). query_batch_max 1 turns batching off.
    query_batch_window_ms: float = 0.0
    query_batch_max: int = 16


class IndexSettings(BaseModel):
    # flat: exact search; ivf: approximate; auto: flat until `approximate_after` vectors.
    kind: Literal["auto", "flat", "ivf"] = "auto"
    approximate_after: int = 50_000
    ivf_nprobe: int = 16
    # gpu: auto uses faiss GPUs when faiss reports any.
    gpu: Literal["auto", "off"] = "auto"
    snapshot_interval_s: float = 30.0
    # FAISS (OpenMP) threads per search; 0 keeps FAISS's default (all cores). One query at a
    # time gains nothing from threads but pays for waking them, next to the query encoder's
    # own threads: measured 9.7 -> 4.3 ms per search of a small collection on 2 cores.
    search_threads: int = 1
    # How often the API looks for running embedder migrations to warm their new index.
    warm_interval_s: float = 2.0
    # Search asks the index for this many times top_k, so deletions not yet caught up can be
    # filtered out without returning fewer hits.
    overfetch: int = 2


RetrievalMode = Literal["dense", "hybrid", "lexical"]


class Bm25Settings(BaseModel):
    # Lucene's BM25 parameters (bm25s's defaults).
    k1: float = 1.5
    b: float = 0.75
    # Snowball stemmer language (PyStemmer) and bm25s stopword list.
    language: str = "english"
    stopwords: str = "en"


class RetrievalSettings(BaseModel):
    """How chunks are found: dense (FAISS), lexical (BM25) or both fused (hybrid)."""

    # The default for collections that set none; a request may ask for another. hybrid
    # measured best on every dev set (docs/retrieval.md).
    default: RetrievalMode = "hybrid"
    # Reciprocal rank fusion: score = sum over rankings of 1 / (rrf_k + rank).
    rrf_k: int = 60
    # Candidates taken from each ranking before fusing: max(candidates, top_k * overfetch).
    candidates: int = 20
    bm25: Bm25Settings = Field(default_factory=Bm25Settings)
    # Chunk rows kept per API process, as snapshots of whole collections (the least recently
    # searched go first), so a search of such a collection hydrates its hits without a
    # database read (retrieval/row_snapshots.py; about 1.3 KB each). 0: always read them.
    snapshot_rows: int = Field(20_000, ge=0)


class IngestSettings(BaseModel):
    max_file_bytes: int = 50 * 1024 * 1024
    max_files_per_request: int = 1000
    # Whole upload request; checked on Content-Length before anything is read (app/body_limit.py).
    max_request_bytes: int = 1024 * 1024 * 1024
    chunk_size: int = 1000
    chunk_overlap: int = 150
    # Documents of an upload ingested as one task: their chunks embedded in one encoder call
    # (sorted by length across documents), stored in one transaction. 1: a task per document.
    documents_per_task: int = Field(default=8, ge=1, le=256)
    # PDF text extraction runs in a child process with these bounds, so a hostile PDF (a
    # decompression bomb, a huge page tree) fails its document instead of hanging or
    # exhausting a worker.
    # The same child and bounds read every other format but text, Markdown and HTML
    # (docx, pptx, xlsx, odt, epub, eml, csv, json, xml), which also stop at max_text_chars
    # (a huge sheet) and refuse zip containers that unpack past max_unpacked_mb (a zip bomb).
    pdf_timeout_s: float = 120.0
    pdf_memory_mb: int = 1024
    max_text_chars: int = 20_000_000
    max_unpacked_mb: int = 512


class OpenAISettings(BaseModel):
    """An OpenAI-compatible server: vLLM in deployment, or llama.cpp's server."""

    base_url: str = "http://127.0.0.1:8001/v1"
    api_key: str = ""
    # The served base model; a request's adapter is sent as the model name instead.
    model: str = ""
    # json_schema: OpenAI/vLLM `{"type": "json_schema", ...}`; json_object: llama.cpp server's
    # `{"type": "json_object", "schema": ...}`.
    structured_output: Literal["json_schema", "json_object"] = "json_schema"
    timeout_s: float = 60.0
    max_retries: int = 2
    # Requests in flight at once; vLLM batches them.
    max_concurrency: int = 32


class LlamaCppSettings(BaseModel):
    # A catalog name (`rag models list`) or the path of a GGUF file; empty: the catalog default.
    model: str = ""
    # Where `rag models install` puts catalog models (relative to the working directory).
    models_dir: Path = Path("models")
    # The name reported as the serving model; empty: the catalog's or the GGUF's own name.
    model_name: str = ""
    n_ctx: int = 4096
    # llama.cpp threads; 0: before each call, as many as other processes leave idle
    # (generation/llm/idle_cores.py).
    n_threads: int = 0
    # Prompt tokens evaluated per llama.cpp batch (prompt processing speed; llama.cpp's default).
    n_batch: int = 512
    seed: int = 0
    # Small models loop ("1.1.1.1…") under greedy decoding without a repetition penalty.
    repeat_penalty: float = 1.15


class PipelineSettings(BaseModel):
    top_k: int = 5
    # steps: relevance, evidence and analysis as three structured calls; single_pass: one call
    # that emits the whole trajectory (for a model or adapter trained to do so).
    mode: Literal["steps", "single_pass"] = "steps"
    max_evidence: int = 3
    # The evidence step chooses among this many sentences of the relevant passages, ranked by
    # BM25 against the question fused with reading order (generation/reasoning/evidence_ranking.py);
    # 0: among all of them. 4 measured best on the train splits (docs/benchmarks.md).
    evidence_candidates: int = Field(4, ge=0)
    # The evidence check: when the model passed over the ranking's first sentence, it joins
    # the evidence after the model's choices (in place of its last one when it chose
    # max_evidence). Measured better on the train splits (docs/benchmarks.md); false: off.
    evidence_top_ranked: bool = True
    # The wording of the step prompts (generation/reasoning/prompts.py). steps-2026-12c: the
    # analysis step writes the analysis, then the answer (the paper's order); steps-2026-12d:
    # the answer first, then the analysis that supports it (measured better on the train
    # splits, docs/benchmarks.md). Trajectories and adapters record the set; serve an adapter
    # with the set it was trained on.
    prompt_set: Literal["steps-2026-12c", "steps-2026-12d"] = "steps-2026-12d"
    reason_max_chars: int = 120
    analysis_max_chars: int = 600
    answer_max_chars: int = 200
    max_tokens_relevance: int = 400
    max_tokens_evidence: int = 300
    max_tokens_analysis: int = 400
    # When the generator is down: false -> 503 generator_unavailable; true -> the top hits with
    # a note that no answer could be generated.
    retrieval_only_fallback: bool = False


class GenerationSettings(BaseModel):
    backend: Literal["llamacpp", "openai"] = "llamacpp"
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    llamacpp: LlamaCppSettings = Field(default_factory=LlamaCppSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    # Adapter folders (adapter.json) under here are served without a registration when their
    # base model is the one served, e.g. the shipped adapters/; empty: none.
    adapters_dir: Path | None = Path("adapters")

    @field_validator("adapters_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value


class CacheSettings(BaseModel):
    ttl_s: int = 3600
    # The in-process LRU used when no Redis is configured.
    memory_entries: int = 1024


class LogSettings(BaseModel):
    # json: one JSON object per line with the request id (deployment); text: for a terminal.
    format: Literal["json", "text"] = "text"
    level: str = "INFO"


class MetricsSettings(BaseModel):
    # Port on which each `rag worker` serves Prometheus metrics for its processes; 0: none.
    # (The API serves /metrics itself.)
    worker_port: int = 0


class AuthSettings(BaseModel):
    """API keys (created with `rag keys create`) and the rules for running without them."""

    # How long a key lookup is cached in each API process: a revoked key stops working within
    # this many seconds, and a request costs no database round trip while it is cached.
    cache_ttl_s: float = 5.0
    # `rag serve` on an address other than loopback refuses to start while no key exists,
    # unless this is true (say, behind a proxy that authenticates).
    allow_unauthenticated: bool = False


class RateLimitSettings(BaseModel):
    """Requests per minute per API key (0: unlimited); shared through Redis when configured."""

    admin_per_minute: int = 600
    query_per_minute: int = 120


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAG_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    data_dir: Path = Path("data")
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{(self.data_dir / 'rag.sqlite3').resolve()}"

    @property
    def embedded_worker(self) -> bool:
        """True when ingestion runs in the API process (no broker configured)."""
        return not self.broker.url

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"


@lru_cache
def get_settings() -> Settings:
    return Settings()
