"""An answer whose client goes away stops: the pipeline is cancelled and the embedded model
stops at its next token, so the model is free for the next request instead of finishing an
answer nobody will read. `rag ask` that gives up says the service was still working.

The real embedded model (the small catalog model through llama.cpp) under a real uvicorn
server; the generator is watched and held mid-generation (WatchedGenerator) until the
client has gone."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.main import create_app
from core.settings import Settings
from generation.llm.generator import Completion, Generator, Message, TextSink
from retrieval.embedders import EmbedderPool
from tests.integration.isolated import ServerThread

T = TypeVar("T")

DOCUMENT = (
    "Zanzibar exported copra, cloves and ivory in the nineteenth century. Its harbour "
    "served dhows from Oman and India, and the clove plantations covered Pemba island."
)
QUESTION = "What did Zanzibar export in the nineteenth century?"
STOPPED = ("generation stopped after", "generation skipped")
HOLD_SECONDS = 120  # a held generation goes on by itself after this long


class WatchedGenerator:
    """The real generator, watched and held: every call goes to it unchanged, but the first
    piece of text it writes waits there (in the model's thread, mid-generation) until the
    call is cancelled or ends, so a client that leaves always leaves while the model is
    generating, however fast the machine. The test learns when that point is reached and
    whether the call was cancelled."""

    def __init__(self, inner: Generator) -> None:
        self._inner = inner
        self.generating = threading.Event()
        self.cancelled = threading.Event()
        self._released = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def generate(
        self, messages: list[Message], *, on_text: TextSink | None = None, **options: Any
    ) -> Completion:
        def held(piece: str) -> None:
            if on_text is not None:
                on_text(piece)
            if not self.generating.is_set():
                self.generating.set()
                self._released.wait(HOLD_SECONDS)

        try:
            return await self._inner.generate(messages, on_text=held, **options)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        finally:
            self._released.set()  # cancelled (the backend was told to stop first) or done


@pytest.fixture
def watched(llm: Generator) -> WatchedGenerator:
    return WatchedGenerator(llm)


@pytest.fixture
def server(embedders: EmbedderPool, watched: WatchedGenerator, tmp_path: Path) -> Iterator[str]:
    """The embedded default (SQLite, in-process ingestion) with one document ingested."""
    app = create_app(Settings(data_dir=tmp_path / "data"), embedders, watched)
    thread = ServerThread(app)
    try:
        with httpx.Client(base_url=thread.url, timeout=120) as client:
            client.post("/admin/v1/collections", json={"name": "docs"}).raise_for_status()
            files = [("files", ("zanzibar.md", DOCUMENT.encode()))]
            accepted = client.post("/admin/v1/collections/docs/documents", files=files)
            job_id = accepted.json()["job_id"]
            deadline = time.monotonic() + 300
            while client.get(f"/admin/v1/jobs/{job_id}").json()["status"] != "succeeded":
                assert time.monotonic() < deadline, "the document was not ingested"
                time.sleep(0.2)
        yield thread.url
    finally:
        thread.close()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="generation.llm.llamacpp")
    caplog.set_level(logging.INFO, logger="app.api.query")
    return caplog


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"no sign in {seconds:g} s that {what}"
        time.sleep(0.1)


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` in a thread of its own: a browser test earlier in the session leaves
    Playwright's event loop set in the main thread, where asyncio.run refuses to start."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def logged(caplog: pytest.LogCaptureFixture, *starts: str) -> bool:
    return any(r.getMessage().startswith(starts) for r in caplog.records)


def assert_model_is_free(llm: Generator, caplog: pytest.LogCaptureFixture) -> None:
    """The abandoned generation stopped early (the backend says so), and the model takes the
    next request."""
    wait_until(lambda: logged(caplog, *STOPPED), 120, "the generation stopped")
    stopped = next(r.getMessage() for r in caplog.records if r.getMessage().startswith(STOPPED))
    if stopped.startswith("generation stopped after"):
        produced, most = (int(w) for w in stopped.split() if w.isdigit())
        assert produced < most, stopped
    hello: list[Message] = [{"role": "user", "content": "Say hello."}]
    completion = run_coroutine(llm.generate(hello, schema=None, max_tokens=4))
    assert completion.completion_tokens > 0


def ask_body(**extra: Any) -> bytes:
    body = {"collection": "docs", "question": QUESTION, "use_cache": False} | extra
    return json.dumps(body).encode()


def test_a_json_answer_whose_client_leaves_stops_generating(
    server: str, watched: WatchedGenerator, llm: Generator, logs: pytest.LogCaptureFixture
) -> None:
    host, port = server.removeprefix("http://").split(":")
    body = ask_body()
    request = (
        f"POST /v1/query HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection((host, int(port))) as client:
        client.sendall(request)
        assert watched.generating.wait(300), "the query never reached the model"
    # The connection is closed while the model generates.
    assert watched.cancelled.wait(120), "the abandoned query was not cancelled"
    assert_model_is_free(llm, logs)
    wait_until(lambda: logged(logs, "query stopped: its client disconnected"), 60, "it was noticed")


def test_a_streamed_answer_whose_client_leaves_stops_generating(
    server: str, watched: WatchedGenerator, llm: Generator, logs: pytest.LogCaptureFixture
) -> None:
    with (
        httpx.Client(base_url=server, timeout=300) as client,
        client.stream("POST", "/v1/query", json=json.loads(ask_body(stream=True))) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(lines) == "event: retrieval"
        assert watched.generating.wait(300), "the query never reached the model"
    # Leaving the block closed the stream while the model generates.
    assert watched.cancelled.wait(120), "the abandoned stream was not cancelled"
    assert_model_is_free(llm, logs)


def test_ask_that_gives_up_says_the_service_was_still_working(
    server: str, watched: WatchedGenerator, llm: Generator, logs: pytest.LogCaptureFixture
) -> None:
    result = CliRunner().invoke(
        cli,
        ["ask", QUESTION, "--collection", "docs", "--url", server, "--no-cache",
         "--timeout", "1"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"gave up after 1 s: {server} is up but was still working on it; the answer was "
        "dropped; wait longer with --timeout SECONDS (0: no limit)"
    ]
    assert "cannot reach" not in result.stderr and "Traceback" not in result.stderr
    # Dropped indeed: the service noticed the client leave and stopped the answer.
    wait_until(
        lambda: logged(logs, "query stopped: its client disconnected"), 120, "it was noticed"
    )
    if watched.generating.is_set():
        assert_model_is_free(llm, logs)


def test_the_backend_stops_between_tokens_when_cancelled(
    llm: Generator, logs: pytest.LogCaptureFixture
) -> None:
    """The embedded backend itself: a long generation cancelled after it started ends early
    and frees the model."""
    count: list[Message] = [
        {"role": "user", "content": "Write the numbers from 1 to 1000, separated by commas."}
    ]

    async def cancel_midway() -> None:
        # The prompt evaluated once first: llama.cpp keeps it, so the long run starts
        # producing tokens at once, and is cancelled while it does.
        await llm.generate(count, schema=None, max_tokens=1)
        task = asyncio.create_task(llm.generate(count, schema=None, max_tokens=2000))
        await asyncio.sleep(5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run_coroutine(cancel_midway())
    assert_model_is_free(llm, logs)
