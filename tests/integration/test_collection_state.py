"""The per-process collection-state cache against real Postgres (LISTEN/NOTIFY) and SQLite
(data_version): a cached state costs no query, and a change committed elsewhere is seen."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, update

from core import repository
from core.collection_state import CollectionState, CollectionStates, PostgresWatcher
from core.db import Database
from core.migrate import upgrade
from core.models import Collection
from core.settings import Settings
from tests.integration.services import PG_HOST, PG_PORT


def count_queries(db: Database) -> list[str]:
    statements: list[str] = []

    @event.listens_for(db.engine, "before_cursor_execute")
    def _record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    return statements


def eventually(read: Callable[[], CollectionState], version: int) -> CollectionState:
    """Poll until the state shows `version` (Postgres delivers a notification right after the
    commit, not within it); fail after 10 s."""
    deadline = time.monotonic() + 10
    while (state := read()).index_version != version:
        assert time.monotonic() < deadline, f"still version {state.index_version}"
        time.sleep(0.01)
    return state


@pytest.fixture
def pg_db(pg_settings: Settings) -> Iterator[Database]:
    db = Database(pg_settings)
    yield db
    db.dispose()


def new_collection(db: Database) -> tuple[str, str]:
    name = f"state-{uuid.uuid4().hex[:8]}"
    with db.session() as session:
        collection_id = repository.create_collection(session, name, "all-MiniLM-L6-v2").id
    return name, collection_id


def bump_elsewhere(pg_url: str, collection_id: str) -> None:
    """Commit a version bump on a connection of its own, as a worker process does."""
    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE collections SET index_version = index_version + 1 WHERE id = %s",
            (collection_id,),
        )


def test_postgres_cached_state_costs_no_query_and_a_commit_elsewhere_drops_it(
    pg_db: Database, pg_settings: Settings
) -> None:
    name, collection_id = new_collection(pg_db)
    states = CollectionStates(pg_db)
    try:
        assert states.get(name) == CollectionState(collection_id, 0, "all-MiniLM-L6-v2", None)
        statements = count_queries(pg_db)
        assert states.get(name).index_version == 0
        assert states.peek(name) is not None
        assert statements == []  # answered from memory

        bump_elsewhere(pg_settings.database_url, collection_id)
        assert eventually(lambda: states.get(name), 1).id == collection_id
        assert statements  # read again after the notification
        assert states.peek(name) == states.get(name)

        # A deleted collection is not served from memory either.
        with pg_db.session() as session:
            repository.delete_collection(session, name)
        deadline = time.monotonic() + 10
        while states.peek(name) is not None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(Exception, match="does not exist"):
            states.get(name)
    finally:
        states.close()


def test_postgres_lost_listener_reads_the_database_then_listens_again(
    pg_db: Database, pg_settings: Settings
) -> None:
    name, collection_id = new_collection(pg_db)
    states = CollectionStates(pg_db)
    try:
        states.get(name)
        watcher = states._watcher
        assert isinstance(watcher, PostgresWatcher)
        listener_pid = watcher._conn.info.backend_pid
        with pg_db.engine.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_terminate_backend({listener_pid})")
        # Changes while nobody listens: the dead connection is noticed and the database read.
        bump_elsewhere(pg_settings.database_url, collection_id)
        assert eventually(lambda: states.get(name), 1).index_version == 1
        # Listening again after the retry interval: the cache answers again.
        deadline = time.monotonic() + 15
        while states.peek(name) is None:
            assert time.monotonic() < deadline, "the watcher never listened again"
            states.get(name)
            time.sleep(0.1)
        assert watcher._conn.info.backend_pid != listener_pid
        bump_elsewhere(pg_settings.database_url, collection_id)
        assert eventually(lambda: states.get(name), 2).index_version == 2
    finally:
        states.close()


def test_postgres_without_the_trigger_is_never_cached(pg_settings: Settings) -> None:
    """A database the migrations never reached sends no notifications: no cache at all."""
    admin = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=postgres"
    name = f"rag_notrigger_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    db = Database(
        pg_settings.model_copy(
            update={"database": pg_settings.database.model_copy(update={"url": url})}
        )
    )
    try:
        watcher = PostgresWatcher(db.engine, ping_s=5)
        assert watcher.changed(blocking=True) is None
        assert "no change trigger" in watcher._problem
        watcher.close()
    finally:
        db.dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[tuple[Database, Path]]:
    settings = Settings(data_dir=tmp_path)
    upgrade(settings)
    db = Database(settings)
    yield db, tmp_path / "rag.sqlite3"
    db.dispose()


def test_sqlite_commit_by_another_connection_is_seen_on_the_next_read(
    sqlite_db: tuple[Database, Path],
) -> None:
    db, path = sqlite_db
    assert path.exists()
    name, collection_id = new_collection(db)
    states = CollectionStates(db)
    try:
        assert states.get(name).index_version == 0
        statements = count_queries(db)
        assert states.get(name).index_version == 0
        assert statements == []
        # Another process (the CLI) writes the file: seen on the very next read.
        other = sqlite3.connect(path)
        with other:
            other.execute("UPDATE collections SET index_version = 7 WHERE id = ?", (collection_id,))
        other.close()
        assert states.get(name).index_version == 7
        # A write through this process's own engine as well.
        with db.session() as session:
            session.execute(
                update(Collection).where(Collection.id == collection_id).values(retrieval="dense")
            )
        assert states.get(name).retrieval == "dense"
    finally:
        states.close()


def test_a_read_that_raced_a_change_is_returned_but_not_kept(
    sqlite_db: tuple[Database, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, path = sqlite_db
    name, collection_id = new_collection(db)
    states = CollectionStates(db)
    real = repository.collection_state

    def racing(session: Any, wanted: str) -> tuple[str, int, str, str | None]:
        stale = real(session, wanted)
        # A change commits after this read, and another request notices it first.
        other = sqlite3.connect(path)
        with other:
            other.execute("UPDATE collections SET index_version = 3 WHERE id = ?", (collection_id,))
        other.close()
        assert states.peek(wanted) is None
        return stale

    try:
        monkeypatch.setattr(repository, "collection_state", racing)
        assert states.get(name).index_version == 0  # what this read saw
        monkeypatch.setattr(repository, "collection_state", real)
        assert states.peek(name) is None  # but it was not kept
        assert states.get(name).index_version == 3
    finally:
        states.close()


def test_disabled_cache_reads_every_time(sqlite_db: tuple[Database, Path]) -> None:
    db, _ = sqlite_db
    name, _ = new_collection(db)
    states = CollectionStates(db, enabled=False)
    states.get(name)
    statements = count_queries(db)
    states.get(name)
    assert statements
    assert states.peek(name) is None
