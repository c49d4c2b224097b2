"""The OpenAI-compatible surface: chat clients and SDKs use the service with the base URL
`http://host:8000/openai/v1`. Each collection is a model; a chat completion answers the last
user message through the same query path as POST /v1/query. Keys, roles and rate limits are
the native API's (app/auth.py: a query key may call these routes); errors take OpenAI's shape
(app/openai_errors.py).
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response, StreamingResponse

from app.api.query import CLIENT_CLOSED_REQUEST, while_connected
from app.deps import ServicesDep
from app.openai_completions import ChunkWriter, completion, completion_chunks
from app.openai_errors import RequestFieldError
from app.openai_schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessage,
    ModelList,
    ModelObject,
    RagOptions,
)
from app.openapi import openai_error_responses
from app.query_schemas import HISTORY_MAX_TURNS
from app.schemas import COLLECTION_NAME, QUERY_MAX_CHARS
from core import repository
from core.errors import RagError
from core.models import Collection
from generation.reasoning.values import QueryOptions, Turn

router = APIRouter(prefix="/openai/v1", tags=["openai"])

STREAM_DESCRIPTION = (
    "Server-sent `data: {chat.completion.chunk}` lines: first `delta: {role: assistant}`, then "
    "the answer's text (all at once when the pipeline's answer is ready: it is not streamed "
    "token by token yet), then an empty delta with `finish_reason: stop` and the `rag` field, "
    "then `data: [DONE]`. A failure after the stream started sends `data: {error: {...}}` "
    "(OpenAI's error shape), then `data: [DONE]`."
)
STREAM_EXAMPLE = (
    'data: {"id":"chatcmpl-1f0c","object":"chat.completion.chunk","created":1735689600,'
    '"model":"docs","choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}\n\n'
    'data: {"id":"chatcmpl-1f0c","object":"chat.completion.chunk","created":1735689600,'
    '"model":"docs","choices":[{"index":0,"delta":{"content":"Simple Mail Transfer Protocol '
    '[1]\\n\\nSources:\\n- [1] smtp.md: \\"SMTP stands for ...\\""},"finish_reason":null}]}\n\n'
    'data: {"id":"chatcmpl-1f0c","object":"chat.completion.chunk","created":1735689600,'
    '"model":"docs","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
    '"rag":{"answer":"Simple Mail Transfer Protocol","citations":[...],"supported":true,...}}\n\n'
    "data: [DONE]\n\n"
)
_COLLECTION_NAME = re.compile(COLLECTION_NAME)
ModelPath = Annotated[
    str, Path(description="A model id: a collection name.", examples=["docs"], max_length=256)
]


def model_object(collection: Collection) -> ModelObject:
    created = collection.created_at
    if created.tzinfo is None:  # SQLite hands back naive datetimes; they are stored in UTC
        created = created.replace(tzinfo=UTC)
    return ModelObject(id=collection.name, created=int(created.timestamp()))


@router.get("/models", responses=openai_error_responses())
def list_models(services: ServicesDep) -> ModelList:
    """The collections the key may query, as OpenAI models (id: the collection name)."""
    with services.db.session() as session:
        collections = list(repository.list_collections(session))
    return ModelList(data=[model_object(c) for c in collections])


@router.get("/models/{model}", responses=openai_error_responses(404))
def get_model(model: ModelPath, services: ServicesDep) -> ModelObject:
    """One collection as an OpenAI model."""
    with services.db.session() as session:
        collection = repository.get_collection(session, collection_name(model))
    return model_object(collection)


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    # As POST /v1/query: unset optional fields of the `rag` response are left out.
    response_model_exclude_none=True,
    responses={
        200: {
            "description": "The answer; with `stream: true`, server-sent events instead.",
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string", "description": STREAM_DESCRIPTION},
                    "example": STREAM_EXAMPLE,
                }
            },
        },
        **openai_error_responses(400, 404, 502),
    },
)
async def chat_completions(
    body: ChatCompletionRequest, services: ServicesDep, request: Request
) -> Any:
    """Answer the last user message from the collection named by `model`, with citations."""
    refuse_unsupported(body)
    pipeline = services.settings.generation.pipeline
    rag = body.rag or RagOptions()
    options = QueryOptions(
        collection=collection_name(body.model),
        question=last_question(body.messages),
        top_k=rag.top_k or pipeline.top_k,
        adapter=rag.adapter,
        mode=rag.mode or pipeline.mode,
        use_cache=rag.use_cache,
        history=history(body.messages),
    )
    answer = await services.queries.ask(options)  # unknown collection/adapter: a plain error
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if body.stream:
        # A client that goes away cancels the stream, and with it the pipeline.
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        chunks = completion_chunks(
            answer.events(), ChunkWriter(completion_id, created, body.model), include_usage
        )
        return StreamingResponse(
            chunks,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    result = await while_connected(request, answer.result())
    if result is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return completion(result, completion_id, created, body.model)


def collection_name(model: str) -> str:
    """The collection a model id names. An id no collection could have (OpenAI's own, such as
    gpt-4o/mini, or a control character) is refused as unknown without a database read."""
    if not _COLLECTION_NAME.match(model):
        raise RagError("collection_not_found", f"collection {model!r} does not exist")
    return model


def refuse_unsupported(body: ChatCompletionRequest) -> None:
    """Refuse the standard fields whose promise the service cannot keep: several choices,
    tool or function calls, a JSON answer. Sampling and length fields are ignored."""
    if body.n is not None and body.n != 1:
        raise RequestFieldError("unsupported_parameter", "n: only 1 answer is given", "n")
    for field in ("tools", "functions"):
        if getattr(body, field):
            message = f"{field}: not supported: the service answers from documents, calls no tools"
            raise RequestFieldError("unsupported_parameter", message, field)
    kind = (body.response_format or {}).get("type", "text")
    if kind != "text":
        message = f"response_format {kind!r}: not supported: the answer is text with citations"
        raise RequestFieldError("unsupported_value", message, "response_format")


def message_text(message: ChatMessage) -> str:
    content = message.content
    if isinstance(content, list):
        content = "\n".join(p.text for p in content if p.type == "text" and p.text)
    return content or ""


def last_question(messages: list[ChatMessage]) -> str:
    """The text of the last user message: the question."""
    user = [m for m in messages if m.role == "user"]
    if not user:
        raise RequestFieldError("validation_error", "messages: no user message", "messages")
    content = message_text(user[-1])
    if not content.strip():
        message = "messages: the last user message has no text"
        raise RequestFieldError("validation_error", message, "messages")
    if len(content) > QUERY_MAX_CHARS:
        message = f"messages: the last user message is over {QUERY_MAX_CHARS} characters"
        raise RequestFieldError("validation_error", message, "messages")
    return content


def history(messages: list[ChatMessage]) -> tuple[Turn, ...]:
    """The conversation before the last user message, as (question, answer) turns: each user
    message with the assistant's reply after it (without the sources list this surface adds
    to its answers). System and tool messages are not part of it."""
    last = max(i for i, m in enumerate(messages) if m.role == "user")
    turns: list[Turn] = []
    for message in messages[:last]:
        text = message_text(message).strip()
        if message.role == "user" and text:
            turns.append(Turn(text[:QUERY_MAX_CHARS], ""))
        elif message.role == "assistant" and turns and not turns[-1].answer:
            answer = text.split("\n\nSources:\n", 1)[0]
            turns[-1] = Turn(turns[-1].question, answer)
    return tuple(turns[-HISTORY_MAX_TURNS:])
