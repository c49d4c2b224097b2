"""Self-reasoning queries, JSON or server-sent events."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response, StreamingResponse

from app.deps import ServicesDep
from app.schemas import QueryRequest, QueryResponse
from core.errors import RagError
from generation.query_service import PreparedQuery, QueryService, cached_body
from generation.self_reasoning import QueryOptions

router = APIRouter(tags=["query"])
log = logging.getLogger(__name__)


@router.post(
    "/v1/query",
    response_model=QueryResponse,
    # Unset optional fields are left out, as in a cached answer (sent as stored).
    response_model_exclude_none=True,
    responses={200: {"content": {"text/event-stream": {}}}},
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
        content = json.dumps(cached_body(prepared.cached), separators=(",", ":"))
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
