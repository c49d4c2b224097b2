"""A query's answer as OpenAI chat completion objects (app/openai_schemas.py): the message text
a chat client shows, the `chat.completion` body, and the `chat.completion.chunk` server-sent
events of a streamed answer.

The message text is the answer followed by its [n] citation markers and the cited quotes, each
with its file; a decline is the pipeline's own sentence saying the documents do not answer. The
native response (the same serialisation as POST /v1/query) rides along as the `rag` field, so a
client can check every quote against its document.

Streamed, the answer's text goes out as the model writes it. Content sent cannot be taken back:
when the checked answer differs from what was streamed (a quote of the evidence instead, a
decline, an answer written again), the last content chunk says so and gives the checked answer
(`correction`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

from app.openai_errors import openai_error
from app.openai_schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    CompletionUsage,
    Delta,
    PromptTokensDetails,
)
from app.query_schemas import QueryResponse
from core.errors import RagError
from generation.reasoning.answer_stream import streamed_as_final
from generation.reasoning.results import (
    AnswerDeltaEvent,
    AnswerEvent,
    AnswerResetEvent,
    DoneEvent,
    QueryEvent,
    QueryResult,
)
from generation.reasoning.values import Citation

log = logging.getLogger(__name__)

_MARKER = re.compile(r"\[\d+\]")
# A retrieval-only answer lists its passages: enough of each to recognise it.
_PASSAGE_CHARS = 300


def _one_line(text: str) -> str:
    return " ".join(text.split())


def answer_content(answer: str, citations: Sequence[Citation]) -> str:
    """The answer with its citation markers, then each cited quote with its file:

    Simple Mail Transfer Protocol [1]

    Sources:
    - [1] smtp.md: "SMTP stands for Simple Mail Transfer Protocol."
    """
    return f"{answer}{_markers(answer, citations)}{_sources(citations)}"


def _markers(answer: str, citations: Sequence[Citation]) -> str:
    if not citations or _MARKER.search(answer):
        return ""
    return " " + "".join(f"[{c.id}]" for c in citations)


def _sources(citations: Sequence[Citation]) -> str:
    if not citations:
        return ""
    sources = "\n".join(f'- [{c.id}] {c.filename}: "{_one_line(c.quote)}"' for c in citations)
    return f"\n\nSources:\n{sources}"


def after_streamed(streamed: str, answer: str, citations: Sequence[Citation]) -> str:
    """What follows the answer's text streamed as the model wrote it, once the checked answer
    is known: its citation markers and sources when the streamed text reads as it (but for
    evidence markers and spaces); otherwise a marked correction giving the checked answer,
    "(Checked against the documents, the answer is: … [1])", then the sources. Nothing was
    streamed: the whole answer content."""
    if not streamed:
        return answer_content(answer, citations)
    if streamed_as_final(streamed, answer):
        return _markers(streamed, citations) + _sources(citations)
    checked = answer + _markers(answer, citations)
    return f"\n\n(Checked against the documents, the answer is: {checked}){_sources(citations)}"


def result_notes(result: QueryResult) -> str:
    """What the message adds after the answer when it did not come from cited documents: the
    passages that stand in for an answer the generator could not make, or that a closed_book
    answer is the model's alone. Empty otherwise."""
    if result.degraded is not None and result.hits:
        passages = "\n".join(
            f'- {hit.filename}: "{_one_line(hit.text)[:_PASSAGE_CHARS]}"' for hit in result.hits
        )
        return f"\n\nPassages:\n{passages}"
    if result.mode == "closed_book":
        return "\n\n(closed_book mode: the model answered alone, not from the documents.)"
    return ""


def message_content(result: QueryResult) -> str:
    return answer_content(result.answer, result.citations) + result_notes(result)


def usage_of(result: QueryResult) -> CompletionUsage:
    usage = result.usage
    return CompletionUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.prompt_tokens + usage.completion_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cached_prompt_tokens),
    )


def rag_field(result: QueryResult) -> QueryResponse:
    """The native response of POST /v1/query for this result."""
    return QueryResponse.model_validate(result.to_json())


def completion(result: QueryResult, completion_id: str, created: int, model: str) -> ChatCompletion:
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=model,
        choices=[Choice(message=AssistantMessage(content=message_content(result)))],
        usage=usage_of(result),
        rag=rag_field(result),
    )


class ChunkWriter:
    """The `data: {chunk}` lines of one streamed answer (one id and `created` for all)."""

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        self._id = completion_id
        self._created = created
        self._model = model

    def chunk(
        self,
        delta: Delta | None = None,
        *,
        finish: bool = False,
        usage: CompletionUsage | None = None,
        rag: QueryResponse | None = None,
    ) -> str:
        """A chunk with one choice carrying `delta` (and `finish_reason: stop` when `finish`),
        or, with `usage` and no delta, the usage chunk (no choices)."""
        choices = []
        if delta is not None:
            choices.append(ChunkChoice(delta=delta, finish_reason="stop" if finish else None))
        chunk = ChatCompletionChunk(
            id=self._id,
            created=self._created,
            model=self._model,
            choices=choices,
            usage=usage,
            rag=rag,
        )
        body = chunk.model_dump(mode="json", exclude_none=True)
        for choice in body["choices"]:
            # OpenAI sends finish_reason: null until the last chunk; strict clients read it.
            choice.setdefault("finish_reason", None)
        return data_line(body)


def data_line(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body, separators=(',', ':'))}\n\n"


DONE_LINE = "data: [DONE]\n\n"


async def completion_chunks(
    events: AsyncIterator[QueryEvent], writer: ChunkWriter, include_usage: bool
) -> AsyncIterator[str]:
    """The answer as chunks: the role, the answer's text as the model writes it (one chunk per
    answer_delta), then when the pipeline's checked answer arrives its markers and sources, or
    a correction when it differs from the text streamed (`after_streamed`; the whole answer in
    one chunk when nothing was streamed, as for a cached answer), any notes with the result,
    then an empty delta with `finish_reason: stop` and the `rag` field, the usage chunk when
    asked, and `[DONE]`. Once the model starts its answer over (answer_reset), its new text is
    not streamed: the correction gives the answer. A failure after the stream started is an
    OpenAI error object in a data line, then `[DONE]`."""
    yield writer.chunk(Delta(role="assistant"))
    sent_answer = False
    streamed: list[str] = []
    started_over = False
    try:
        async for event in events:
            if isinstance(event, AnswerDeltaEvent) and not started_over:
                streamed.append(event.text)
                yield writer.chunk(Delta(content=event.text))
            elif isinstance(event, AnswerResetEvent):
                started_over = bool(streamed)
            elif isinstance(event, AnswerEvent):
                sent_answer = True
                text = after_streamed("".join(streamed), event.answer, event.citations)
                if text:
                    yield writer.chunk(Delta(content=text))
            elif isinstance(event, DoneEvent):
                result = event.result
                text = result_notes(result)
                if not sent_answer:  # the pipeline always sends its answer first; guard anyway
                    text = message_content(result)
                if text:
                    yield writer.chunk(Delta(content=text))
                yield writer.chunk(Delta(), finish=True, rag=rag_field(result))
                if include_usage:
                    yield writer.chunk(usage=usage_of(result))
    except RagError as exc:
        yield data_line(openai_error(exc.http_status, exc.code, exc.message)[1])
    except Exception:  # the stream has started: report, never drop the connection silently
        log.exception("chat completion stream failed")
        message = "internal error; see the server log"
        yield data_line(openai_error(500, "internal_error", message)[1])
    yield DONE_LINE
