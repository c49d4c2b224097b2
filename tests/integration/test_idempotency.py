"""A task delivered more than once leaves exactly one copy of each chunk."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from app.services import Services
from core import repository
from core.models import Chunk, Document, DocumentStatus, Embedding
from retrieval.ingestion import Outcome, ingest_document
from tests.integration.conftest import WorkerProcess, new_collection, upload, wait_job
from workers.task_names import INGEST_DOCUMENT

GCOS = "foldoc-gcos-436.md"


def chunk_counts(services: Services, document_id: str) -> tuple[int, int]:
    with services.db.session() as session:
        chunks = session.scalar(select(func.count()).where(Chunk.document_id == document_id))
        vectors = session.scalar(
            select(func.count())
            .select_from(Embedding)
            .join(Chunk, Chunk.id == Embedding.chunk_id)
            .where(Chunk.document_id == document_id)
        )
    return int(chunks or 0), int(vectors or 0)


def test_task_delivered_twice_leaves_one_copy(
    api: TestClient, worker: WorkerProcess, corpus: Path
) -> None:
    services: Services = api.app.state.services  # type: ignore[attr-defined]
    name = new_collection(api)
    accepted = upload(api, name, [(GCOS, (corpus / GCOS).read_bytes())])
    wait_job(api, accepted["job_id"])
    document_id = accepted["documents"][0]["document_id"]
    first = chunk_counts(services, document_id)
    assert first[0] > 1 and first == (first[0], first[0])

    # A plain re-delivery: the worker sees the document is finished.
    result = worker.app.send_task(INGEST_DOCUMENT, args=[document_id])
    assert result.get(timeout=60)["outcome"] == Outcome.SKIPPED
    # A re-delivery that races past the status check (status forced back to queued): the
    # unique constraint is the guard.
    with services.db.session() as session:
        session.execute(
            update(Document).where(Document.id == document_id).values(status=DocumentStatus.QUEUED)
        )
    result = worker.app.send_task(INGEST_DOCUMENT, args=[document_id])
    assert result.get(timeout=60)["outcome"] == Outcome.SKIPPED
    assert chunk_counts(services, document_id) == first


def test_concurrent_deliveries_store_one_copy(api: TestClient, corpus: Path) -> None:
    """Two runs of the same document at once, in this process, against Postgres."""
    services: Services = api.app.state.services  # type: ignore[attr-defined]
    name = new_collection(api)
    data = (corpus / GCOS).read_bytes()
    with services.db.session() as session:
        collection = repository.get_collection(session, name)
        # Recorded without enqueueing, so the worker does not take it.
        _, outcomes = repository.create_ingest_job(
            session,
            collection,
            [
                repository.UploadedFile(
                    GCOS, "text/markdown", hashlib.sha256(data).hexdigest(), data
                )
            ],
            [],
        )
    document_id = outcomes[0].document_id
    results: list[Outcome] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        results.append(
            ingest_document(
                services.db, services.embedders, services.settings.ingest, document_id
            ).outcome
        )

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(results) == sorted([Outcome.READY, Outcome.SKIPPED])
    chunks, vectors = chunk_counts(services, document_id)
    assert chunks == vectors > 1


def test_queued_documents_are_picked_up_after_a_worker_restart(
    api: TestClient, worker: WorkerProcess, corpus: Path
) -> None:
    """Work sent while no worker runs waits in the broker and is done when one starts."""
    name = new_collection(api)
    worker.stop()
    try:
        accepted = upload(api, name, [(GCOS, (corpus / GCOS).read_bytes())])
        time.sleep(1)
        assert api.get(f"/admin/v1/jobs/{accepted['job_id']}").json()["status"] == "queued"
    finally:
        worker.start()
    assert wait_job(api, accepted["job_id"])["status"] == "succeeded"
