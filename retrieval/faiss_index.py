"""A FAISS index over chunk ids: exact (flat) for small collections, IVF past a size, GPU if any.

Vectors are L2-normalized, so inner product is cosine similarity.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from core.settings import IndexSettings
from retrieval.snapshot_file import SnapshotError, json_value, read_snapshot, write_snapshot


def ivf_nprobe(settings: IndexSettings, nlist: int) -> int:
    """Lists searched per query: the setting, but at least 1/16 of the lists, so recall does
    not collapse as the number of lists grows with the collection."""
    return min(nlist, max(settings.ivf_nprobe, nlist // 16))


def gpu_count() -> int:
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


class FaissIndex:
    """Chunk-id-keyed vectors. Thread-safe: one lock guards every read and write.

    `add` of an id that is already present overwrites it. `kind` is "flat" or "ivf"; an IVF
    index is trained on the vectors it is built with.
    """

    def __init__(
        self, dim: int, kind: str, settings: IndexSettings, train: np.ndarray | None = None
    ):
        self.dim = dim
        self.kind = kind
        self._settings = settings
        self._lock = threading.RLock()
        self._ids: set[int] = set()
        self._gpu: Any = None
        self._gpu_stale = True
        self._use_gpu = settings.gpu == "auto" and gpu_count() > 0
        self._index = self._new_index(dim, kind, train)

    def _new_index(self, dim: int, kind: str, train: np.ndarray | None) -> Any:
        if kind == "flat":
            return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        n = 0 if train is None else len(train)
        # ~4*sqrt(n) lists is the usual rule of thumb; at least 39 training points per list.
        nlist = max(1, min(int(4 * math.sqrt(max(n, 1))), n // 39 or 1))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        if train is not None and n:
            index.train(np.ascontiguousarray(train, dtype=np.float32))
        index.nprobe = ivf_nprobe(self._settings, nlist)
        return index

    def __len__(self) -> int:
        return len(self._ids)

    def ids(self) -> np.ndarray:
        with self._lock:
            return np.fromiter(self._ids, dtype=np.int64, count=len(self._ids))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        ids = np.asarray(ids, dtype=np.int64)
        with self._lock:
            present = np.fromiter(
                (i in self._ids for i in ids.tolist()), dtype=bool, count=len(ids)
            )
            if present.any():
                self._index.remove_ids(ids[present])
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
            self._ids.update(ids.tolist())
            self._gpu_stale = True

    def remove(self, ids: np.ndarray) -> None:
        if len(ids) == 0:
            return
        with self._lock:
            self._index.remove_ids(np.asarray(ids, dtype=np.int64))
            self._ids.difference_update(np.asarray(ids).tolist())
            self._gpu_stale = True

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the k nearest for one query vector; ids are -1 past the end."""
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        if self._settings.search_threads > 0:
            # OpenMP's thread count is per calling thread: set it in the thread that searches.
            faiss.omp_set_num_threads(self._settings.search_threads)
        with self._lock:
            k = max(1, min(k, len(self._ids))) if self._ids else 1
            scores, ids = self._searcher().search(q, k)
        return scores[0], ids[0]

    def _searcher(self) -> Any:
        if not self._use_gpu:
            return self._index
        if self._gpu_stale:
            self._gpu = faiss.index_cpu_to_all_gpus(self._index)
            self._gpu_stale = False
        return self._gpu

    # Snapshots ---------------------------------------------------------------------------

    def save(self, path: Path, meta: dict[str, Any]) -> None:
        """Write atomically (retrieval/snapshot_file.py); `meta` goes into the header."""
        with self._lock:
            blob = faiss.serialize_index(self._index)
            ids = self.ids()
        header = dict(meta, dim=self.dim, kind=self.kind, count=int(len(ids)))
        write_snapshot(path, header, index=blob, ids=ids)

    @classmethod
    def load(cls, path: Path, settings: IndexSettings) -> tuple[FaissIndex, dict[str, Any]]:
        """Load and validate a snapshot; raises SnapshotError when it cannot be trusted."""
        meta: dict[str, Any]
        meta, ids, raw = read_snapshot(
            path,
            lambda data: (
                json_value(data["meta"]),
                data["ids"].astype(np.int64),
                faiss.deserialize_index(data["index"]),
            ),
        )
        if raw.ntotal != len(ids) or meta.get("count") != len(ids) or raw.d != meta.get("dim"):
            raise SnapshotError(f"snapshot {path.name} is inconsistent")
        index = cls(int(meta["dim"]), str(meta["kind"]), settings)
        index._index = raw
        if meta["kind"] == "ivf":
            ivf: Any = faiss.extract_index_ivf(raw)
            ivf.nprobe = ivf_nprobe(settings, ivf.nlist)
        index._ids = set(ids.tolist())
        return index, meta


# IVF needs enough points to train its lists; below this an exact index is both right and fast.
MIN_IVF_VECTORS = 1000


def choose_kind(settings: IndexSettings, count: int) -> str:
    if count < MIN_IVF_VECTORS or settings.kind == "flat":
        return "flat"
    if settings.kind == "ivf":
        return "ivf"
    return "ivf" if count >= settings.approximate_after else "flat"


def build_index(
    settings: IndexSettings, ids: np.ndarray, vectors: np.ndarray, dim: int
) -> FaissIndex:
    """A fresh index holding exactly these vectors, of the kind their count calls for."""
    kind = choose_kind(settings, len(ids))
    index = FaissIndex(dim, kind, settings, train=vectors if kind == "ivf" else None)
    index.add(ids, vectors)
    return index
