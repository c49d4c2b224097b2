"""Uploads waiting behind others: a small upload to another collection is not starved by a big
one, a queued job says how many uploads are ahead of it, and a job runs as soon as one of its
files does (real SQLite and Postgres, the real embedder; the encoder is held at a gate so the
moments can be looked at)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from core.settings import IngestSettings, Settings
from retrieval import ingestion
from retrieval.ingestion import Outcome, ingest_documents
from tests.integration.conftest import new_collection, services_of, upload, wait_job
from tests.integration.test_ingest_batches import record

TOPICS = ["rivers", "glaciers", "volcanoes", "deserts", "forests", "reefs", "caves", "dunes"]


def files(prefix: str, count: int) -> list[tuple[str, bytes]]:
    """`count` small text files of distinct content."""
    return [
        (
            f"{prefix}-{i}.txt",
            f"Note {i} of {prefix}. It is about {TOPICS[i % len(TOPICS)]} and number {i * 7 + 3}, "
            f"which no other note of {prefix} mentions.\n".encode(),
        )
        for i in range(count)
    ]


@contextmanager
def encoder_gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event, list[Any]]]:
    """Every ingestion task waits at its encoder call until the event is set; the job id of
    each call's documents is recorded, in the order the tasks ran. The gate opens at the end
    whatever happens, so no worker thread is left waiting."""
    gate = threading.Event()
    order: list[Any] = []
    real = ingestion._embed_together

    def gated(embedders: Any, parsed: list[Any]) -> dict[str, np.ndarray]:
        order.append(parsed[0].job_id if parsed else None)
        assert gate.wait(120), "the test never opened the gate"
        return real(embedders, parsed)

    monkeypatch.setattr(ingestion, "_embed_together", gated)
    try:
        yield gate, order
    finally:
        gate.set()


def job(client: TestClient, job_id: str) -> dict[str, Any]:
    response = client.get(f"/admin/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_until(check: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_small_upload_is_not_starved_by_a_big_one_and_queued_jobs_say_what_is_ahead(
    make_client: Callable[..., TestClient], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path, ingest=IngestSettings(documents_per_task=2))
    client = make_client(settings)
    big, small = new_collection(client, "big"), new_collection(client, "small")
    with encoder_gate(monkeypatch) as (gate, order):
        big_job = upload(client, big, files("big", 40))["job_id"]
        # Its first task has claimed two files and waits at the encoder: the job runs.
        wait_until(lambda: len(order) == 1, "the big job's first task")
        running = job(client, big_job)
        assert running["status"] == "running"
        assert running["progress"]["done"] == 0
        assert sum(f["status"] == "processing" for f in running["files"]) == 2
        assert running["ahead"] is None

        same_job = upload(client, big, files("also-big", 1))["job_id"]
        small_job = upload(client, small, files("small", 1))["job_id"]
        # Behind the big job in its collection; one turn of the big collection, then its own.
        queued = [job(client, same_job), job(client, small_job)]
        assert [(j["status"], j["ahead"]) for j in queued] == [("queued", 1), ("queued", 1)]
        listed = client.get("/admin/v1/jobs", params={"status": "queued"}).json()["jobs"]
        assert {j["job_id"]: j["ahead"] for j in listed} == {small_job: 1, same_job: 1}
        gate.set()

        finished = {j: wait_job(client, j) for j in (small_job, same_job, big_job)}
    assert {j: f["status"] for j, f in finished.items()} == dict.fromkeys(finished, "succeeded")
    # The big upload's running task, then the other collection's small upload: it waited for
    # one task (two files), not for forty. Uploads to one collection are served in order.
    assert order == [big_job, small_job] + [big_job] * 19 + [same_job]
    assert all(f["ahead"] is None for f in finished.values())


def test_on_postgres_a_claimed_job_runs_at_once_and_the_jobs_behind_count_it(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = services_of(api)
    name = new_collection(api)
    # Recorded as uploads but not enqueued, so that only this test's worker takes them.
    first_ids = record(services, name, files("first", 3))
    second_ids = record(services, name, files("second", 1))
    listed = api.get("/admin/v1/jobs", params={"collection": name}).json()["jobs"]
    second, first = listed  # newest first
    assert first["status"] == second["status"] == "queued"
    # Other tests' unfinished jobs may be ahead too: only the difference is this test's.
    assert first["ahead"] is not None and second["ahead"] == first["ahead"] + 1

    with encoder_gate(monkeypatch) as (gate, order):
        worker = threading.Thread(
            target=ingest_documents,
            args=(services.db, services.embedders, services.settings.ingest, first_ids),
        )
        worker.start()
        wait_until(lambda: len(order) == 1, "the task to claim its documents")
        claimed = job(api, first["job_id"])
        assert claimed["status"] == "running"
        assert claimed["progress"] == {"done": 0, "total": 3}
        assert {f["status"] for f in claimed["files"]} == {"processing"}
        assert claimed["ahead"] is None
        assert job(api, second["job_id"])["ahead"] == second["ahead"]
        gate.set()
        worker.join(timeout=120)

    assert job(api, first["job_id"])["status"] == "succeeded"
    assert job(api, second["job_id"])["ahead"] == first["ahead"]
    results = ingest_documents(
        services.db, services.embedders, services.settings.ingest, second_ids
    )
    assert [r.outcome for r in results] == [Outcome.READY]
    assert job(api, second["job_id"])["ahead"] is None
