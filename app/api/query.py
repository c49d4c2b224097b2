"""Self-reasoning queries, JSON or server-sent events."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response, StreamingResponse

from app.deps import ServicesDep
from app.openapi import error_responses
from app.schemas import QueryRequest, QueryResponse
from core.errors import RagError
from generation.query_service import PreparedQuery, QueryService, cached_body
from generation.self_reasoning import QueryOptions

router = APIRouter(tags=["query"])

SSE_DESCRIPTION = (
    "Events in order, each `event: <name>` then `data: <JSON object>`: "
    "`retrieval` {hits, index_version, embedder}; `relevance` {relevance: [judgement]}; "
    "`evidence` {evidence: [item]}; `analysis` {analysis}; `answer` {answer, citations}; "
    "`done` (the whole JSON response, as without streaming), or instead `error` "
    "{error: {code, message}} if the run fails after the stream started."
)
SSE_EXAMPLE = (
    'event: retrieval\ndata: {"hits":[...],"index_version":3,"embedder":"all-MiniLM-L6-v2"}\n\n'
    'event: relevance\ndata: {"relevance":[...]}\n\n'
    'event: evidence\ndata: {"evidence":[...]}\n\n'
    'event: analysis\ndata: {"analysis":"SMTP is ... [1]"}\n\n'
    'event: answer\ndata: {"answer":"Simple Mail Transfer Protocol","citations":[...]}\n\n'
    'event: done\ndata: {"answer":"Simple Mail Transfer Protocol", ...}\n\n'
)
log = logging.getLogger(__name__)


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
async def query(body: QueryRequest, services: ServicesDep) -> Any:
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
    )
    queries = services.queries
    prepared = await queries.prepare(options)  # unknown collection/adapter: a plain error
    if prepared.cached is not None and not body.stream:
        # A hit was validated when it was computed: send it without building the model again.
        body_json = cached_body(prepared.cached, prepared.started)
        content = json.dumps(body_json, separators=(",", ":"))
        return Response(content, media_type="application/json")
    if body.stream:
        return StreamingResponse(
            sse(queries, prepared),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    final: dict[str, Any] = {}
    async for event, data in queries.events(prepared):
        if event == "done":
            final = data
    return final


async def sse(queries: QueryService, prepared: PreparedQuery) -> AsyncIterator[str]:
    try:
        async for event, data in queries.events(prepared):
            yield f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
    except RagError as exc:
        yield _error_event(exc.code, exc.message)
    except Exception:  # the stream has started: report, never drop the connection silently
        log.exception("query stream failed")
        yield _error_event("internal_error", "internal error; see the server log")


def _error_event(code: str, message: str) -> str:
    return f"event: error\ndata: {json.dumps({'error': {'code': code, 'message': message}})}\n\n"
