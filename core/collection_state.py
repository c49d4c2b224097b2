"""Collection states (id, index version, active embedder, retrieval mode) cached per process.

Every search and every query needs its collection's state, and reading it costs a database
round trip per request (0.8 ms of a 7 ms search on Postgres). The state changes on every ingest
and delete (the index version), every embedder switch and retrieval-mode change, and those
changes come from other processes (Celery workers, the CLI), so the cache is only used while a
watcher can tell, before every read, whether anything changed since:

- Postgres: a trigger on `collections` (migration 0006) sends NOTIFY on `rag_collections` when
  a change commits. The cache holds one LISTEN connection and, before every read, takes what has
  arrived on its socket without waiting (a non-blocking `recv`). Any notification empties the
  cache. A change is seen as soon as Postgres has delivered its notification, which it does
  right after the commit, in about the time one query takes; a reader that learned of the
  change through another request (a finished job) is behind it. The connection is checked with
  a `SELECT 1` when it has been quiet for `ping_s`; while it is down or the trigger is missing,
  every read goes to the database, as without the cache.
- SQLite: `PRAGMA data_version` on a connection of the cache's own changes whenever another
  connection, in this process or any other, commits to the file. A change empties the cache.

A read that raced a change never stores what it read: each change bumps a generation, and a
state read under an older generation is returned but not kept.
"""

from __future__ import annotations

import logging
import select
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Engine

from core import repository
from core.db import Database

log = logging.getLogger(__name__)

CHANNEL = "rag_collections"


@dataclass(frozen=True)
class CollectionState:
    id: str
    index_version: int
    embedder: str
    # The collection's own retrieval mode; None follows the server default.
    retrieval: str | None


class Watcher(Protocol):
    def changed(self, blocking: bool) -> bool | None:
        """Whether anything changed since the last call (True also after a reconnect, when
        changes may have been missed); None when it cannot tell (down, or busy and not
        `blocking`): read the database."""
        ...

    def close(self) -> None: ...


class CollectionStates:
    """Collection states by name, read from the database on a miss."""

    def __init__(self, db: Database, *, enabled: bool = True, ping_s: float = 5.0) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._items: dict[str, CollectionState] = {}
        self._generation = 0
        self._watcher: Watcher | None = make_watcher(db.engine, ping_s) if enabled else None

    def get(self, name: str) -> CollectionState:
        """The state of a collection (RagError collection_not_found when it does not exist)."""
        cached, generation = self._lookup(name, blocking=True)
        if cached is not None:
            return cached
        with self._db.session() as session:
            collection_id, version, embedder, retrieval = repository.collection_state(session, name)
        state = CollectionState(collection_id, version, embedder, retrieval)
        if generation is not None:
            with self._lock:
                if generation == self._generation:
                    self._items[name] = state
        return state

    def peek(self, name: str) -> CollectionState | None:
        """The cached state, when it is known to be current without waiting on anything (for
        the event loop); None means: call `get` from a thread."""
        return self._lookup(name, blocking=False)[0]

    def _lookup(self, name: str, blocking: bool) -> tuple[CollectionState | None, int | None]:
        """(the cached state or None, the generation a fresh read may be stored under, None
        when it must not be stored)."""
        if self._watcher is None:
            return None, None
        changed = self._watcher.changed(blocking)
        with self._lock:
            if changed is None or changed:
                self._items.clear()
                self._generation += 1
            if changed is None:
                return None, None
            return self._items.get(name), self._generation

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
        with self._lock:
            self._items.clear()


def make_watcher(engine: Engine, ping_s: float) -> Watcher | None:
    if engine.dialect.name == "postgresql":
        return PostgresWatcher(engine, ping_s)
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        return SqliteWatcher(str(engine.url.database))
    return None


class SqliteWatcher:
    """`PRAGMA data_version` on a connection of its own: it changes when any other connection
    commits to the file."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, timeout=0, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._version: int | None = None

    def changed(self, blocking: bool) -> bool | None:
        if not self._lock.acquire(blocking=blocking):
            return None
        try:
            version = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
            changed = version != self._version
            self._version = version
            return changed
        except sqlite3.Error as exc:
            log.warning("collection-state watcher: %s", exc)
            return None
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresWatcher:
    """A LISTEN connection, drained without waiting before every read."""

    RETRY_S = 2.0

    def __init__(
        self, engine: Engine, ping_s: float, connect: Callable[[], Any] | None = None
    ) -> None:
        self._dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._ping_s = ping_s
        self._connect = connect or self._listen
        self._lock = threading.Lock()
        self._conn: Any = None
        self._last_ok = 0.0
        self._next_try = 0.0
        self._closed = False
        # Set by psycopg when a query it runs (the ping) reads a notification.
        self._notified = False
        self._problem = ""

    def _listen(self) -> Any:
        import psycopg

        conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=2)
        try:
            found = conn.execute(
                "SELECT 1 FROM pg_trigger WHERE tgname = 'collections_notify'"
            ).fetchone()
            if found is None:
                raise RuntimeError(
                    "collections have no change trigger (run the database migrations)"
                )
            conn.add_notify_handler(self._on_notify)
            conn.execute(f"LISTEN {CHANNEL}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _on_notify(self, _notify: Any) -> None:
        self._notified = True

    def changed(self, blocking: bool) -> bool | None:
        if self._closed or not self._lock.acquire(blocking=blocking):
            return None
        try:
            return self._changed()
        finally:
            self._lock.release()

    def _changed(self) -> bool | None:
        now = time.monotonic()
        if self._conn is None:
            if now < self._next_try:
                return None
            try:
                self._conn = self._connect()
            except Exception as exc:
                self._next_try = now + self.RETRY_S
                self._warn(f"collection states are read from the database on every request: {exc}")
                return None
            if self._problem:
                log.info("collection-state watcher listening again")
                self._problem = ""
            self._last_ok = now
            return True  # anything may have changed while nobody listened
        try:
            pgconn = self._conn.pgconn
            if now - self._last_ok > self._ping_s:
                # A connection that died without a word (a dropped network) reads as quiet.
                self._conn.execute("SELECT 1")
            else:
                pgconn.consume_input()  # never blocks: libpq's socket is non-blocking
            self._last_ok = now
            changed, self._notified = self._notified, False
            while pgconn.notifies() is not None:
                changed = True
            return changed
        except Exception as exc:
            self._warn(f"collection-state watcher lost its connection: {exc}")
            self._drop()
            return None

    def _warn(self, problem: str) -> None:
        if problem != self._problem:  # once per problem, not once per request
            log.warning("%s", problem)
            self._problem = problem

    def wait(self, timeout: float) -> bool:
        """Block until a notification may have arrived (tests); True when the socket is ready."""
        conn = self._conn
        if conn is None:
            return False
        ready, _, _ = select.select([conn.pgconn.socket], [], [], timeout)
        return bool(ready)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._next_try = time.monotonic() + self.RETRY_S
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:  # closing a dead connection: nothing left to do
                log.debug("closing the LISTEN connection: %s", exc)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop()
