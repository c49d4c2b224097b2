"""A Celery worker killed with SIGKILL mid-ingestion, and the broker (Redis) restarted with work
queued in it: the job still finishes, with exactly the chunks a clean run stores.

A graceful worker restart with work queued is covered by
test_idempotency.py::test_queued_documents_are_picked_up_after_a_worker_restart, a task
delivered twice by test_idempotency.py::test_task_delivered_twice_leaves_one_copy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from core.settings import BrokerSettings, Settings
from tests.integration.conftest import (
    WorkerProcess,
    new_collection,
    settings_env,
    upload,
    wait_job,
)
from tests.integration.isolated import PrivateRedis

# Enough text that embedding it takes a few seconds, so the kill lands mid-task.
CORPUS_SLICE = 40


def big_document(corpus: Path) -> bytes:
    files = sorted(corpus.glob("*.md"))[:CORPUS_SLICE]
    return b"\n\n".join(p.read_bytes() for p in files)


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (the prefork pool's children of a worker)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: split after it.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry))
    return found


def wait_status(client: TestClient, collection: str, status: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        documents = client.get(f"/v1/collections/{collection}/documents").json()["documents"]
        if documents and documents[0]["status"] == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"document never reached {status!r}")


def chunk_count(client: TestClient, collection: str) -> int:
    documents = client.get(f"/v1/collections/{collection}/documents").json()["documents"]
    assert len(documents) == 1 and documents[0]["status"] == "ready", documents
    info = client.get(f"/v1/collections/{collection}").json()
    assert info["chunks"] == documents[0]["chunks"]
    return int(info["chunks"])


def test_worker_child_killed_mid_task_is_redone_once(
    api: TestClient, worker: WorkerProcess, corpus: Path
) -> None:
    data = big_document(corpus)
    clean = new_collection(api, "clean")
    wait_job(api, upload(api, clean, [("big.md", data)])["job_id"])
    expected = chunk_count(api, clean)
    assert expected > 20

    killed = new_collection(api, "killed")
    job_id = upload(api, killed, [("big.md", data)])["job_id"]
    wait_status(api, killed, "processing")
    assert worker.process is not None
    pool = children(worker.process.pid)
    assert pool, "the worker has a pool child"
    for pid in pool:
        os.kill(pid, signal.SIGKILL)  # what the OOM killer does

    # task_reject_on_worker_lost hands the message back; a fresh child redoes the document.
    job = wait_job(api, job_id, timeout=240)
    assert job["status"] == "succeeded", job
    assert chunk_count(api, killed) == expected


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A broker of this test's own with append-only persistence, as compose runs Redis."""
    server = PrivateRedis(tmp_path, appendonly=True)
    yield server
    server.kill()


def test_whole_worker_killed_and_broker_restarted_loses_nothing(
    pg_settings: Settings,
    broker: PrivateRedis,
    make_client: Callable[..., TestClient],
    tmp_path: Path,
    corpus: Path,
) -> None:
    url = broker.url()
    settings = pg_settings.model_copy(
        update={
            "data_dir": tmp_path,
            # A killed worker's unacknowledged task comes back after the visibility timeout.
            "broker": BrokerSettings(url=url, result_backend="", visibility_timeout_s=5),
        }
    )
    api = make_client(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        data = big_document(corpus)
        clean = new_collection(api, "clean")
        wait_job(api, upload(api, clean, [("big.md", data)])["job_id"])
        expected = chunk_count(api, clean)

        # 1. SIGKILL the whole worker (main process and pool) mid-task, then start a new one.
        killed = new_collection(api, "killed")
        job_id = upload(api, killed, [("big.md", data)])["job_id"]
        wait_status(api, killed, "processing")
        assert worker.process is not None
        pids = [worker.process.pid, *children(worker.process.pid)]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        worker.process.wait()
        worker.process = None
        worker.start()
        assert wait_job(api, job_id, timeout=240)["status"] == "succeeded"
        assert chunk_count(api, killed) == expected

        # 2. Work queued in the broker survives a broker restart (append-only file).
        worker.stop()
        queued = new_collection(api, "queued")
        job_id = upload(api, queued, [("big.md", data)])["job_id"]
        broker.restart()
        # A fresh control client: the old one's pooled connection died with the broker.
        worker = WorkerProcess(settings, tmp_path / "worker.log")
        worker.start()
        assert wait_job(api, job_id, timeout=240)["status"] == "succeeded"
        assert chunk_count(api, queued) == expected

        # 3. Broker down while a client uploads: the upload is refused cleanly or accepted
        # and finished later; either way no document is left stranded.
        broker.kill()
        during = new_collection(api, "during")
        response = api.post(
            f"/admin/v1/collections/{during}/documents", files=[("files", ("big.md", data))]
        )
        assert response.status_code in (202, 503), response.text
        broker.start()
        if response.status_code == 503:
            assert response.json()["error"]["code"] == "broker_unavailable"
            response = api.post(
                f"/admin/v1/collections/{during}/documents", files=[("files", ("big.md", data))]
            )
            assert response.status_code == 202, response.text
        assert wait_job(api, response.json()["job_id"], timeout=240)["status"] == "succeeded"
        assert chunk_count(api, during) == expected

        # 4. The broker loses its data with work queued (a Redis without persistence): the
        # database still lists the document as queued, and `rag requeue` sends it again.
        worker.stop()
        lost = new_collection(api, "lost")
        job_id = upload(api, lost, [("big.md", data)])["job_id"]
        redis.Redis.from_url(url).flushall()
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "requeue"],
            env=settings_env(settings),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0 and "re-enqueued" in done.stdout, done.stderr
        worker.start()
        assert wait_job(api, job_id, timeout=240)["status"] == "succeeded"
        assert chunk_count(api, lost) == expected
    finally:
        worker.stop()
