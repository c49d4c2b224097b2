"""Indexes derived from the database, kept in step with it: one store, whatever the index.

The database is the source of truth; an index (FAISS over one embedder's vectors, BM25 over
chunk text) is a cache of it, kept per key: (collection, embedder) for FAISS, the collection for
BM25. Each search reads the collection's `index_version`; when it moved, the index catches up by
diffing chunk ids with the database (missing ones added, gone ones removed). Snapshots on disk
make a restart fast; a snapshot that fails validation is deleted and the index rebuilt.

An `IndexKind` says what differs between kinds of index: how one is built from the database,
loaded from a snapshot and caught up, and where its snapshots live (retrieval/index_store.py
for FAISS, retrieval/bm25_store.py for BM25). Everything else is here, once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
from sqlalchemy.orm import Session

from core import repository
from core.db import Database
from retrieval.snapshot_file import SnapshotError

log = logging.getLogger(__name__)


class DerivedIndex(Protocol):
    """What the store needs of an index: its ids, removal, size and snapshot writing."""

    def __len__(self) -> int: ...
    def ids(self) -> np.ndarray: ...
    def remove(self, ids: np.ndarray) -> None: ...
    def save(self, path: Path, meta: dict[str, Any]) -> None: ...


K = TypeVar("K", bound=Hashable)
K_contra = TypeVar("K_contra", contravariant=True)
IndexT = TypeVar("IndexT", bound=DerivedIndex)


class IndexKind(Protocol[K_contra, IndexT]):
    """A kind of derived index (FAISS, BM25), its indexes kept under keys of type `K_contra`."""

    snapshot_label: str  # names its snapshots in the warning when one is discarded

    def collection_id(self, key: K_contra, /) -> str: ...  # whose index_version it follows
    def describe(self, key: K_contra, /) -> str: ...  # the index in log lines
    def snapshot_path(self, key: K_contra, /) -> Path: ...
    def snapshot_meta(self, key: K_contra, /) -> dict[str, Any]: ...  # the store adds "version"
    def db_ids(self, session: Session, key: K_contra, /) -> np.ndarray:
        """The ids the index must hold, read in the session that read the version."""
        ...

    def build(self, db: Database, key: K_contra, /) -> IndexT | None:
        """A new index of what the database holds now; None when there is nothing to index."""
        ...

    def load(self, path: Path, /) -> IndexT:
        """The snapshot at `path`; raises FileNotFoundError, or SnapshotError when invalid."""
        ...

    def outgrown(self, index: IndexT, count: int, /) -> bool:
        """Whether an index that is to hold `count` ids is built anew instead of caught up."""
        ...

    def add_missing(
        self, db: Database, key: K_contra, index: IndexT, missing: np.ndarray, /
    ) -> bool:
        """Read the rows of the `missing` ids and add them to `index`. False when they do not
        fit it (FAISS: the embedder's dimension changed); the index is then built anew."""
        ...


@dataclass
class _Entry(Generic[IndexT]):
    index: IndexT | None = None
    # The collection's index_version this index reflects; -1 means "never synced".
    version: int = -1
    saved_version: int = -1
    # How the index in memory came to be: "snapshot" (then caught up) or "database" (built).
    origin: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


class DerivedIndexStore(Generic[K, IndexT]):
    """One kind's indexes in this process, by key. Thread-safe: each index has a lock that its
    syncs, rebuilds and snapshot writes hold; a search of an index that is current takes none.
    """

    def __init__(self, db: Database, kind: IndexKind[K, IndexT]) -> None:
        self._db = db
        self._kind = kind
        self._entries: dict[K, _Entry[IndexT]] = {}
        self._entries_lock = threading.Lock()

    def _entry(self, key: K) -> _Entry[IndexT]:
        with self._entries_lock:
            return self._entries.setdefault(key, _Entry())

    def snapshot_path(self, key: K) -> Path:
        return self._kind.snapshot_path(key)

    def get(self, key: K, version: int) -> IndexT | None:
        """The index at `version` or later; None when there is nothing to index yet."""
        entry = self._entry(key)
        if entry.version >= version and entry.index is not None:
            return entry.index
        with entry.lock:
            if entry.version < version or entry.index is None:
                self._sync(entry, key)
            return entry.index

    def refresh(self, key: K) -> IndexT | None:
        """Catch up with the database now, whatever the version says."""
        entry = self._entry(key)
        with entry.lock:
            self._sync(entry, key)
            return entry.index

    def _sync(self, entry: _Entry[IndexT], key: K) -> None:
        kind = self._kind
        # Read the version before the ids: every change bumps it in the same transaction, so
        # the ids read afterwards include at least everything up to this version.
        with self._db.session() as session:
            version, _ = repository.index_version(session, kind.collection_id(key))
            db_ids = kind.db_ids(session, key)
        if entry.index is None:
            entry.index = self._load_snapshot(key)
            entry.origin = "snapshot"
        if entry.index is None or kind.outgrown(entry.index, len(db_ids)):
            entry.index = kind.build(self._db, key)
            entry.origin = "database"
            entry.version = version
            return
        index_ids = entry.index.ids()
        missing = np.setdiff1d(db_ids, index_ids, assume_unique=True)
        gone = np.setdiff1d(index_ids, db_ids, assume_unique=True)
        if len(gone):
            entry.index.remove(gone)
        if len(missing) and not kind.add_missing(self._db, key, entry.index, missing):
            entry.index = kind.build(self._db, key)
            entry.origin = "database"
        entry.version = version
        if entry.index is None or len(entry.index) != len(db_ids):
            # Chunks changed while we were catching up; the next search catches up again.
            entry.version = -1
        log.debug("%s at version %s: +%d -%d", kind.describe(key), version, len(missing), len(gone))

    def _load_snapshot(self, key: K) -> IndexT | None:
        path = self._kind.snapshot_path(key)
        try:
            return self._kind.load(path)
        except FileNotFoundError:
            return None
        except SnapshotError as exc:
            label = self._kind.snapshot_label
            log.warning("discarding %s, rebuilding from the database: %s", label, exc)
            path.unlink(missing_ok=True)
            return None

    def rebuild(self, key: K) -> IndexT | None:
        """Throw the in-memory index away and build it again from the database."""
        entry = self._entry(key)
        with entry.lock:
            with self._db.session() as session:
                version, _ = repository.index_version(session, self._kind.collection_id(key))
            entry.index = self._kind.build(self._db, key)
            entry.origin = "database"
            entry.version = version
            return entry.index

    def save_snapshots(self) -> int:
        """Write every index that changed since its last snapshot; returns how many were written."""
        with self._entries_lock:
            items = list(self._entries.items())
        written = 0
        for key, entry in items:
            with entry.lock:
                if entry.index is None or entry.version < 0 or entry.version == entry.saved_version:
                    continue
                meta = dict(self._kind.snapshot_meta(key), version=entry.version)
                entry.index.save(self._kind.snapshot_path(key), meta)
                entry.saved_version = entry.version
                written += 1
        return written

    def retain(self, keep: set[K]) -> None:
        """Forget in-memory indexes not in `keep` (their snapshots stay on disk)."""
        with self._entries_lock:
            for key in [k for k in self._entries if k not in keep]:
                del self._entries[key]

    def drop(self, key: K) -> None:
        """Forget an index and delete its snapshot."""
        with self._entries_lock:
            self._entries.pop(key, None)
        self._kind.snapshot_path(key).unlink(missing_ok=True)

    def forget_collection(self, collection_id: str) -> None:
        """Forget every in-memory index of a collection (its snapshots stay on disk)."""
        with self._entries_lock:
            for key in [k for k in self._entries if self._kind.collection_id(k) == collection_id]:
                del self._entries[key]

    def origin(self, key: K) -> str:
        """Where the index in memory came from: "snapshot" or "database"."""
        return self._entry(key).origin

    def loaded(self) -> dict[K, int]:
        """Sizes of the indexes in memory (for health and metrics)."""
        with self._entries_lock:
            return {k: len(e.index) for k, e in self._entries.items() if e.index is not None}
