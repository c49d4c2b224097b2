"""The embedded default: SQLite, a local index, ingestion on an in-process worker thread."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from core import repository
from core.db import Database
from core.settings import EmbedderSettings, Settings
from retrieval.embedders import (
    DEFAULT_EMBEDDER,
    MINILM_INT8,
    MINILM_INT8_DYNAMIC,
    cpu_has_native_bf16,
)
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
    result = search(client, name, "atomicity consistency isolation durability")
    assert result["hits"][0]["filename"] == ACID
    # embedder.default auto: torch in bfloat16 where the CPU has it natively, else the int8
    # products export.
    expected = DEFAULT_EMBEDDER if cpu_has_native_bf16() else MINILM_INT8_DYNAMIC
    assert result["embedder"] == expected
    assert client.get(f"/v1/collections/{name}").json()["embedder"] == expected
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


def test_embedded_migration_switches_embedder_while_uploads_continue(
    make_client: Callable[..., TestClient], tmp_path: Path, corpus: Path
) -> None:
    client = make_client(Settings(data_dir=tmp_path))
    name = new_collection(client, embedder=DEFAULT_EMBEDDER)
    files = sorted(corpus.iterdir())[:12]
    accepted = upload(client, name, [(p.name, p.read_bytes()) for p in files])
    assert wait_job(client, accepted["job_id"])["status"] == "succeeded"

    started = client.post(
        f"/admin/v1/collections/{name}/embedder-migrations", json={"embedder": MINILM_INT8}
    )
    assert started.status_code == 202
    # Migrations run on their own thread: an upload is not held up behind them.
    late = upload(client, name, [(ACID, (corpus / ACID).read_bytes())])
    assert wait_job(client, late["job_id"])["status"] == "succeeded"
    job = wait_job(client, started.json()["job_id"])

    assert job["status"] == "succeeded", job
    info = client.get(f"/v1/collections/{name}").json()
    assert info["embedder"] == MINILM_INT8
    assert job["progress"]["done"] == info["chunks"]
    result = search(client, name, "atomicity consistency isolation durability")
    assert result["embedder"] == MINILM_INT8
    assert result["hits"][0]["filename"] == ACID


def test_migration_to_an_embedder_that_cannot_load_fails_its_job(
    make_client: Callable[..., TestClient], tmp_path: Path, corpus: Path
) -> None:
    missing = tmp_path / "no-such-model"
    settings = Settings(
        data_dir=tmp_path, embedder=EmbedderSettings(folders={"broken": str(missing)})
    )
    client = make_client(settings)
    name = new_collection(client, embedder=DEFAULT_EMBEDDER)
    accepted = upload(client, name, [(ACID, (corpus / ACID).read_bytes())])
    assert wait_job(client, accepted["job_id"])["status"] == "succeeded"

    started = client.post(
        f"/admin/v1/collections/{name}/embedder-migrations", json={"embedder": "broken"}
    )
    assert started.status_code == 202
    job = wait_job(client, started.json()["job_id"], timeout=60)

    assert job["status"] == "failed", "a step that gives up fails the job, never leaves it running"
    assert job["errors"] and "failed" in job["errors"][0]["message"]
    assert client.get(f"/v1/collections/{name}").json()["embedder"] == DEFAULT_EMBEDDER
    assert search(client, name, "atomicity")["hits"][0]["filename"] == ACID
