"""The API process's FAISS indexes, one per (collection, embedder), kept in step with the database.

The database is the source of truth. Each search reads the collection's `index_version`; when it
moved, the index catches up by diffing chunk ids with the database (new chunks added, deleted ones
removed). Snapshots on disk make a restart fast; a snapshot that fails validation is rebuilt.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core import repository
from core.db import Database
from core.settings import IndexSettings
from retrieval.faiss_index import FaissIndex, SnapshotError, build_index, choose_kind

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    index: FaissIndex | None = None
    # The collection's index_version this index reflects; -1 means "never synced".
    version: int = -1
    saved_version: int = -1
    # How the index in memory came to be: "snapshot" (then caught up) or "database" (built).
    origin: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


class IndexStore:
    def __init__(self, db: Database, settings: IndexSettings, snapshot_dir: Path) -> None:
        self._db = db
        self._settings = settings
        self._dir = snapshot_dir
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._entries_lock = threading.Lock()
        self._deletion_hooks: list[Callable[[str], None]] = []

    def _entry(self, collection_id: str, embedder: str) -> _Entry:
        key = (collection_id, embedder)
        with self._entries_lock:
            return self._entries.setdefault(key, _Entry())

    def snapshot_path(self, collection_id: str, embedder: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", embedder)
        return self._dir / collection_id / f"{safe}.npz"

    def get(self, collection_id: str, embedder: str, version: int) -> FaissIndex | None:
        """The index at `version` or later; None when the collection has no vectors yet."""
        entry = self._entry(collection_id, embedder)
        if entry.version >= version and entry.index is not None:
            return entry.index
        with entry.lock:
            if entry.version < version or entry.index is None:
                self._sync(entry, collection_id, embedder)
            return entry.index

    def _sync(self, entry: _Entry, collection_id: str, embedder: str) -> None:
        # Read the version before the ids: every change bumps it in the same transaction, so
        # the ids read afterwards include at least everything up to this version.
        with self._db.session() as session:
            version, _ = repository.index_version(session, collection_id)
            db_ids = repository.embedding_ids(session, collection_id, embedder)
        if entry.index is None:
            entry.index = self._load_snapshot(collection_id, embedder)
            entry.origin = "snapshot"
        if entry.index is None or choose_kind(self._settings, len(db_ids)) != entry.index.kind:
            entry.index = self._build(collection_id, embedder)
            entry.origin = "database"
            entry.version = version
            return
        index_ids = entry.index.ids()
        missing = np.setdiff1d(db_ids, index_ids, assume_unique=True)
        gone = np.setdiff1d(index_ids, db_ids, assume_unique=True)
        if len(gone):
            entry.index.remove(gone)
        if len(missing):
            with self._db.session() as session:
                ids, vectors = repository.embedding_vectors(
                    session, collection_id, embedder, missing.tolist()
                )
            if len(ids) and vectors.shape[1] != entry.index.dim:
                entry.index = self._build(collection_id, embedder)
                entry.origin = "database"
            else:
                entry.index.add(ids, vectors)
        entry.version = version
        if entry.index is None or len(entry.index) != len(db_ids):
            # Chunks changed while we were catching up; the next search catches up again.
            entry.version = -1
        log.debug(
            "index %s/%s at version %s: +%d -%d",
            collection_id,
            embedder,
            version,
            len(missing),
            len(gone),
        )

    def _build(self, collection_id: str, embedder: str) -> FaissIndex | None:
        with self._db.session() as session:
            ids, vectors = repository.embedding_vectors(session, collection_id, embedder)
        if len(ids) == 0:
            return None
        return build_index(self._settings, ids, vectors, vectors.shape[1])

    def _load_snapshot(self, collection_id: str, embedder: str) -> FaissIndex | None:
        path = self.snapshot_path(collection_id, embedder)
        try:
            index, _ = FaissIndex.load(path, self._settings)
        except FileNotFoundError:
            return None
        except SnapshotError as exc:
            log.warning("discarding snapshot, rebuilding from the database: %s", exc)
            path.unlink(missing_ok=True)
            return None
        return index

    def rebuild(self, collection_id: str, embedder: str) -> FaissIndex | None:
        """Throw the in-memory index away and build it again from the database."""
        entry = self._entry(collection_id, embedder)
        with entry.lock:
            with self._db.session() as session:
                version, _ = repository.index_version(session, collection_id)
            entry.index = self._build(collection_id, embedder)
            entry.origin = "database"
            entry.version = version
            return entry.index

    def save_snapshots(self) -> int:
        """Write every index that changed since its last snapshot; returns how many were written."""
        with self._entries_lock:
            items = list(self._entries.items())
        written = 0
        for (collection_id, embedder), entry in items:
            with entry.lock:
                if entry.index is None or entry.version < 0 or entry.version == entry.saved_version:
                    continue
                entry.index.save(
                    self.snapshot_path(collection_id, embedder),
                    {
                        "collection_id": collection_id,
                        "embedder": embedder,
                        "version": entry.version,
                    },
                )
                entry.saved_version = entry.version
                written += 1
        return written

    def refresh(self, collection_id: str, embedder: str) -> FaissIndex | None:
        """Catch up with the database now, whatever the version says.

        For an embedder migration's target: its vectors arrive without version bumps (the
        collection does not serve them yet), so an index warmed ahead of the switch is kept
        close to complete and the switch itself only has a small diff to apply.
        """
        entry = self._entry(collection_id, embedder)
        with entry.lock:
            self._sync(entry, collection_id, embedder)
            return entry.index

    def retain(self, keep: set[tuple[str, str]]) -> None:
        """Forget in-memory indexes not in `keep` (their snapshots stay on disk)."""
        with self._entries_lock:
            for key in [k for k in self._entries if k not in keep]:
                del self._entries[key]

    def drop(self, collection_id: str, embedder: str) -> None:
        with self._entries_lock:
            self._entries.pop((collection_id, embedder), None)
        self.snapshot_path(collection_id, embedder).unlink(missing_ok=True)

    def on_collection_deleted(self, hook: Callable[[str], None]) -> None:
        """Register `hook(collection_id)`, called by `collection_deleted` after the FAISS state
        is gone: other derived state of a collection (BM25 data, say) attaches its cleanup
        here. A hook that raises is logged and does not stop the others."""
        self._deletion_hooks.append(hook)

    def collection_deleted(self, collection_id: str) -> None:
        """Forget every index of a deleted collection, in memory and its snapshots on disk
        (all embedders), then run the `on_collection_deleted` hooks. Call it after the
        database rows are gone; other API processes drop their copies in `retain`."""
        with self._entries_lock:
            for key in [k for k in self._entries if k[0] == collection_id]:
                del self._entries[key]
        shutil.rmtree(self._dir / collection_id, ignore_errors=True)
        for hook in self._deletion_hooks:
            try:
                hook(collection_id)
            except Exception:
                log.exception("cleanup after deleting collection %s failed", collection_id)

    def origin(self, collection_id: str, embedder: str) -> str:
        """Where the index in memory came from: "snapshot" or "database"."""
        return self._entry(collection_id, embedder).origin

    def loaded(self) -> dict[tuple[str, str], int]:
        """Vector counts of the indexes in memory (for health and metrics)."""
        with self._entries_lock:
            return {k: len(e.index) for k, e in self._entries.items() if e.index is not None}
