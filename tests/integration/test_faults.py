"""Fault injection against real services: Postgres stopped and restarted, a generator that is
slow or answers garbage, the same file uploaded by many clients at once over real HTTP.

Each test checks what a client sees (a clean error code, never a 500, no hang) and that nothing
is lost or duplicated afterwards.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from core.settings import (
    GenerationSettings,
    OpenAISettings,
    PipelineSettings,
    RedisSettings,
    Settings,
)
from generation.llm.generator import Generator
from generation.llm.openai_compatible import OpenAIGenerator
from retrieval.embedders import EmbedderPool
from tests.integration.conftest import new_collection, upload, wait_job
from tests.integration.fakes import SchemaFollowingGenerator
from tests.integration.isolated import (
    PrivatePostgres,
    PrivateRedis,
    ServerThread,
    embedded_pg_settings,
    own_database,
)
from tests.integration.services import free_port

BIOS = "foldoc-basic-input-output-system-20.md"


# --- Postgres stopped and restarted -------------------------------------------------------------


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    yield server
    server.close()


@pytest.fixture
def private_pg_url(private_pg: PrivatePostgres) -> Iterator[str]:
    with own_database("127.0.0.1", private_pg.port) as url:
        yield url


def test_postgres_restart_fails_requests_cleanly_and_the_api_recovers_by_itself(
    private_pg: PrivatePostgres,
    private_pg_url: str,
    make_client: Callable[..., TestClient],
    tmp_path: Path,
    corpus: Path,
) -> None:
    client = make_client(embedded_pg_settings(private_pg_url, tmp_path))
    name = new_collection(client)
    wait_job(client, upload(client, name, [(BIOS, (corpus / BIOS).read_bytes())])["job_id"])
    assert client.get(f"/v1/collections/{name}").status_code == 200

    # Requests keep coming while the server stops: each ends, fast, as 200 or a clean 503.
    seen: list[tuple[int, str, float]] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            started = time.monotonic()
            response = client.post("/v1/search", json={"collection": name, "query": "BIOS"})
            code = response.json().get("error", {}).get("code", "")
            seen.append((response.status_code, code, time.monotonic() - started))

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    private_pg.stop("fast")  # terminates the server's sessions, like a crash or failover
    time.sleep(1.0)

    for method, path, body in [
        ("GET", f"/v1/collections/{name}", None),
        ("GET", f"/v1/collections/{name}/documents", None),
        ("POST", "/admin/v1/collections", {"name": "during-outage"}),
        ("POST", "/v1/query", {"collection": name, "question": "What is BIOS?"}),
    ]:
        started = time.monotonic()
        response = client.request(method, path, json=body)
        assert time.monotonic() - started < 10, f"{method} {path} hung"
        assert response.status_code == 503, (path, response.text)
        assert response.json()["error"]["code"] == "database_unavailable"
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["database"] == "down"
    assert client.get("/healthz").status_code == 200

    private_pg.start()
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a request hung"
    assert seen, "the hammer threads made requests"
    assert {status for status, _, _ in seen} <= {200, 503}, seen
    assert all(code in ("", "database_unavailable") for _, code, _ in seen)
    assert max(elapsed for _, _, elapsed in seen) < 10
    assert any(status == 503 for status, _, _ in seen), "some requests met the outage"

    # Recovered without restarting the API: the pool pings and replaces dead connections.
    info = client.get(f"/v1/collections/{name}")
    assert info.status_code == 200 and info.json()["documents"] == 1
    assert client.post("/v1/search", json={"collection": name, "query": "BIOS"}).json()["hits"]
    assert client.get("/readyz").json()["checks"]["database"] == "ok"


# --- A generator that is slow, or answers garbage -----------------------------------------------


class MisbehavingOpenAIServer:
    """FAKE OpenAI-compatible server, labelled as such: a real server (vLLM, llama.cpp's) cannot
    be made slow or garbled on demand. It lists one model and answers chat completions
    according to `mode`: "slow" (sleeps past the client's timeout), "garbage" (200 with bytes
    that are not JSON), "wrong_shape" (200 JSON without choices), "error" (500 every time)."""

    def __init__(self) -> None:
        self.mode = "slow"
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
                self._send(200, json.dumps({"data": [{"id": "fake-model"}]}).encode())

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("content-length", "0")))
                server.requests += 1
                if server.mode == "slow":
                    time.sleep(3)
                    self._send(200, b"{}")
                elif server.mode == "garbage":
                    self._send(200, b"\x00\xffnot json {{{", "text/html")
                elif server.mode == "wrong_shape":
                    self._send(200, json.dumps({"id": "x", "choices": []}).encode())
                else:
                    self._send(500, b"internal error")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def bad_generator_server() -> Iterator[MisbehavingOpenAIServer]:
    server = MisbehavingOpenAIServer()
    yield server
    server.close()


@pytest.fixture
def iso_db() -> Iterator[str]:
    with own_database() as url:
        yield url


def test_slow_or_garbled_generator_gives_503_never_500(
    iso_db: str,
    bad_generator_server: MisbehavingOpenAIServer,
    make_client: Callable[..., TestClient],
    tmp_path: Path,
    corpus: Path,
) -> None:
    def settings_for(fallback: bool, sub: str) -> Settings:
        generation = GenerationSettings(
            backend="openai",
            openai=OpenAISettings(
                base_url=bad_generator_server.url, model="fake-model", timeout_s=1, max_retries=1
            ),
            pipeline=PipelineSettings(retrieval_only_fallback=fallback),
        )
        return embedded_pg_settings(iso_db, tmp_path / sub, generation=generation)

    strict = settings_for(False, "strict")
    client = make_client(strict, OpenAIGenerator(strict.generation.openai))
    name = new_collection(client)
    wait_job(client, upload(client, name, [(BIOS, (corpus / BIOS).read_bytes())])["job_id"])
    question = {"collection": name, "question": "What does BIOS stand for?", "top_k": 1}

    for mode in ("slow", "garbage", "wrong_shape", "error"):
        bad_generator_server.mode = mode
        started = time.monotonic()
        response = client.post("/v1/query", json=question)
        elapsed = time.monotonic() - started
        assert response.status_code == 503, (mode, response.text)
        assert response.json()["error"]["code"] == "generator_unavailable", mode
        # One timeout (not retried), or two quick attempts: never the client's patience.
        assert elapsed < 8, (mode, elapsed)
        with client.stream("POST", "/v1/query", json={**question, "stream": True}) as stream:
            assert stream.status_code == 200
            body = stream.read().decode()
        assert "event: error" in body and "generator_unavailable" in body, (mode, body)
        assert "internal_error" not in body

    # With the fallback on, the same failures give a degraded answer with the hits.
    lenient = settings_for(True, "lenient")
    client2 = make_client(lenient, OpenAIGenerator(lenient.generation.openai))
    for mode in ("slow", "garbage"):
        bad_generator_server.mode = mode
        response = client2.post("/v1/query", json=question)
        assert response.status_code == 200, (mode, response.text)
        body = response.json()
        assert body["degraded"] == "generator_unavailable"
        assert body["citations"] == [] and body["hits"][0]["filename"] == BIOS


# --- The same file uploaded concurrently over real HTTP -----------------------------------------


def test_concurrent_http_uploads_of_one_file_store_exactly_one_copy(
    iso_db: str, embedders: EmbedderPool, llm: Generator, tmp_path: Path, corpus: Path
) -> None:
    settings = embedded_pg_settings(iso_db, tmp_path)
    server = ServerThread(create_app(settings, embedders, llm))
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            name = f"conc-{int(time.time() * 1000) % 100000}"
            assert http.post("/admin/v1/collections", json={"name": name}).status_code == 201
            data = (corpus / BIOS).read_bytes()
            barrier = threading.Barrier(8)

            def send(i: int) -> dict[str, Any]:
                with httpx.Client(base_url=server.url, timeout=60) as own:
                    barrier.wait()
                    response = own.post(
                        f"/admin/v1/collections/{name}/documents",
                        files=[("files", (f"copy-{i}.md", data))],
                    )
                assert response.status_code == 202, response.text
                body: dict[str, Any] = response.json()
                return body

            with ThreadPoolExecutor(8) as pool:
                results = list(pool.map(send, range(8)))
            statuses = sorted(r["documents"][0]["status"] for r in results)
            assert statuses == ["duplicate"] * 7 + ["queued"]
            ids = {r["documents"][0]["document_id"] for r in results}
            assert len(ids) == 1, "every duplicate names the one stored document"
            for r in results:
                deadline = time.monotonic() + 120
                while http.get(f"/admin/v1/jobs/{r['job_id']}").json()["status"] not in (
                    "succeeded",
                    "failed",
                ):
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
            documents = http.get(f"/v1/collections/{name}/documents").json()["documents"]
            assert len(documents) == 1 and documents[0]["status"] == "ready"
            info = http.get(f"/v1/collections/{name}").json()
            assert info["documents"] == 1 and info["chunks"] == documents[0]["chunks"] > 0
    finally:
        server.close()


# --- The query cache's Redis restarted --------------------------------------------------------


def test_queries_keep_answering_across_a_cache_redis_restart(
    iso_db: str, make_client: Callable[..., TestClient], tmp_path: Path, corpus: Path
) -> None:
    """Redis down then back: every query is answered (a miss while it is down), and caching
    resumes without restarting the API. The generator is the labelled schema-following fake:
    the cache, not the model, is under test (test_query.py::
    test_queries_are_answered_while_redis_is_down does the outage with the real model)."""
    cache = PrivateRedis(tmp_path / "redis")
    try:
        settings = embedded_pg_settings(
            iso_db, tmp_path / "api", redis=RedisSettings(url=cache.url())
        )
        client = make_client(settings, SchemaFollowingGenerator())
        name = new_collection(client)
        wait_job(client, upload(client, name, [(BIOS, (corpus / BIOS).read_bytes())])["job_id"])
        question = {"collection": name, "question": "What does BIOS stand for?", "top_k": 2}

        def ask() -> dict[str, Any]:
            response = client.post("/v1/query", json=question)
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body

        assert ask()["cached"] is False
        assert ask()["cached"] is True
        cache.kill()
        assert [ask()["cached"] for _ in range(3)] == [False, False, False]
        assert client.get("/readyz").json()["checks"]["cache"] == "down"
        cache.restart()  # an empty Redis: the old entries are gone
        assert ask()["cached"] is False
        assert ask()["cached"] is True, "caching resumed without an API restart"
        assert client.get("/readyz").json()["checks"]["cache"] == "ok"
    finally:
        cache.kill()
