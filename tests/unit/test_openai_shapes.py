"""The OpenAI-compatible surface's shapes without I/O: errors take OpenAI's shape under /openai
only, and the message text is the answer with its markers and quotes (the end-to-end behaviour
is in tests/integration/test_openai_compat.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest

from app.openai_completions import (
    ChunkWriter,
    after_streamed,
    answer_content,
    completion_chunks,
    message_content,
)
from app.openai_errors import error_content
from app.openai_schemas import Delta
from generation.reasoning.results import (
    AnswerDeltaEvent,
    AnswerEvent,
    AnswerResetEvent,
    DoneEvent,
    QueryEvent,
    QueryResult,
    Usage,
)
from generation.reasoning.values import Citation
from retrieval.search import Hit


@pytest.mark.parametrize(
    ("status", "code", "kind", "sent_status", "sent_code", "param"),
    [
        (401, "unauthorized", "authentication_error", 401, "unauthorized", None),
        (403, "forbidden", "permission_error", 403, "forbidden", None),
        (404, "collection_not_found", "invalid_request_error", 404, "model_not_found", "model"),
        (
            404,
            "adapter_not_found",
            "invalid_request_error",
            404,
            "adapter_not_found",
            "rag.adapter",
        ),
        (422, "validation_error", "invalid_request_error", 400, "validation_error", None),
        (429, "rate_limited", "rate_limit_error", 429, "rate_limited", None),
        (502, "generator_invalid_output", "server_error", 502, "generator_invalid_output", None),
        (503, "generator_unavailable", "server_error", 503, "generator_unavailable", None),
    ],
)
def test_errors_under_openai_take_openais_shape(
    status: int, code: str, kind: str, sent_status: int, sent_code: str, param: str | None
) -> None:
    sent, body = error_content("/openai/v1/chat/completions", status, code, "it failed")
    assert sent == sent_status
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == kind
    assert body["error"]["code"] == sent_code
    assert body["error"]["param"] == param
    assert body["error"]["message"].startswith("it failed")


def test_errors_elsewhere_keep_the_native_shape() -> None:
    for path in ("/v1/query", "/openaix/v1", "/admin/v1/collections"):
        assert error_content(path, 422, "validation_error", "question: required") == (
            422,
            {"error": {"code": "validation_error", "message": "question: required"}},
        )


def citation(number: int, quote: str) -> Citation:
    return Citation(number, "d1", "smtp.md", 7, quote, 0, len(quote))


def test_the_message_is_the_answer_its_markers_and_its_quotes() -> None:
    cited = [
        citation(1, "SMTP stands for\nSimple Mail Transfer Protocol."),
        citation(2, "It is old."),
    ]
    assert answer_content("Simple Mail Transfer Protocol", cited) == (
        "Simple Mail Transfer Protocol [1][2]\n\n"
        "Sources:\n"
        '- [1] smtp.md: "SMTP stands for Simple Mail Transfer Protocol."\n'
        '- [2] smtp.md: "It is old."'
    )
    # Markers the answer already carries are not repeated; a decline has nothing to cite.
    assert answer_content("SMTP [1]", cited[:1]).startswith("SMTP [1]\n\nSources:")
    declined = "The documents retrieved for this question do not contain the answer."
    assert answer_content(declined, []) == declined


def test_chunks_carry_finish_reason_null_until_the_last() -> None:
    writer = ChunkWriter("chatcmpl-1", 1735689600, "docs")
    first = json.loads(writer.chunk(Delta(role="assistant")).removeprefix("data: "))
    assert first["choices"] == [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]
    assert first["object"] == "chat.completion.chunk" and "rag" not in first
    last = json.loads(writer.chunk(Delta(), finish=True).removeprefix("data: "))
    assert last["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]


def result(answer: str, **fields: Any) -> QueryResult:
    plain = QueryResult(answer, "", [], [], [], "m", "steps", 1, Usage(), {})
    return replace(plain, **fields)


def test_an_answer_not_from_cited_documents_says_where_it_comes_from() -> None:
    closed = message_content(result("Paris.", mode="closed_book"))
    assert closed.startswith("Paris.\n\n(closed_book mode: the model answered alone")
    hit = Hit(3, "d1", "smtp.md", "SMTP  sends\nmail.", 0.9, 0, 17)
    down = message_content(result("No answer could be generated…", degraded="x", hits=[hit]))
    assert down.endswith('Passages:\n- smtp.md: "SMTP sends mail."')


def streamed_contents(events: list[QueryEvent]) -> list[str]:
    """The content of each chunk the OpenAI stream makes of the pipeline's `events`."""

    async def chunks() -> list[str]:
        async def source() -> AsyncIterator[QueryEvent]:
            for event in events:
                yield event

        writer = ChunkWriter("chatcmpl-1", 1735689600, "docs")
        lines = [line async for line in completion_chunks(source(), writer, False)]
        bodies = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
        return [
            c["delta"]["content"] for b in bodies for c in b["choices"] if "content" in c["delta"]
        ]

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, chunks()).result()


def test_a_streamed_answer_is_sent_as_written_then_its_sources() -> None:
    cited = [citation(1, "SMTP stands for Simple Mail Transfer Protocol.")]
    final = result("Simple Mail Transfer Protocol", citations=cited)
    contents = streamed_contents(
        [
            AnswerDeltaEvent("Simple Mail"),
            AnswerDeltaEvent(" Transfer Protocol [1]"),
            AnswerEvent(final.answer, cited),
            DoneEvent(final),
        ]
    )
    assert contents[:2] == ["Simple Mail", " Transfer Protocol [1]"]
    # Read as the checked answer (its marker aside): only the sources follow, no correction.
    assert contents[2:] == [
        '\n\nSources:\n- [1] smtp.md: "SMTP stands for Simple Mail Transfer Protocol."'
    ]


def test_a_streamed_answer_the_checks_replaced_is_corrected_in_words() -> None:
    cited = [citation(1, "SMTP stands for Simple Mail Transfer Protocol.")]
    final = result("Simple Mail Transfer Protocol", citations=cited)
    contents = streamed_contents(
        [
            AnswerDeltaEvent("Post"),
            AnswerDeltaEvent(" office"),
            AnswerEvent(final.answer, cited),
            DoneEvent(final),
        ]
    )
    assert contents == [
        "Post",
        " office",
        "\n\n(Checked against the documents, the answer is: Simple Mail Transfer Protocol [1])"
        '\n\nSources:\n- [1] smtp.md: "SMTP stands for Simple Mail Transfer Protocol."',
    ]


def test_after_an_answer_reset_the_correction_gives_the_answer() -> None:
    declined = "The documents retrieved for this question do not contain the answer."
    final = result(declined)
    contents = streamed_contents(
        [
            AnswerDeltaEvent("[1]"),
            AnswerResetEvent("answer_again"),
            AnswerDeltaEvent("Something else"),
            AnswerEvent(declined, []),
            DoneEvent(final),
        ]
    )
    assert contents == ["[1]", f"\n\n(Checked against the documents, the answer is: {declined})"]


def test_an_answer_nobody_streamed_comes_in_one_piece() -> None:
    cited = [citation(1, "It is old.")]
    assert after_streamed("", "SMTP", cited) == answer_content("SMTP", cited)
    final = result("SMTP", citations=cited)
    contents = streamed_contents([AnswerEvent("SMTP", cited), DoneEvent(final)])
    assert contents == [answer_content("SMTP", cited)]
