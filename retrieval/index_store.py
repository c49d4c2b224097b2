"""The API process's FAISS indexes, one per (collection, embedder), kept in step with the database.

The catching up, snapshots and version rule are retrieval/derived_index_store.py's; `FaissKind`
says how a FAISS index is built from the embeddings table and caught up. Snapshots live in
<snapshot_dir>/<collection_id>/<embedder>.npz.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from core import repository
from core.db import Database
from core.settings import IndexSettings
from retrieval.derived_index_store import DerivedIndexStore
from retrieval.faiss_index import FaissIndex, build_index, choose_kind

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (collection_id, embedder)


class FaissKind:
    """FAISS indexes of one embedder's vectors in a collection (an `IndexKind`)."""

    snapshot_label = "snapshot"

    def __init__(self, settings: IndexSettings, snapshot_dir: Path) -> None:
        self._settings = settings
        self._dir = snapshot_dir

    def collection_id(self, key: Key) -> str:
        return key[0]

    def describe(self, key: Key) -> str:
        return f"index {key[0]}/{key[1]}"

    def snapshot_path(self, key: Key) -> Path:
        collection_id, embedder = key
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", embedder)
        return self._dir / collection_id / f"{safe}.npz"

    def snapshot_meta(self, key: Key) -> dict[str, Any]:
        return {"collection_id": key[0], "embedder": key[1]}

    def db_ids(self, session: Session, key: Key) -> np.ndarray:
        return repository.embedding_ids(session, *key)

    def build(self, db: Database, key: Key) -> FaissIndex | None:
        with db.session() as session:
            ids, vectors = repository.embedding_vectors(session, *key)
        if len(ids) == 0:
            return None
        return build_index(self._settings, ids, vectors, vectors.shape[1])

    def load(self, path: Path) -> FaissIndex:
        return FaissIndex.load(path, self._settings)[0]

    def outgrown(self, index: FaissIndex, count: int) -> bool:
        # Flat or IVF: a collection that crossed the size between them is built anew.
        return choose_kind(self._settings, count) != index.kind

    def add_missing(self, db: Database, key: Key, index: FaissIndex, missing: np.ndarray) -> bool:
        with db.session() as session:
            ids, vectors = repository.embedding_vectors(session, *key, missing.tolist())
        if len(ids) and vectors.shape[1] != index.dim:
            return False
        index.add(ids, vectors)
        return True


class IndexStore:
    """The FAISS indexes: a `DerivedIndexStore` of `FaissKind`, its methods (documented there)
    taking the key (collection_id, embedder) as two arguments."""

    def __init__(self, db: Database, settings: IndexSettings, snapshot_dir: Path) -> None:
        self._dir = snapshot_dir
        self._store = DerivedIndexStore(db, FaissKind(settings, snapshot_dir))
        self._deletion_hooks: list[Callable[[str], None]] = []

    def snapshot_path(self, collection_id: str, embedder: str) -> Path:
        return self._store.snapshot_path((collection_id, embedder))

    def get(self, collection_id: str, embedder: str, version: int) -> FaissIndex | None:
        """The index at `version` or later; None when the collection has no vectors yet."""
        return self._store.get((collection_id, embedder), version)

    def rebuild(self, collection_id: str, embedder: str) -> FaissIndex | None:
        return self._store.rebuild((collection_id, embedder))

    def save_snapshots(self) -> int:
        return self._store.save_snapshots()

    def refresh(self, collection_id: str, embedder: str) -> FaissIndex | None:
        """Catch up with the database now, whatever the version says.

        For an embedder migration's target: its vectors arrive without version bumps (the
        collection does not serve them yet), so an index warmed ahead of the switch is kept
        close to complete and the switch itself only has a small diff to apply.
        """
        return self._store.refresh((collection_id, embedder))

    def retain(self, keep: set[Key]) -> None:
        self._store.retain(keep)

    def drop(self, collection_id: str, embedder: str) -> None:
        self._store.drop((collection_id, embedder))

    def on_collection_deleted(self, hook: Callable[[str], None]) -> None:
        """Register `hook(collection_id)`, called by `collection_deleted` after the FAISS state
        is gone: other derived state of a collection (BM25 data, say) attaches its cleanup
        here. A hook that raises is logged and does not stop the others."""
        self._deletion_hooks.append(hook)

    def collection_deleted(self, collection_id: str) -> None:
        """Forget every index of a deleted collection, in memory and its snapshots on disk
        (all embedders), then run the `on_collection_deleted` hooks. Call it after the
        database rows are gone; other API processes drop their copies in `retain`."""
        self._store.forget_collection(collection_id)
        shutil.rmtree(self._dir / collection_id, ignore_errors=True)
        for hook in self._deletion_hooks:
            try:
                hook(collection_id)
            except Exception:
                log.exception("cleanup after deleting collection %s failed", collection_id)

    def origin(self, collection_id: str, embedder: str) -> str:
        return self._store.origin((collection_id, embedder))

    def loaded(self) -> dict[Key, int]:
        """Vector counts of the indexes in memory (for health and metrics)."""
        return self._store.loaded()
