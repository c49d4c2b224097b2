"""The embedded default: SQLite, a local index, ingestion on an in-process worker thread."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from core import repository
from core.db import Database
from core.settings import Settings
from tests.integration.conftest import new_collection, search, upload, wait_job

ACID = "foldoc-acid-293.md"
BIOS = "foldoc-basic-input-output-system-20.md"


def test_embedded_default_ingests_and_searches(
    make_client: Callable[..., TestClient], tmp_path: Path, corpus: Path
) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.embedded_worker and settings.database_url.startswith("sqlite")
    client = make_client(settings)
    ready = client.get("/readyz").json()
    assert ready["status"] == "ok"
    assert ready["checks"]["broker"].startswith("embedded")

    name = new_collection(client)
    accepted = upload(
        client, name, [(ACID, (corpus / ACID).read_bytes()), ("bad.pdf", b"%PDF-1.4 junk")]
    )
    job = wait_job(client, accepted["job_id"])
    assert job["status"] == "succeeded"
    assert [e["filename"] for e in job["errors"]] == ["bad.pdf"]
    hits = search(client, name, "atomicity consistency isolation durability")["hits"]
    assert hits[0]["filename"] == ACID
    assert (tmp_path / "rag.sqlite3").exists()


def test_embedded_restart_finishes_documents_left_queued(
    make_client: Callable[..., TestClient], tmp_path: Path, corpus: Path
) -> None:
    settings = Settings(data_dir=tmp_path)
    first = make_client(settings)
    name = new_collection(first)
    first.__exit__(None, None, None)

    # A document recorded as queued whose work was lost (say, the process was killed).
    data = (corpus / BIOS).read_bytes()
    db = Database(settings)
    with db.session() as session:
        collection = repository.get_collection(session, name)
        job, _ = repository.create_ingest_job(
            session,
            collection,
            [
                repository.UploadedFile(
                    BIOS, "text/markdown", hashlib.sha256(data).hexdigest(), data
                )
            ],
            [],
        )
        job_id = job.id
    db.dispose()

    second = make_client(settings)
    assert wait_job(second, job_id)["status"] == "succeeded"
    assert search(second, name, "BIOS")["hits"][0]["filename"] == BIOS
