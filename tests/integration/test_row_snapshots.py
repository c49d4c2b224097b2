"""Chunk-row snapshots against real Postgres, a real worker and the real embedder: a search of a
small collection hydrates its hits without reading chunk rows, and a deletion committed by another
API process is never hidden by them, even before this process's state cache has heard of it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from app.services import Services
from core.settings import Settings
from tests.integration.conftest import (
    WorkerProcess,
    new_collection,
    search,
    services_of,
    upload,
    wait_job,
)
from tests.integration.test_index_lifecycle import BIOS, SMTP


def row_reads_on_request_threads(services: Services) -> list[str]:
    """Chunk-row reads made by searches themselves (not by the snapshot's own sync threads)."""
    reads: list[str] = []

    @event.listens_for(services.db.read_engine, "before_cursor_execute")
    def _record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        thread = threading.current_thread().name
        if "documents.filename, chunks.text" in statement and not thread.startswith("rag-rows"):
            reads.append(statement)

    return reads


def hits_of(body: dict[str, Any]) -> list[tuple[int, str, str]]:
    return [(h["chunk_id"], h["filename"], h["text"]) for h in body["hits"]]


def with_snapshot_rows(settings: Settings, data_dir: Path, rows: int) -> Settings:
    retrieval = settings.retrieval.model_copy(update={"snapshot_rows": rows})
    return settings.model_copy(update={"data_dir": data_dir, "retrieval": retrieval})


def ingest(client: TestClient, corpus: Path, *files: str) -> str:
    name = new_collection(client)
    job = upload(client, name, [(f, (corpus / f).read_bytes()) for f in files])
    assert wait_job(client, job["job_id"])["status"] == "succeeded"
    return name


def test_searches_use_the_snapshot_and_deletions_elsewhere_are_never_hidden(
    pg_settings: Settings,
    worker: WorkerProcess,
    make_client: Callable[..., TestClient],
    tmp_path: Path,
    corpus: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = make_client(pg_settings.model_copy(update={"data_dir": tmp_path / "a"}))
    services = services_of(client)
    name = ingest(client, corpus, BIOS, SMTP)
    reads = row_reads_on_request_threads(services)

    from_database = hits_of(search(client, name, "basic input output system"))
    assert reads, "the first search reads the rows (and starts the snapshot)"
    assert settled(client, reads, name, "basic input output system"), "still reading rows"
    reads.clear()
    from_snapshot = hits_of(search(client, name, "basic input output system"))
    assert not reads
    assert from_snapshot == from_database
    assert from_snapshot[0][1] == BIOS

    # Another API process deletes BIOS. This one's state cache is held at the old state, as
    # when the deletion's notification has not arrived yet: its index still holds BIOS.
    stale = services.searcher.states.get(name)
    monkeypatch.setattr(services.searcher.states, "get", lambda _name: stale)
    other = make_client(pg_settings.model_copy(update={"data_dir": tmp_path / "b"}))
    documents = other.get(f"/v1/collections/{name}/documents").json()["documents"]
    bios = next(d["document_id"] for d in documents if d["filename"] == BIOS)
    response = other.delete(f"/admin/v1/collections/{name}/documents/{bios}")
    assert response.status_code == 204, response.text

    reads.clear()
    hits = hits_of(search(client, name, "basic input output system"))
    assert hits and all(filename == SMTP for _, filename, _ in hits)
    assert reads, "the version moved on: the rows were read from the database"


def test_collections_over_the_limit_are_not_kept(
    pg_settings: Settings,
    worker: WorkerProcess,
    make_client: Callable[..., TestClient],
    tmp_path: Path,
    corpus: Path,
) -> None:
    settings = with_snapshot_rows(pg_settings, tmp_path, 1)
    client = make_client(settings)
    services = services_of(client)
    name = ingest(client, corpus, BIOS, SMTP)
    reads = row_reads_on_request_threads(services)
    for _ in range(5):
        search(client, name, "mail transfer protocol")
        time.sleep(0.1)  # time for a sync, which finds the collection too big
    assert len(reads) == 5


def settled(client: TestClient, reads: list[str], name: str, query: str) -> bool:
    """Search until a search reads no chunk rows (True) or 20 s pass (False)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        reads.clear()
        search(client, name, query)
        if not reads:
            return True
        time.sleep(0.05)
    return False


def test_the_least_recently_searched_collection_makes_room(
    pg_settings: Settings,
    worker: WorkerProcess,
    make_client: Callable[..., TestClient],
    tmp_path: Path,
    corpus: Path,
) -> None:
    # Room for one of these two-chunk collections.
    settings = with_snapshot_rows(pg_settings, tmp_path, 3)
    client = make_client(settings)
    first, second = ingest(client, corpus, BIOS), ingest(client, corpus, SMTP)
    reads = row_reads_on_request_threads(services_of(client))
    assert settled(client, reads, first, "BIOS")
    assert settled(client, reads, second, "SMTP")
    reads.clear()
    search(client, first, "BIOS")
    assert reads, "the first collection's snapshot was evicted for the second's"
