"""Metrics and request ids across the real API, Redis broker and Celery worker process."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from core import repository
from tests.integration.conftest import WorkerProcess, new_collection, wait_job

BIOS = "foldoc-basic-input-output-system-20.md"


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format, or None when absent."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if not match or match[1] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match[2] or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match[3])
    return None


def upload_with_id(
    client: TestClient, collection: str, files: list[tuple[str, bytes]], request_id: str
) -> httpx.Response:
    response = client.post(
        f"/admin/v1/collections/{collection}/documents",
        files=[("files", (name, data)) for name, data in files],
        headers={"X-Request-ID": request_id},
    )
    assert response.status_code == 202, response.text
    return response


def worker_metrics(worker: WorkerProcess) -> str:
    return httpx.get(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=5).text


def worker_log_entries(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(errors="replace").splitlines()
    # Celery's start-up banner is plain text; every log record is one JSON object.
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_request_id_follows_an_upload_into_the_worker_log(
    api: TestClient, worker: WorkerProcess, corpus: Path
) -> None:
    collection = new_collection(api, "obs")
    request_id = f"it-{uuid.uuid4().hex[:12]}"
    response = upload_with_id(api, collection, [(BIOS, (corpus / BIOS).read_bytes())], request_id)
    assert response.headers["X-Request-ID"] == request_id
    assert wait_job(api, response.json()["job_id"])["status"] == "succeeded"

    mine = [e for e in worker_log_entries(worker.log_path) if e.get("request_id") == request_id]
    assert any(e["message"].startswith("ingested document") for e in mine), mine
    document_id = response.json()["documents"][0]["document_id"]
    assert any(e.get("document_id") == document_id for e in mine)


def test_worker_serves_the_ingestion_counters_of_its_pool_processes(
    api: TestClient, worker: WorkerProcess, corpus: Path
) -> None:
    before = metric(worker_metrics(worker), "rag_ingested_chunks_total") or 0.0
    collection = new_collection(api, "obs")
    response = upload_with_id(api, collection, [(BIOS, (corpus / BIOS).read_bytes())], "count")
    assert wait_job(api, response.json()["job_id"])["status"] == "succeeded"
    chunks = api.get(f"/v1/collections/{collection}").json()["chunks"]
    assert chunks > 0

    text = worker_metrics(worker)
    assert metric(text, "rag_ingested_chunks_total") == before + chunks
    assert (metric(text, "rag_ingested_documents_total", outcome="ready") or 0) >= 1


def test_api_metrics_show_route_latency_queue_depth_index_size_and_queries(
    api: TestClient, corpus: Path
) -> None:
    collection = new_collection(api, "obs")
    response = upload_with_id(api, collection, [(BIOS, (corpus / BIOS).read_bytes())], "metrics")
    assert wait_job(api, response.json()["job_id"])["status"] == "succeeded"
    search = {"collection": collection, "query": "What does BIOS stand for?", "top_k": 1}
    assert api.post("/v1/search", json=search).status_code == 200
    question = {"collection": collection, "question": "What does BIOS stand for?", "top_k": 1}
    first = api.post("/v1/query", json=question)
    assert first.status_code == 200, first.text
    assert api.post("/v1/query", json=question).json()["cached"] is True

    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    search_count = metric(
        text,
        "rag_http_request_duration_seconds_count",
        method="POST",
        route="/v1/search",
        status="200",
    )
    assert search_count and search_count >= 1
    upload_route = "/admin/v1/collections/{name}/documents"
    assert metric(text, "rag_http_request_duration_seconds_count", route=upload_route)
    assert collection not in text, "paths are labelled by template, not by collection name"
    # The broker is up and the worker drained the queue.
    assert metric(text, "rag_queue_depth") == 0
    services = api.app.state.services  # type: ignore[attr-defined]
    with services.db.session() as session:
        collection_id = repository.get_collection(session, collection).id
    chunks = api.get(f"/v1/collections/{collection}").json()["chunks"]
    assert metric(text, "rag_index_vectors", collection_id=collection_id) == chunks
    # One generated query, one served from the cache.
    assert (metric(text, "rag_query_cache_requests_total", result="hit") or 0) >= 1
    assert (metric(text, "rag_query_step_duration_seconds_count", step="relevance") or 0) >= 1
    assert (metric(text, "rag_generator_tokens_total", kind="prompt") or 0) > 0
