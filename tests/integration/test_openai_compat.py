"""The OpenAI-compatible surface (/openai/v1) as a chat client meets it: the real `openai`
Python package against a real uvicorn server with the real embedder, the real embedded model
(SmolLM2 via llama.cpp), Postgres with API keys, the query cache in Redis and ingestion on the
API's worker thread. The answers are the small model's, so the tests check what must hold
whatever it answers: the message text is the answer with its citations, the `rag` field is
the native response, and the same query path (and cache) serves both APIs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from app.main import create_app
from core import api_keys
from core.db import Database
from core.settings import RedisSettings, Settings
from generation.llm.generator import Generator
from retrieval.embedders import EmbedderPool
from tests.integration.isolated import ServerThread, embedded_pg_settings, own_database
from tests.integration.test_query import (
    AGP,
    BIOS,
    CACHE_REDIS,
    SMTP,
    as_checked,
    assert_written_as,
)

QUESTION = "What does BIOS stand for?"
RAG = {"top_k": 3}


@dataclass(frozen=True)
class Service:
    url: str
    admin_key: str
    query_key: str
    collection: str

    def client(self, key: str | None = None) -> openai.OpenAI:
        # No retries: a refusal must surface as its exception at once.
        return openai.OpenAI(
            base_url=f"{self.url}/openai/v1",
            api_key=key or self.query_key,
            max_retries=0,
            timeout=900,
        )

    def native(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.admin_key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=900)


def create_keys(settings: Settings) -> tuple[str, str]:
    db = Database(settings)
    try:
        with db.session() as session:
            _, admin = api_keys.create_api_key(session, "admin", "openai-admin")
            _, query = api_keys.create_api_key(session, "query", "openai-query")
    finally:
        db.dispose()
    return admin, query


def ingest(native: httpx.Client, corpus: Path, collection: str, *names: str) -> None:
    assert native.post("/admin/v1/collections", json={"name": collection}).status_code == 201
    files = [("files", (n, (corpus / n).read_bytes())) for n in names]
    accepted = native.post(f"/admin/v1/collections/{collection}/documents", files=files)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    deadline = time.monotonic() + 300
    while (job := native.get(f"/admin/v1/jobs/{job_id}").json())["status"] not in (
        "succeeded",
        "failed",
    ):
        assert time.monotonic() < deadline, job
        time.sleep(0.3)
    assert job["status"] == "succeeded", job


@pytest.fixture(scope="module")
def service(
    embedders: EmbedderPool,
    llm: Generator,
    corpus: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    with own_database() as url:
        settings = embedded_pg_settings(
            url, tmp_path_factory.mktemp("openai"), redis=RedisSettings(url=CACHE_REDIS)
        )
        admin_key, query_key = create_keys(settings)
        server = ServerThread(create_app(settings, embedders, llm))
        try:
            service = Service(server.url, admin_key, query_key, f"oa-{time.time_ns():x}")
            with service.native() as native:
                ingest(native, corpus, service.collection, BIOS, SMTP, AGP)
            yield service
        finally:
            server.close()


def extra(model: Any, name: str) -> Any:
    """A field the OpenAI types do not declare (the service's `rag`), as the client parsed it."""
    return (model.model_extra or {})[name]


def expected_content(rag: dict[str, Any]) -> str:
    """The message text the native response makes: the answer, its markers, the quotes."""
    citations = rag["citations"]
    if not citations:
        return str(rag["answer"])
    markers = "".join(f"[{c['id']}]" for c in citations)
    sources = "\n".join(
        f'- [{c["id"]}] {c["filename"]}: "{" ".join(c["quote"].split())}"' for c in citations
    )
    return f"{rag['answer']} {markers}\n\nSources:\n{sources}"


def assert_quotes_verbatim(service: Service, rag: dict[str, Any]) -> None:
    with service.native(service.query_key) as native:
        for citation in rag["citations"]:
            path = f"/v1/collections/{service.collection}/documents/{citation['document_id']}"
            text = native.get(path).json()["text"]
            assert text[citation["start"] : citation["end"]] == citation["quote"]


def test_models_are_the_collections_a_query_key_may_query(service: Service) -> None:
    client = service.client()
    models = client.models.list()
    ours = [m for m in models.data if m.id == service.collection]
    assert len(ours) == 1
    assert ours[0].object == "model" and ours[0].owned_by == "rag-service"
    assert abs(ours[0].created - time.time()) < 3600
    assert client.models.retrieve(service.collection).id == service.collection
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("no-such-collection")
    assert missing.value.code == "model_not_found"


def test_a_completion_is_the_answer_with_its_citations_and_the_native_result(
    service: Service,
) -> None:
    completion = service.client().chat.completions.create(
        model=service.collection,
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": QUESTION},
        ],
        temperature=0.2,  # accepted and ignored
        max_tokens=50,
        extra_body={"rag": RAG},
    )
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == service.collection
    [choice] = completion.choices
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    rag = extra(completion, "rag")
    assert rag["answer"] and rag["cached"] is False and rag["model"] == "SmolLM2-135M-Instruct"
    assert choice.message.content == expected_content(rag)
    assert_quotes_verbatim(service, rag)
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == rag["usage"]["prompt_tokens"] > 0
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )

    # The same query path: the native API is served the answer the completion computed.
    with service.native(service.query_key) as native:
        body = {"collection": service.collection, "question": QUESTION, **RAG}
        same = native.post("/v1/query", json=body).json()
    assert same["cached"] is True
    assert (same["answer"], same["citations"]) == (rag["answer"], rag["citations"])


def test_a_follow_up_carries_its_conversation(service: Service) -> None:
    """The messages before the last user message are the conversation: the follow-up is
    rewritten to stand alone before retrieval, and `rag` shows what was searched for (the small
    test model's wording is not checked; test_default_model.py checks a real follow-up)."""
    first = service.client().chat.completions.create(
        model=service.collection,
        messages=[{"role": "user", "content": QUESTION}],
        extra_body={"rag": RAG},
    )
    assert "standalone_question" not in extra(first, "rag")
    follow_up = service.client().chat.completions.create(
        model=service.collection,
        messages=[
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "content": "And what is it used for?"},
        ],
        extra_body={"rag": RAG},
    )
    rag = extra(follow_up, "rag")
    assert rag["standalone_question"].strip()
    assert follow_up.choices[0].message.content == expected_content(rag)


CORRECTION = "\n\n(Checked against the documents, the answer is: "


def assert_streamed_content(pieces: list[str], rag: dict[str, Any]) -> None:
    """The content of a streamed answer: the model's answer as it was written, in several
    chunks, then one chunk with what the checked answer adds (its markers and sources), or a
    marked correction with the checked answer when it differs (docs/api-additions.md)."""
    *written, last = pieces
    assert len(written) >= 2, f"the answer came in {len(written)} piece(s) as it was written"
    streamed = "".join(written)
    assert_written_as(streamed, rag.get("model_answer") or rag["answer"])
    whole = expected_content(rag)
    if as_checked(streamed) == as_checked(rag["answer"]):
        if "[" not in streamed:  # else the model's own markers stand for the citations'
            assert last == whole[len(rag["answer"]) :]
        assert CORRECTION not in last
    else:
        sources = whole.find("\n\nSources:")
        checked = whole if sources < 0 else whole[:sources]
        assert last == f"{CORRECTION}{checked}){whole[len(checked) :]}"


def test_a_streamed_completion_sends_the_answer_then_stop_then_done(service: Service) -> None:
    stream = service.client().chat.completions.create(
        model=service.collection,
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
        # Not from the cache: the pipeline runs while the client reads.
        extra_body={"rag": {**RAG, "use_cache": False}},
    )
    chunks = list(stream)  # the iteration ends: the server sent [DONE]
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    with_choice = [c for c in chunks if c.choices]
    final = with_choice[-1]
    assert final.choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in with_choice[:-1])
    rag = extra(final, "rag")
    assert rag["cached"] is False
    pieces = [c.choices[0].delta.content for c in with_choice if c.choices[0].delta.content]
    assert_streamed_content(pieces, rag)
    assert_quotes_verbatim(service, rag)
    usage = chunks[-1].usage  # stream_options.include_usage: a last chunk with no choices
    assert chunks[-1].choices == [] and usage is not None
    assert usage.completion_tokens == rag["usage"]["completion_tokens"]

    # On the wire: only `data:` lines, no event names, ending in [DONE] (cached now: quick).
    body = {
        "model": service.collection,
        "messages": [{"role": "user", "content": QUESTION}],
        "stream": True,
        "rag": RAG,
    }
    with (
        service.native(service.query_key) as native,
        native.stream("POST", "/openai/v1/chat/completions", json=body) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    # A cached answer has nothing being written: its content comes whole, in one chunk.
    contents = [
        choice["delta"]["content"]
        for line in lines[:-1]
        for choice in json.loads(line.removeprefix("data: "))["choices"]
        if choice["delta"].get("content")
    ]
    assert contents == [expected_content(rag)]


def test_a_question_the_documents_cannot_answer_says_so_in_words(service: Service) -> None:
    completion = service.client().chat.completions.create(
        model=service.collection,
        messages=[{"role": "user", "content": "Which team won the 1998 World Cup final in Paris?"}],
    )
    rag = extra(completion, "rag")
    assert rag["supported"] is False and rag["citations"] == []
    assert rag["answerability"]["answerable"] is False
    content = completion.choices[0].message.content or ""
    assert content == rag["answer"]
    assert "do not contain the answer" in content


def test_refusals_are_openai_errors(service: Service) -> None:
    client = service.client()
    messages: list[Any] = [{"role": "user", "content": QUESTION}]
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="no-such-collection", messages=messages)
    assert unknown.value.code == "model_not_found" and unknown.value.param == "model"
    assert isinstance(unknown.value.body, dict) and unknown.value.body["type"]

    for bad_key in ("rag_000000000000_" + "A" * 43, "not-a-key"):
        with pytest.raises(openai.AuthenticationError) as refused:
            service.client(bad_key).models.list()
        assert refused.value.status_code == 401
        assert isinstance(refused.value.body, dict)
        assert refused.value.body["type"] == "authentication_error"

    with pytest.raises(openai.BadRequestError) as several:
        client.chat.completions.create(model=service.collection, messages=messages, n=2)
    assert several.value.param == "n"
    tool: Any = {"type": "function", "function": {"name": "search", "parameters": {}}}
    with pytest.raises(openai.BadRequestError) as tools:
        client.chat.completions.create(model=service.collection, messages=messages, tools=[tool])
    assert tools.value.param == "tools"
    with pytest.raises(openai.BadRequestError) as options:
        client.chat.completions.create(
            model=service.collection, messages=messages, extra_body={"rag": {"top_k": 99}}
        )
    assert options.value.param == "rag.top_k"

    # Keys are scoped as on the native API: a query key may query every collection (there is
    # no per-collection scoping), and may not use the admin routes, whose shape stays native.
    with service.native(service.query_key) as native:
        admin_only = native.post("/admin/v1/collections", json={"name": "nope"})
    assert admin_only.status_code == 403
    assert admin_only.json() == {
        "error": {"code": "forbidden", "message": admin_only.json()["error"]["message"]}
    }


def test_an_instance_without_keys_is_open_as_the_native_api(
    embedders: EmbedderPool, llm: Generator, tmp_path: Path
) -> None:
    server = ServerThread(create_app(Settings(data_dir=tmp_path / "data"), embedders, llm))
    try:
        created = httpx.post(f"{server.url}/admin/v1/collections", json={"name": "open-docs"})
        assert created.status_code == 201
        client = openai.OpenAI(base_url=f"{server.url}/openai/v1", api_key="unused")
        assert [m.id for m in client.models.list().data] == ["open-docs"]
    finally:
        server.close()
