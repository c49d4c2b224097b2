"""The chunk rows of small collections, kept in each API process so a search need not read them.

A search hydrates its hits from the database: each chunk's text, document and offsets, and only
chunks that still exist (API.md: a deleted document's chunks never appear afterwards). That
read follows the question's encode. By then the database's threads and this process's have
gone idle, and the read costs about 2 ms of a 7 ms search on a small collection. The same read
right after another one costs a third of that (docs/performance.md).

Each collection of at most `max_rows` chunks gets a snapshot of its rows here. The snapshot is
tagged with the index version read *before* them. Every change to which chunks exist (an ingest,
a deletion, a replacement) bumps that version in its own transaction, so at the tagged version
the snapshot holds exactly the collection's rows. A search reads the collection's version fresh,
on a pool thread while its question encodes, so the read's wake-up hides behind the encode. It
uses the snapshot only when that version equals the tag. It never trusts the collection-state
cache for this: another process's deletion reaches that cache by NOTIFY, possibly after the
DELETE has answered. When the versions differ, the search reads from the database as before,
and the snapshot is brought to the new version in the background. That sync works like
`DerivedIndexStore`'s (retrieval/derived_index_store.py): the ids are diffed and only missing
rows are read.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

from core import repository
from core.db import Database
from core.repository import ChunkRow

log = logging.getLogger(__name__)

# Rows read per statement while a snapshot syncs.
READ_BATCH = 1000


@dataclass
class _Snapshot:
    version: int = -1  # the index version the rows are exact at; -1: none yet
    rows: dict[int, ChunkRow] = field(default_factory=dict)  # replaced whole, never mutated
    syncing: bool = False
    # The version at which the collection held more than max_rows chunks (not kept).
    too_big_at: int | None = None


class ChunkRowSnapshots:
    """Per-process snapshots of the chunk rows of collections up to `max_rows` chunks in all.
    The least recently used snapshot goes first. `max_rows` 0 turns them off."""

    def __init__(self, db: Database, max_rows: int, workers: int = 4) -> None:
        self._db = db
        self._max_rows = max_rows
        self._lock = threading.Lock()
        self._snapshots: OrderedDict[str, _Snapshot] = OrderedDict()
        self._pool = (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rag-rows")
            if max_rows > 0
            else None
        )

    def fresh_version(self, collection_id: str, state_version: int) -> Future[int] | None:
        """Start reading the collection's index version from the database. None when there is
        nothing to use it for: snapshots are off, or the collection was too big to keep at the
        version the caller's state names."""
        if self._pool is None:
            return None
        with self._lock:
            snapshot = self._snapshots.get(collection_id)
            if snapshot is not None and snapshot.too_big_at == state_version:
                return None
        return self._pool.submit(
            self._db.read, lambda session: repository.index_version(session, collection_id)[0]
        )

    def rows(self, collection_id: str, version: int) -> dict[int, ChunkRow] | None:
        """The collection's rows when its snapshot is exact at `version`, a version just read
        from the database. Otherwise None (read the database), and a sync starts."""
        if self._pool is None:
            return None
        with self._lock:
            snapshot = self._snapshots.setdefault(collection_id, _Snapshot())
            self._snapshots.move_to_end(collection_id)
            if snapshot.version == version:
                return snapshot.rows
            if snapshot.syncing or snapshot.too_big_at == version:
                return None
            snapshot.syncing = True
        self._pool.submit(self._sync, collection_id, snapshot)
        return None

    def drop(self, collection_id: str) -> None:
        """Forget a collection (deleted)."""
        with self._lock:
            self._snapshots.pop(collection_id, None)

    def retain(self, keep: set[str]) -> None:
        """Forget the collections not in `keep` (deleted through another process)."""
        with self._lock:
            for collection_id in [c for c in self._snapshots if c not in keep]:
                del self._snapshots[collection_id]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _sync(self, collection_id: str, snapshot: _Snapshot) -> None:
        try:
            # The version first: the ids read after it hold every change up to it. A collection
            # too big to keep is known by its count, without reading all its ids; the ids are
            # checked again, as chunks may have arrived between the two reads.
            version, chunks = self._db.read(
                lambda session: (
                    repository.index_version(session, collection_id)[0],
                    repository.collection_counts(session, collection_id)[1],
                )
            )
            ids = (
                self._db.read(partial(repository.chunk_ids, collection_id=collection_id))
                if chunks <= self._max_rows
                else None
            )
            if ids is None or len(ids) > self._max_rows:
                with self._lock:
                    snapshot.version, snapshot.rows, snapshot.too_big_at = -1, {}, version
                return
            known = snapshot.rows
            wanted = [int(i) for i in ids]
            missing = [i for i in wanted if i not in known]
            fetched: dict[int, ChunkRow] = {}
            for start in range(0, len(missing), READ_BATCH):
                part = missing[start : start + READ_BATCH]
                fetched.update(self._db.read(partial(repository.chunk_rows, chunk_ids=part)))
            rows = {i: row for i in wanted if (row := known.get(i) or fetched.get(i)) is not None}
            with self._lock:
                if self._snapshots.get(collection_id) is not snapshot:
                    return  # dropped or evicted meanwhile
                snapshot.version, snapshot.rows, snapshot.too_big_at = version, rows, None
                self._evict(keep=collection_id)
        except Exception as exc:  # the searches read the database meanwhile; the next retries
            log.warning("chunk-row snapshot of collection %s not updated: %s", collection_id, exc)
        finally:
            with self._lock:
                snapshot.syncing = False

    def _evict(self, keep: str) -> None:
        """Drop the least recently used snapshots until all fit in max_rows (lock held)."""
        total = sum(len(s.rows) for s in self._snapshots.values())
        for collection_id in list(self._snapshots):
            if total <= self._max_rows:
                break
            if collection_id != keep:
                total -= len(self._snapshots.pop(collection_id).rows)
