"""The `openai` backend against a real OpenAI-compatible server: llama.cpp's, as a subprocess,
serving the same GGUF under two aliases (a base model and an "adapter"), which exercises
adapter routing by model name the way vLLM routes LoRA adapters."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.settings import GenerationSettings, OpenAISettings, PipelineSettings, Settings
from generation.llm.generator import Completion, Message
from generation.llm.openai_compatible import OpenAIGenerator
from generation.model_files.catalog import SMALL_MODEL, catalog_model
from generation.reasoning.prompts import analysis_schema
from tests.conftest import MODELS_DIR
from tests.integration.services import free_port, wait_for
from tests.integration.test_query import (
    BIOS,
    ask,
    assert_citations_verified,
    assert_written_as,
    ingest,
    parse_sse,
    streamed_answer,
)

BASE, TUNED = "smollm2", "smollm2-support"


class LlamaServer:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        small = catalog_model(SMALL_MODEL)
        assert small is not None
        gguf = str(small.path(MODELS_DIR))
        config = {
            "host": "127.0.0.1",
            "port": self.port,
            "models": [
                {
                    "model": gguf,
                    "model_alias": alias,
                    "n_ctx": 4096,
                    "n_threads": 2,
                    "verbose": False,
                }
                for alias in (BASE, TUNED)
            ],
        }
        path = tmp / "llama-server.json"
        path.write_text(json.dumps(config))
        self.log = (tmp / "llama-server.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--config_file", str(path)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        if not wait_for("127.0.0.1", self.port, timeout=120):
            self.stop()
            raise RuntimeError("llama_cpp.server did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture
def llama_server(tmp_path: Path) -> Iterator[LlamaServer]:
    server = LlamaServer(tmp_path)
    yield server
    server.stop()


def openai_settings(base: Settings, url: str, tmp: Path, **pipeline: object) -> Settings:
    generation = GenerationSettings(
        backend="openai",
        openai=OpenAISettings(
            base_url=url, model=BASE, structured_output="json_object", timeout_s=120
        ),
        pipeline=PipelineSettings(**pipeline),  # type: ignore[arg-type]
    )
    return base.model_copy(update={"data_dir": tmp, "generation": generation})


def test_openai_backend_answers_and_routes_adapters(
    pg_settings: Settings,
    worker: object,
    make_client: Callable[..., TestClient],
    tmp_path: Path,
    corpus: Path,
    llama_server: LlamaServer,
) -> None:
    settings = openai_settings(pg_settings, llama_server.url, tmp_path)
    client = make_client(settings, OpenAIGenerator(settings.generation.openai))
    assert client.get("/readyz").json()["checks"]["generator"] == "ok"
    # Loaded by the server itself (--lora on llama.cpp's server, --lora-modules on vLLM).
    served = client.get("/v1/adapters").json()["adapters"]
    assert [(a["name"], a["base_model"], a["source"], a["loaded"]) for a in served] == [
        (TUNED, BASE, "generator", True)
    ]

    name = ingest(client, corpus, BIOS)
    base = ask(client, name, "What does BIOS stand for?", top_k=2)
    assert base["model"] == BASE
    assert_citations_verified(client, name, base)

    tuned = ask(client, name, "What does BIOS stand for?", top_k=2, adapter=TUNED)
    assert tuned["model"] == TUNED
    assert tuned["cached"] is False, "another adapter never shares a cached answer"
    assert_citations_verified(client, name, tuned)

    missing = client.post(
        "/v1/query", json={"collection": name, "question": "x", "adapter": "other"}
    )
    assert missing.status_code == 404


def test_generator_stopped_gives_503_or_a_retrieval_only_answer(
    pg_settings: Settings,
    worker: object,
    make_client: Callable[..., TestClient],
    tmp_path: Path,
    corpus: Path,
    llama_server: LlamaServer,
) -> None:
    strict = openai_settings(pg_settings, llama_server.url, tmp_path / "a")
    client = make_client(strict, OpenAIGenerator(strict.generation.openai))
    name = ingest(client, corpus, BIOS)
    llama_server.stop()

    response = client.post("/v1/query", json={"collection": name, "question": "What is BIOS?"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "generator_unavailable"
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["generator"] == "down"

    lenient = openai_settings(
        pg_settings, llama_server.url, tmp_path / "b", retrieval_only_fallback=True
    )
    client2 = make_client(lenient, OpenAIGenerator(lenient.generation.openai))
    body = ask(client2, name, "What is BIOS?")
    assert body["degraded"] == "generator_unavailable"
    assert body["citations"] == []
    assert body["hits"][0]["filename"] == BIOS


def test_openai_backend_streams_the_reply_as_the_server_writes_it(
    pg_settings: Settings,
    worker: object,
    make_client: Callable[..., TestClient],
    tmp_path: Path,
    corpus: Path,
    llama_server: LlamaServer,
) -> None:
    settings = openai_settings(pg_settings, llama_server.url, tmp_path)
    messages: list[Message] = [
        {"role": "user", "content": "What does BIOS stand for? Reply in JSON."}
    ]
    schema = analysis_schema(400, 80, answer_first=True)
    pieces: list[str] = []

    async def both() -> tuple[Completion, Completion]:
        generator = OpenAIGenerator(settings.generation.openai)
        try:
            plain = await generator.generate(messages, schema=schema, max_tokens=60)
            streamed = await generator.generate(
                messages, schema=schema, max_tokens=60, on_text=pieces.append
            )
        finally:
            await generator.aclose()
        return plain, streamed

    with ThreadPoolExecutor(max_workers=1) as pool:
        plain, streamed = pool.submit(asyncio.run, both()).result()
    # "stream": true: the same reply, handed over in pieces as the server sent them.
    assert len(pieces) > 1
    assert "".join(pieces) == streamed.text == plain.text
    assert streamed.finish_reason == plain.finish_reason
    assert streamed.model == plain.model

    client = make_client(settings, OpenAIGenerator(settings.generation.openai))
    name = ingest(client, corpus, BIOS)
    body = {"collection": name, "question": "What does BIOS stand for?", "top_k": 2}
    with client.stream("POST", "/v1/query", json={**body, "stream": True}) as response:
        assert response.status_code == 200
        events = parse_sse(response.read().decode())
    names = [n for n, _ in events]
    assert names[-1] == "done", names
    done = events[-1][1]
    # The last step's answer streamed from the server's chunks, before the checked answer.
    assert names.count("answer_delta") >= 2, names
    assert names.index("evidence") < names.index("answer_delta") < names.index("analysis")
    assert_written_as(streamed_answer(events), done.get("model_answer") or done["answer"])
