"""The API's index: snapshots across restarts, catching up, and rebuilding a bad snapshot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from core import repository
from core.settings import Settings
from tests.integration.conftest import (
    WorkerProcess,
    new_collection,
    search,
    services_of,
    upload,
    wait_job,
)

BIOS = "foldoc-basic-input-output-system-20.md"
SMTP = "foldoc-simple-mail-transfer-protocol-245.md"


def test_api_restart_reloads_snapshot_and_catches_up(
    pg_settings: Settings,
    worker: WorkerProcess,
    make_client: Callable[..., TestClient],
    tmp_path: Path,
    corpus: Path,
) -> None:
    settings = pg_settings.model_copy(update={"data_dir": tmp_path})
    first = make_client(settings)
    name = new_collection(first)
    wait_job(first, upload(first, name, [(BIOS, (corpus / BIOS).read_bytes())])["job_id"])
    assert search(first, name, "BIOS")["hits"][0]["filename"] == BIOS
    first.__exit__(None, None, None)  # shutdown writes the snapshot
    with services_of(first).db.session() as session:
        stored = repository.get_collection(session, name)
        collection_id, embedder = stored.id, stored.embedder
    snapshot = services_of(first).indexes.snapshot_path(collection_id, embedder)
    assert snapshot.exists()

    # While this API is down, another replica takes an upload.
    other = make_client(pg_settings.model_copy(update={"data_dir": tmp_path / "other"}))
    wait_job(other, upload(other, name, [(SMTP, (corpus / SMTP).read_bytes())])["job_id"])

    second = make_client(settings)
    hits = search(second, name, "mail transfer protocol")["hits"]
    assert hits[0]["filename"] == SMTP
    # Loaded from the snapshot and caught up, not rebuilt.
    assert services_of(second).indexes.origin(collection_id, embedder) == "snapshot"


def test_truncated_snapshot_is_rebuilt_from_the_database(
    pg_settings: Settings,
    worker: WorkerProcess,
    make_client: Callable[..., TestClient],
    tmp_path: Path,
    corpus: Path,
) -> None:
    settings = pg_settings.model_copy(update={"data_dir": tmp_path})
    first = make_client(settings)
    name = new_collection(first)
    wait_job(first, upload(first, name, [(BIOS, (corpus / BIOS).read_bytes())])["job_id"])
    search(first, name, "BIOS")
    first.__exit__(None, None, None)
    with services_of(first).db.session() as session:
        stored = repository.get_collection(session, name)
        collection_id, embedder = stored.id, stored.embedder
    snapshot = services_of(first).indexes.snapshot_path(collection_id, embedder)
    snapshot.write_bytes(snapshot.read_bytes()[:-200])

    second = make_client(settings)
    assert search(second, name, "BIOS")["hits"][0]["filename"] == BIOS
    assert services_of(second).indexes.origin(collection_id, embedder) == "database"
