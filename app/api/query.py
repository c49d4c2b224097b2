"""Self-reasoning queries, JSON or server-sent events."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from app.deps import ServicesDep
from app.openapi import error_responses
from app.query_schemas import QueryRequest, QueryResponse
from core.errors import RagError
from generation.reasoning.results import QueryEvent
from generation.reasoning.values import QueryOptions, Turn

router = APIRouter(tags=["query"])

SSE_DESCRIPTION = (
    "Events in order, each `event: <name>` then `data: <JSON object>`: "
    "`retrieval` {hits, index_version, embedder}; `relevance` {relevance: [judgement]}; "
    "`evidence` {evidence: [item]}; `analysis` {analysis}; `answer` {answer, citations}; "
    "`done` (the whole JSON response, as without streaming), or instead `error` "
    "{error: {code, message}} if the run fails after the stream started. "
    "While the model writes the answer (in steps mode before `analysis`; in single_pass before "
    "`relevance`; otherwise before `answer`), `answer_delta` {text} events carry its new "
    "characters as written: append them. `answer_reset` {reason: repair | answer_again} means "
    "the text so far was discarded and the model writes the answer again: clear it. The "
    "`answer` event is authoritative: the checks may replace the streamed text (by a quote of "
    "the evidence, a decline, another answer, without evidence markers), so show the `answer` "
    "event's text in its place. A cached answer sends no `answer_delta`."
)
SSE_EXAMPLE = (
    'event: retrieval\ndata: {"hits":[...],"index_version":3,"embedder":"all-MiniLM-L6-v2"}\n\n'
    'event: relevance\ndata: {"relevance":[...]}\n\n'
    'event: evidence\ndata: {"evidence":[...]}\n\n'
    'event: answer_delta\ndata: {"text":"Simple Mail"}\n\n'
    'event: answer_delta\ndata: {"text":" Transfer Protocol"}\n\n'
    'event: analysis\ndata: {"analysis":"SMTP is ... [1]"}\n\n'
    'event: answer\ndata: {"answer":"Simple Mail Transfer Protocol","citations":[...]}\n\n'
    'event: done\ndata: {"answer":"Simple Mail Transfer Protocol", ...}\n\n'
)
log = logging.getLogger(__name__)
T = TypeVar("T")
# nginx's "client closed request": recorded in the request metrics; nobody receives it.
CLIENT_CLOSED_REQUEST = 499


@router.post(
    "/v1/query",
    response_model=QueryResponse,
    # Unset optional fields are left out, as in a cached answer (sent as stored).
    response_model_exclude_none=True,
    responses={
        200: {
            "description": "The answer; with `stream: true`, server-sent events instead.",
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string", "description": SSE_DESCRIPTION},
                    "example": SSE_EXAMPLE,
                }
            },
        },
        **error_responses(404, 502),
    },
)
async def query(body: QueryRequest, services: ServicesDep, request: Request) -> Any:
    """Answer a question with verified citations; `"stream": true` sends server-sent events."""
    pipeline = services.settings.generation.pipeline
    options = QueryOptions(
        collection=body.collection,
        question=body.question,
        top_k=body.top_k or pipeline.top_k,
        adapter=body.adapter,
        mode=body.mode or pipeline.mode,
        allow_unsupported=body.allow_unsupported,
        use_cache=body.use_cache,
        retrieval=body.retrieval,
        history=tuple(Turn(t.question, t.answer) for t in body.history),
    )
    answer = await services.queries.ask(options)  # unknown collection/adapter: a plain error
    if body.stream:
        # A client that goes away cancels the stream (Starlette listens for the disconnect),
        # and with it the pipeline and the model's generation.
        return StreamingResponse(
            sse(answer.events()),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    result = await while_connected(request, answer.result())
    if result is None:
        log.info("query stopped: its client disconnected")
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    if result.cached:
        # A hit was validated when it was computed: send it without building the model again.
        content = json.dumps(result.to_json(), separators=(",", ":"))
        return Response(content, media_type="application/json")
    return result.to_json()


async def while_connected(request: Request, work: Awaitable[T]) -> T | None:
    """`work`'s result, or None when the client disconnects first: `work` is then cancelled
    (the embedded model stops at its next token), so an answer nobody waits for does not hold
    the generator for minutes."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()  # the client left, or this request itself was cancelled
    if task.cancelled() or not task.done():
        await asyncio.wait({task})  # let the cancellation unwind (the generator stops)
        return None
    return task.result()


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects. Once the body has been read, an ASGI server's
    receive() blocks until then (uvicorn: until the connection closes)."""
    while (await request.receive())["type"] != "http.disconnect":
        await asyncio.sleep(0.5)  # a message other than the disconnect: nothing to wait on


async def sse(events: AsyncIterator[QueryEvent]) -> AsyncIterator[str]:
    try:
        async for event in events:
            data = json.dumps(event.data(), separators=(",", ":"))
            yield f"event: {event.name}\ndata: {data}\n\n"
    except RagError as exc:
        yield _error_event(exc.code, exc.message)
    except Exception:  # the stream has started: report, never drop the connection silently
        log.exception("query stream failed")
        yield _error_event("internal_error", "internal error; see the server log")


def _error_event(code: str, message: str) -> str:
    return f"event: error\ndata: {json.dumps({'error': {'code': code, 'message': message}})}\n\n"
