"""The API process's BM25 indexes, one per collection, kept in step with the database.

Like the FAISS indexes (retrieval/index_store.py), a BM25 index is a cache of the chunks table,
caught up and snapshotted by retrieval/derived_index_store.py; `Bm25Kind` says how one is built
from chunk text and caught up (new chunks tokenized and added). Snapshots live in
<snapshot_dir>/<collection_id>.npz.

BM25 indexes chunk text, not vectors, so it does not depend on the embedder: an embedder
migration bumps the version but changes no chunk, and the catch-up finds nothing to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from core import repository
from core.db import Database
from core.settings import Bm25Settings
from retrieval.bm25_index import Bm25Index, Tokenizer
from retrieval.derived_index_store import DerivedIndexStore


class Bm25Kind:
    """BM25 indexes of a collection's chunk text, keyed by collection id (an `IndexKind`)."""

    snapshot_label = "BM25 snapshot"

    def __init__(self, settings: Bm25Settings, snapshot_dir: Path) -> None:
        self._settings = settings
        self._tokenizer = Tokenizer(settings.language, settings.stopwords)
        self._dir = snapshot_dir

    def collection_id(self, key: str) -> str:
        return key

    def describe(self, key: str) -> str:
        return f"bm25 {key}"

    def snapshot_path(self, key: str) -> Path:
        return self._dir / f"{key}.npz"

    def snapshot_meta(self, key: str) -> dict[str, Any]:
        return {"collection_id": key}

    def db_ids(self, session: Session, key: str) -> np.ndarray:
        return repository.chunk_ids(session, key)

    def build(self, db: Database, key: str) -> Bm25Index:
        with db.session() as session:
            ids, texts = repository.chunk_texts(session, key)
        index = Bm25Index(self._settings, self._tokenizer)
        index.add(ids, texts)
        return index

    def load(self, path: Path) -> Bm25Index:
        return Bm25Index.load(path, self._settings, self._tokenizer)[0]

    def outgrown(self, _index: Bm25Index, _count: int) -> bool:
        return False  # one structure at every size

    def add_missing(self, db: Database, key: str, index: Bm25Index, missing: np.ndarray) -> bool:
        with db.session() as session:
            ids, texts = repository.chunk_texts(session, key, missing.tolist())
        index.add(ids, texts)
        return True


class Bm25Store:
    """The BM25 indexes: a `DerivedIndexStore` of `Bm25Kind`, its methods (documented there)
    keyed by collection id; `get` and `rebuild` never return None."""

    def __init__(self, db: Database, settings: Bm25Settings, snapshot_dir: Path) -> None:
        self._store = DerivedIndexStore(db, Bm25Kind(settings, snapshot_dir))

    def snapshot_path(self, collection_id: str) -> Path:
        return self._store.snapshot_path(collection_id)

    def get(self, collection_id: str, version: int) -> Bm25Index:
        """The index at `version` or later (empty when the collection has no chunks)."""
        return _built(self._store.get(collection_id, version))

    def rebuild(self, collection_id: str) -> Bm25Index:
        return _built(self._store.rebuild(collection_id))

    def save_snapshots(self) -> int:
        return self._store.save_snapshots()

    def retain(self, keep: set[str]) -> None:
        self._store.retain(keep)

    def drop(self, collection_id: str) -> None:
        """Forget a collection's BM25 index and delete its snapshot (for a deleted collection)."""
        self._store.drop(collection_id)

    def origin(self, collection_id: str) -> str:
        return self._store.origin(collection_id)

    def loaded(self) -> dict[str, int]:
        """Chunk counts of the indexes in memory (for health and metrics)."""
        return self._store.loaded()


def _built(index: Bm25Index | None) -> Bm25Index:
    # Bm25Kind.build never returns None (a collection without chunks has an empty index), so
    # neither does the store.
    if index is None:
        raise RuntimeError("a BM25 index is always built")
    return index
