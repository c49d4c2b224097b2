"""The API process's BM25 indexes, one per collection, kept in step with the database.

Like the FAISS indexes (retrieval/index_store.py), a BM25 index is a cache of the chunks table:
each search reads the collection's `index_version`; when it moved, the index catches up by
diffing chunk ids with the database (new chunks tokenized and added, deleted ones removed).
Snapshots on disk make a restart fast; a snapshot that fails validation is rebuilt.

BM25 indexes chunk text, not vectors, so it does not depend on the embedder: an embedder
migration bumps the version but changes no chunk, and the catch-up finds nothing to do.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core import repository
from core.db import Database
from core.settings import Bm25Settings
from retrieval.bm25_index import Bm25Index, SnapshotError, Tokenizer

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    index: Bm25Index | None = None
    # The collection's index_version this index reflects; -1 means "never synced".
    version: int = -1
    saved_version: int = -1
    # How the index in memory came to be: "snapshot" (then caught up) or "database" (built).
    origin: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


class Bm25Store:
    def __init__(self, db: Database, settings: Bm25Settings, snapshot_dir: Path) -> None:
        self._db = db
        self._settings = settings
        self._tokenizer = Tokenizer(settings.language, settings.stopwords)
        self._dir = snapshot_dir
        self._entries: dict[str, _Entry] = {}
        self._entries_lock = threading.Lock()

    def _entry(self, collection_id: str) -> _Entry:
        with self._entries_lock:
            return self._entries.setdefault(collection_id, _Entry())

    def snapshot_path(self, collection_id: str) -> Path:
        return self._dir / f"{collection_id}.npz"

    def get(self, collection_id: str, version: int) -> Bm25Index:
        """The index at `version` or later (empty when the collection has no chunks)."""
        entry = self._entry(collection_id)
        if entry.version >= version and entry.index is not None:
            return entry.index
        with entry.lock:
            if entry.version < version or entry.index is None:
                return self._sync(entry, collection_id)
            return entry.index

    def _sync(self, entry: _Entry, collection_id: str) -> Bm25Index:
        # Read the version before the ids: every change bumps it in the same transaction, so
        # the ids read afterwards include at least everything up to this version.
        with self._db.session() as session:
            version, _ = repository.index_version(session, collection_id)
            db_ids = repository.chunk_ids(session, collection_id)
        if entry.index is None:
            entry.index = self._load_snapshot(collection_id)
            entry.origin = "snapshot"
        if entry.index is None:
            entry.index = self._build(collection_id)
            entry.origin = "database"
            entry.version = version
            return entry.index
        index_ids = entry.index.ids()
        missing = np.setdiff1d(db_ids, index_ids, assume_unique=True)
        gone = np.setdiff1d(index_ids, db_ids, assume_unique=True)
        if len(gone):
            entry.index.remove(gone)
        if len(missing):
            with self._db.session() as session:
                ids, texts = repository.chunk_texts(session, collection_id, missing.tolist())
            entry.index.add(ids, texts)
        entry.version = version
        if len(entry.index) != len(db_ids):
            # Chunks changed while we were catching up; the next search catches up again.
            entry.version = -1
        log.debug("bm25 %s at version %s: +%d -%d", collection_id, version, len(missing), len(gone))
        return entry.index

    def _build(self, collection_id: str) -> Bm25Index:
        with self._db.session() as session:
            ids, texts = repository.chunk_texts(session, collection_id)
        index = Bm25Index(self._settings, self._tokenizer)
        index.add(ids, texts)
        return index

    def _load_snapshot(self, collection_id: str) -> Bm25Index | None:
        path = self.snapshot_path(collection_id)
        try:
            index, _ = Bm25Index.load(path, self._settings, self._tokenizer)
        except FileNotFoundError:
            return None
        except SnapshotError as exc:
            log.warning("discarding BM25 snapshot, rebuilding from the database: %s", exc)
            path.unlink(missing_ok=True)
            return None
        return index

    def rebuild(self, collection_id: str) -> Bm25Index:
        """Throw the in-memory index away and build it again from the database."""
        entry = self._entry(collection_id)
        with entry.lock:
            with self._db.session() as session:
                version, _ = repository.index_version(session, collection_id)
            entry.index = self._build(collection_id)
            entry.origin = "database"
            entry.version = version
            return entry.index

    def save_snapshots(self) -> int:
        """Write every index that changed since its last snapshot; returns how many were written."""
        with self._entries_lock:
            items = list(self._entries.items())
        written = 0
        for collection_id, entry in items:
            with entry.lock:
                if entry.index is None or entry.version < 0 or entry.version == entry.saved_version:
                    continue
                entry.index.save(
                    self.snapshot_path(collection_id),
                    {"collection_id": collection_id, "version": entry.version},
                )
                entry.saved_version = entry.version
                written += 1
        return written

    def retain(self, keep: set[str]) -> None:
        """Forget in-memory indexes of collections not in `keep` (their snapshots stay)."""
        with self._entries_lock:
            for key in [k for k in self._entries if k not in keep]:
                del self._entries[key]

    def drop(self, collection_id: str) -> None:
        """Forget a collection's BM25 index and delete its snapshot (for a deleted collection)."""
        with self._entries_lock:
            self._entries.pop(collection_id, None)
        self.snapshot_path(collection_id).unlink(missing_ok=True)

    def origin(self, collection_id: str) -> str:
        """Where the index in memory came from: "snapshot" or "database"."""
        return self._entry(collection_id).origin

    def loaded(self) -> dict[str, int]:
        """Chunk counts of the indexes in memory (for health and metrics)."""
        with self._entries_lock:
            return {k: len(e.index) for k, e in self._entries.items() if e.index is not None}
