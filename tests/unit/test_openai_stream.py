"""The `openai` backend's streamed replies, without a server: the request it sends, how it reads
the chunks, and how failures map to the errors of a reply that is not streamed.

The server is FAKE, labelled as such: httpx's MockTransport answers with the chunks vLLM sends
(what is under test is the client's reading of them; tests/integration/test_openai_backend.py
streams from a real llama.cpp server).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from core.settings import OpenAISettings
from generation.llm.generator import AdapterNotFound, Completion, GeneratorUnavailable
from generation.llm.openai_compatible import OpenAIGenerator

URL = "http://vllm.test/v1"


def sse(*chunks: dict[str, Any] | str) -> bytes:
    lines = [c if isinstance(c, str) else f"data: {json.dumps(c)}\n\n" for c in chunks]
    return "".join(lines).encode()


def delta(text: str | None = None, finish: str | None = None) -> dict[str, Any]:
    content = {} if text is None else {"content": text}
    choice = {"index": 0, "delta": content, "finish_reason": finish}
    return {"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": [choice]}


USAGE = {
    "id": "c1",
    "model": "m",
    "choices": [],
    "usage": {
        "prompt_tokens": 30,
        "completion_tokens": 4,
        "prompt_tokens_details": {"cached_tokens": 16},
    },
}


def generate(
    handler: Callable[[httpx.Request], httpx.Response], pieces: list[str], **kw: Any
) -> Completion:
    async def call() -> Completion:
        g = OpenAIGenerator(OpenAISettings(base_url=URL, model="m", max_retries=1))
        # The backend's own client, pointed at the fake server.
        await g._client.aclose()
        g._client = httpx.AsyncClient(base_url=URL, transport=httpx.MockTransport(handler))
        try:
            messages = [{"role": "user", "content": "What does BIOS stand for?"}]
            return await g.generate(
                messages, schema=None, max_tokens=20, on_text=pieces.append, **kw
            )
        finally:
            await g.aclose()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, call()).result()


def test_the_reply_streams_piece_by_piece_with_its_usage_from_the_last_chunk() -> None:
    sent: list[dict[str, Any]] = []

    def server(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        body = sse(
            ": ping\n\n",
            delta(""),
            delta('{"answer": "Basic'),
            delta(' Input"}'),
            delta(finish="stop"),
            USAGE,
            "data: [DONE]\n\n",
        )
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    pieces: list[str] = []
    completion = generate(server, pieces)
    assert sent[0]["stream"] is True
    assert sent[0]["stream_options"] == {"include_usage": True}
    assert pieces == ['{"answer": "Basic', ' Input"}']
    assert completion.text == '{"answer": "Basic Input"}'
    assert completion.finish_reason == "stop"
    assert (completion.prompt_tokens, completion.completion_tokens) == (30, 4)
    assert completion.cached_tokens == 16 and completion.model == "m"


def test_a_refusal_before_the_stream_is_retried_then_answered() -> None:
    calls: list[int] = []

    def server(_request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            return httpx.Response(503, text="busy")
        return httpx.Response(200, content=sse(delta("ok", "stop"), "data: [DONE]\n\n"))

    pieces: list[str] = []
    assert generate(server, pieces).text == "ok"
    assert len(calls) == 2 and pieces == ["ok"]


def test_refusals_map_as_for_a_reply_not_streamed() -> None:
    def refuses(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "bad schema"}})

    with pytest.raises(GeneratorUnavailable, match=r"refused the request \(400\).*bad schema"):
        generate(refuses, [])

    def unknown_model(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "m"}, {"id": "tuned"}]})
        return httpx.Response(404, text="no such model")

    with pytest.raises(AdapterNotFound):
        generate(unknown_model, [], adapter="tuned")

    def fails_mid_reply(_request: httpx.Request) -> httpx.Response:
        body = sse(delta("Basic"), {"error": {"message": "out of memory"}})
        return httpx.Response(200, content=body)

    with pytest.raises(GeneratorUnavailable, match="failed mid-reply.*out of memory"):
        generate(fails_mid_reply, [])


def test_a_stream_that_breaks_after_its_first_piece_is_not_started_over() -> None:
    calls: list[int] = []

    async def broken() -> AsyncIterator[bytes]:
        yield sse(delta("Basic"))
        raise httpx.ReadError("connection reset")

    def server(_request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200, content=broken())

    pieces: list[str] = []
    with pytest.raises(GeneratorUnavailable, match="broke off"):
        generate(server, pieces)
    assert calls == [1] and pieces == ["Basic"]
