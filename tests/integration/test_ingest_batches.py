"""Several documents ingested as one task: one encoder call, one transaction, and the
one-at-a-time rules when that transaction cannot take them all (real Postgres, real embedder)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app.services import Services
from core import repository
from core.models import Document, DocumentStatus
from retrieval import ingestion
from retrieval.ingestion import Outcome, ingest_document, ingest_documents
from tests.integration.conftest import new_collection
from tests.integration.test_idempotency import chunk_counts
from workers.queue import document_batches

NAMES = ["foldoc-gcos-436.md", "foldoc-basic-input-output-system-20.md"]


def record(services: Services, collection: str, files: list[tuple[str, bytes]]) -> list[str]:
    """Documents recorded as an upload but not enqueued, so no worker takes them."""
    uploaded = [
        repository.UploadedFile(
            name,
            "text/markdown" if name.endswith(".md") else "text/plain",
            hashlib.sha256(data).hexdigest(),
            data,
        )
        for name, data in files
    ]
    with services.db.session() as session:
        target = repository.get_collection(session, collection)
        _, outcomes = repository.create_ingest_job(session, target, uploaded, [])
    return [o.document_id for o in outcomes]


def job_of(services: Services, document_id: str) -> dict[str, Any]:
    with services.db.session() as session:
        document = session.get(Document, document_id)
        assert document is not None and document.job_id is not None
        job = repository.get_job(session, document.job_id)
        return {"status": job.status, "done": job.done, "total": job.total}


def test_documents_of_a_task_share_one_encoder_call_and_a_broken_one_fails_alone(
    api: TestClient, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services: Services = api.app.state.services  # type: ignore[attr-defined]
    name = new_collection(api)
    files = [(n, (corpus / n).read_bytes()) for n in NAMES]
    ids = record(services, name, [files[0], ("empty.txt", b""), files[1]])
    embedder = services.embedders.get(services.embedders.default_id())
    calls: list[int] = []
    real = type(embedder).embed_documents

    def counting(self: Any, texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return real(self, texts)

    monkeypatch.setattr(type(embedder), "embed_documents", counting)
    results = ingest_documents(services.db, services.embedders, services.settings.ingest, ids)

    assert [r.outcome for r in results] == [Outcome.READY, Outcome.FAILED, Outcome.READY]
    assert len(calls) == 1, "one encoder call for both documents' chunks"
    assert calls[0] == results[0].chunks + results[2].chunks
    for document_id in (ids[0], ids[2]):
        chunks, vectors = chunk_counts(services, document_id)
        assert chunks == vectors > 0
    assert job_of(services, ids[0]) == {"status": "succeeded", "done": 3, "total": 3}


def ingest_with_a_race(
    api: TestClient,
    corpus: Path,
    monkeypatch: pytest.MonkeyPatch,
    race: Callable[[Services, str, list[str]], None],
) -> tuple[Services, list[str], list[Outcome]]:
    """Ingest NAMES as one task, running `race(services, collection, ids)` while it embeds."""
    services: Services = api.app.state.services  # type: ignore[attr-defined]
    name = new_collection(api)
    ids = record(services, name, [(n, (corpus / n).read_bytes()) for n in NAMES])
    real = ingestion._embed_together

    def racing(embedders: Any, parsed: list[Any]) -> dict[str, np.ndarray]:
        race(services, name, ids)
        return real(embedders, parsed)

    monkeypatch.setattr(ingestion, "_embed_together", racing)
    results = ingest_documents(services.db, services.embedders, services.settings.ingest, ids)
    return services, ids, [r.outcome for r in results]


def test_a_document_stored_meanwhile_sends_the_task_back_to_one_at_a_time(
    api: TestClient, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def store_first(services: Services, _name: str, ids: list[str]) -> None:
        # Another delivery stores the first document while this task embeds, and its status
        # reads unfinished again (a re-delivery that raced past the check): only the unique
        # constraint can tell, and it fails the whole transaction.
        settings = services.settings.ingest
        assert ingest_document(services.db, services.embedders, settings, ids[0]).outcome
        with services.db.session() as session:
            session.execute(
                update(Document)
                .where(Document.id == ids[0])
                .values(status=DocumentStatus.PROCESSING)
            )

    services, ids, outcomes = ingest_with_a_race(api, corpus, monkeypatch, store_first)
    assert outcomes == [Outcome.SKIPPED, Outcome.READY]
    first = chunk_counts(services, ids[0])
    assert first[0] > 0 and first[0] == first[1], "one copy of the raced document"
    assert chunk_counts(services, ids[1])[0] > 0, "the other was stored alone"


def test_a_collection_deleted_while_embedding_skips_its_documents(
    api: TestClient, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def delete(_services: Services, name: str, _ids: list[str]) -> None:
        assert api.delete(f"/admin/v1/collections/{name}").status_code == 204

    _, _, outcomes = ingest_with_a_race(api, corpus, monkeypatch, delete)
    assert outcomes == [Outcome.SKIPPED, Outcome.SKIPPED]


def test_uploads_are_split_into_tasks_in_order() -> None:
    ids = [f"d{i}" for i in range(5)]
    assert document_batches(ids, 2) == [[["d0", "d1"]], [["d2", "d3"]], [["d4"]]]
    assert document_batches(ids, 8) == [[ids]]
    assert document_batches(ids, 0) == [[[i]] for i in ids]
    assert document_batches([], 8) == []
