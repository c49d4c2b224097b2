"""Embedder migration against real Postgres, Redis and a Celery worker, between the two real
embedders (all-MiniLM-L6-v2 on torch, and its int8 ONNX export on onnxruntime)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core import repository
from core.db import Database
from core.settings import RedisSettings, Settings
from retrieval.embedders import DEFAULT_EMBEDDER, MINILM_INT8
from tests.integration.conftest import (
    WorkerProcess,
    new_collection,
    search,
    upload,
    wait_job,
)
from tests.integration.fakes import NothingRelevant
from tests.integration.test_query import CACHE_REDIS

BIOS = "foldoc-basic-input-output-system-20.md"
QUESTION = "What does BIOS stand for?"


def documents(corpus: Path, count: int, skip: int = 0) -> list[tuple[str, bytes]]:
    paths = sorted(p for p in corpus.iterdir() if p.name != BIOS)[skip : skip + count]
    return [(p.name, p.read_bytes()) for p in paths]


def ingest(client: TestClient, corpus: Path, count: int) -> str:
    # From the torch model to its int8 export (new collections default to int8 on CPU).
    name = new_collection(client, "m", DEFAULT_EMBEDDER)
    files = [(BIOS, (corpus / BIOS).read_bytes()), *documents(corpus, count)]
    accepted = upload(client, name, files)
    assert wait_job(client, accepted["job_id"])["status"] == "succeeded"
    return name


def start_migration(client: TestClient, name: str, embedder: str = MINILM_INT8) -> str:
    response = client.post(
        f"/admin/v1/collections/{name}/embedder-migrations", json={"embedder": embedder}
    )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def collection(client: TestClient, name: str) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/v1/collections/{name}").json()
    return body


def vectors_per_embedder(settings: Settings, name: str) -> dict[str, int]:
    db = Database(settings)
    try:
        with db.session() as session:
            collection_id = repository.get_collection(session, name).id
            return {
                e: repository.count_embeddings(session, collection_id, e)
                for e in (DEFAULT_EMBEDDER, MINILM_INT8)
            }
    finally:
        db.dispose()


def assert_complete(client: TestClient, settings: Settings, name: str) -> None:
    """The active embedder has exactly one vector per chunk, in the database and the index."""
    info = collection(client, name)
    assert vectors_per_embedder(settings, name)[info["embedder"]] == info["chunks"]
    rebuilt = client.post(f"/admin/v1/collections/{name}/index/rebuild").json()
    assert rebuilt["vectors"] == info["chunks"]
    assert rebuilt["embedder"] == info["embedder"]


def test_embedders_lists_both_real_models(api: TestClient) -> None:
    embedders = {e["id"]: e for e in api.get("/v1/embedders").json()["embedders"]}
    assert embedders[DEFAULT_EMBEDDER] == {
        "id": DEFAULT_EMBEDDER,
        "dim": 384,
        "backend": "sentence-transformers",
    }
    assert embedders[MINILM_INT8]["backend"] == "onnx"


def test_migration_switches_once_while_searches_keep_answering(
    api: TestClient, pg_settings: Settings, corpus: Path
) -> None:
    name = ingest(api, corpus, 40)
    seen: list[tuple[str, str]] = []
    failures: list[str] = []
    stop = threading.Event()

    def search_loop() -> None:
        while not stop.is_set():
            response = api.post(
                "/v1/search", json={"collection": name, "query": QUESTION, "top_k": 3}
            )
            if response.status_code != 200:
                failures.append(f"{response.status_code} {response.text}")
                continue
            body = response.json()
            seen.append((body["embedder"], body["hits"][0]["filename"]))

    searcher = threading.Thread(target=search_loop)
    searcher.start()
    try:
        time.sleep(0.5)
        job = wait_job(api, start_migration(api, name))
        time.sleep(1.0)
    finally:
        stop.set()
        searcher.join()

    assert job["status"] == "succeeded", job
    assert job["kind"] == "embedder_migration"
    assert job["progress"]["done"] == job["progress"]["total"] == collection(api, name)["chunks"]
    assert failures == []
    order = [embedder for embedder, _ in seen]
    assert order[0] == DEFAULT_EMBEDDER and order[-1] == MINILM_INT8
    switches = sum(1 for a, b in zip(order, order[1:], strict=False) if a != b)
    assert switches == 1, "results switch from the old index to the new one at one point"
    assert all(filename == BIOS for _, filename in seen), "both indexes find the right document"
    info = collection(api, name)
    assert (info["embedder"], info["previous_embedder"]) == (MINILM_INT8, DEFAULT_EMBEDDER)
    assert_complete(api, pg_settings, name)


def test_killed_worker_resumes_the_migration_without_duplicates(
    api: TestClient, worker: WorkerProcess, pg_settings: Settings, corpus: Path
) -> None:
    name = ingest(api, corpus, 60)
    job_id = start_migration(api, name)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        progress = api.get(f"/admin/v1/jobs/{job_id}").json()["progress"]
        if progress["done"] > 0:
            break
        time.sleep(0.02)
    worker.kill()
    killed_at = api.get(f"/admin/v1/jobs/{job_id}").json()
    assert killed_at["status"] == "running"
    assert 0 < killed_at["progress"]["done"] < killed_at["progress"]["total"]
    assert collection(api, name)["embedder"] == DEFAULT_EMBEDDER

    worker.start()  # resumes the job: only chunks still lacking a vector are planned again
    job = wait_job(api, job_id)

    assert job["status"] == "succeeded", job
    assert collection(api, name)["embedder"] == MINILM_INT8
    assert_complete(api, pg_settings, name)
    assert search(api, name, QUESTION)["hits"][0]["filename"] == BIOS


def test_uploads_and_deletes_during_a_migration_are_in_the_new_index(
    api: TestClient, pg_settings: Settings, corpus: Path
) -> None:
    name = ingest(api, corpus, 30)
    listed = api.get(f"/v1/collections/{name}/documents").json()["documents"]
    doomed = [d for d in listed if d["filename"] != BIOS][:3]
    job_id = start_migration(api, name)
    # The worker is busy with the migration's batches: this upload is stored mid-migration
    # and the deletes happen before the switch.
    late = documents(corpus, 4, skip=200)
    accepted = upload(api, name, late)
    for document in doomed:
        response = api.delete(f"/admin/v1/collections/{name}/documents/{document['document_id']}")
        assert response.status_code == 204
    assert wait_job(api, accepted["job_id"])["status"] == "succeeded"
    job = wait_job(api, job_id)

    assert job["status"] == "succeeded", job
    assert collection(api, name)["embedder"] == MINILM_INT8
    assert_complete(api, pg_settings, name)
    for filename, data in late:
        query = data.decode()[:300]
        assert filename in {h["filename"] for h in search(api, name, query)["hits"]}
    doomed_ids = {d["document_id"] for d in doomed}
    for document in doomed:
        hits = search(api, name, document["filename"].removesuffix(".md"), top_k=20)["hits"]
        assert not doomed_ids & {h["document_id"] for h in hits}


def test_cancel_leaves_the_old_index_serving_and_a_new_migration_resumes(
    api: TestClient, pg_settings: Settings, corpus: Path
) -> None:
    name = ingest(api, corpus, 30)
    job_id = start_migration(api, name)
    conflict = api.post(
        f"/admin/v1/collections/{name}/embedder-migrations", json={"embedder": MINILM_INT8}
    )
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "migration_running"

    cancelled = api.post(f"/admin/v1/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    time.sleep(1.0)  # a batch already running finishes; nothing switches
    assert collection(api, name)["embedder"] == DEFAULT_EMBEDDER
    assert search(api, name, QUESTION)["embedder"] == DEFAULT_EMBEDDER
    assert wait_job(api, job_id)["status"] == "cancelled"

    job = wait_job(api, start_migration(api, name))
    assert job["status"] == "succeeded"
    assert_complete(api, pg_settings, name)


def test_migration_requests_are_validated(api: TestClient, corpus: Path) -> None:
    name = ingest(api, corpus, 2)
    path = f"/admin/v1/collections/{name}/embedder-migrations"
    unknown = api.post(path, json={"embedder": "no-such-model"})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "unknown_embedder"
    same = api.post(path, json={"embedder": DEFAULT_EMBEDDER})
    assert same.status_code == 409
    assert api.post(f"{path}/rollback").json()["error"]["code"] == "no_previous_embedder"
    missing = api.post(
        "/admin/v1/collections/nope/embedder-migrations", json={"embedder": MINILM_INT8}
    )
    assert missing.status_code == 404


@pytest.fixture
def cached_api(
    pg_settings: Settings, worker: object, make_client: Callable[..., TestClient], tmp_path: Path
) -> TestClient:
    settings = pg_settings.model_copy(
        update={"data_dir": tmp_path, "redis": RedisSettings(url=CACHE_REDIS)}
    )
    return make_client(settings, NothingRelevant())


def test_rollback_and_cache_never_serve_the_other_embedders_answer(
    cached_api: TestClient, pg_settings: Settings, corpus: Path
) -> None:
    api = cached_api
    name = ingest(api, corpus, 10)

    def ask() -> dict[str, Any]:
        response = api.post("/v1/query", json={"collection": name, "question": QUESTION})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    assert ask()["cached"] is False
    assert ask()["cached"] is True
    assert wait_job(api, start_migration(api, name))["status"] == "succeeded"
    assert ask()["cached"] is False, "an answer computed with the old embedder is not served"

    response = api.post(f"/admin/v1/collections/{name}/embedder-migrations/rollback")
    assert response.status_code == 202
    assert wait_job(api, response.json()["job_id"])["status"] == "succeeded"
    info = collection(api, name)
    assert (info["embedder"], info["previous_embedder"]) == (DEFAULT_EMBEDDER, MINILM_INT8)
    assert ask()["cached"] is False
    assert_complete(api, pg_settings, name)

    pruned = api.delete(f"/admin/v1/collections/{name}/embeddings/{MINILM_INT8}")
    assert pruned.status_code == 200
    assert pruned.json()["deleted"] == info["chunks"]
    assert vectors_per_embedder(pg_settings, name)[MINILM_INT8] == 0
    assert collection(api, name)["previous_embedder"] is None
    active = api.delete(f"/admin/v1/collections/{name}/embeddings/{DEFAULT_EMBEDDER}")
    assert active.status_code == 409


def test_cli_migrates_with_a_progress_bar_and_rolls_back(
    api: TestClient, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from app import cli
    from app.cli import http

    name = ingest(api, corpus, 5)
    # The CLI's HTTP client, pointed at the in-process API (a TestClient is an httpx.Client).
    monkeypatch.setattr(http, "client", lambda *_: contextlib.nullcontext(api))
    runner = CliRunner()

    result = runner.invoke(cli.cli, ["migrate-embedder", "--collection", name, "--to", MINILM_INT8])
    assert result.exit_code == 0, result.output
    assert f"serving {MINILM_INT8}" in result.output
    result = runner.invoke(cli.cli, ["migrate-embedder", "--collection", name, "--rollback"])
    assert result.exit_code == 0, result.output
    assert f"serving {DEFAULT_EMBEDDER}" in result.output
    result = runner.invoke(cli.cli, ["migrate-embedder", "--collection", name])
    assert result.exit_code == 2
