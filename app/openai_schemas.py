"""Request and response models of the OpenAI-compatible surface (/openai/v1, app/api/
openai_compat.py): OpenAI's chat completion, chunk, model and error objects, plus the `rag`
extra field on both sides.

Requests ignore fields they do not declare, as OpenAI clients send many (`seed`, `stop`,
`metadata`, vendor extras). The standard fields the service cannot honour in a harmless way
(`n` > 1, `tools`, `functions`, a JSON `response_format`) are declared so the route can refuse
them by name.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.query_schemas import (
    ADAPTER_HELP,
    MODE_HELP,
    TOP_K_HELP,
    USE_CACHE_HELP,
    AdapterName,
    QueryResponse,
    TopK,
)
from app.schemas import example_config
from generation.reasoning.values import Mode

OWNER = "rag-service"
IGNORED = "Accepted and ignored: the reasoning steps set their own sampling and lengths."


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = Field(description="text (read); other parts, such as image_url, are ignored.")
    text: str | None = Field(default=None, description="The text of a `text` part.")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str = Field(
        description="system, developer, user, assistant or tool. The last `user` message is "
        "answered; the user and assistant messages before it are the conversation it follows "
        "(a follow-up is rewritten to stand alone before retrieval)."
    )
    content: str | list[ContentPart] | None = Field(
        default=None, description="The message text, or content parts whose text parts are read."
    )


class RagOptions(BaseModel):
    """The service's own query options (as on POST /v1/query), in OpenAI's extra-body style:
    `extra_body={"rag": {...}}` with the openai Python package."""

    model_config = example_config({"mode": "single_pass", "top_k": 3}, forbid=True)

    mode: Mode | None = Field(default=None, description=MODE_HELP)
    adapter: AdapterName | None = Field(default=None, description=ADAPTER_HELP)
    top_k: TopK | None = Field(default=None, description=TOP_K_HELP)
    use_cache: bool = Field(default=True, description=USE_CACHE_HELP)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = Field(
        default=False,
        description="True: one more chunk before `[DONE]`, with `usage` and no choices.",
    )


class ChatCompletionRequest(BaseModel):
    model_config = example_config(
        {
            "model": "docs",
            "messages": [{"role": "user", "content": "What does SMTP stand for?"}],
            "rag": {"mode": "steps", "top_k": 5},
        }
    )

    model: str = Field(
        min_length=1, max_length=256, description="The collection to answer from (GET models)."
    )
    messages: list[ChatMessage] = Field(
        min_length=1,
        description="The conversation; its last user message is the question. Earlier "
        "messages are not used yet (follow-up questions are not rewritten from history).",
    )
    stream: bool = Field(
        default=False, description="True: `chat.completion.chunk` server-sent events."
    )
    stream_options: StreamOptions | None = Field(
        default=None, description="With `stream`: include_usage adds a usage chunk."
    )
    rag: RagOptions | None = Field(
        default=None, description="The service's query options: mode, adapter, top_k, use_cache."
    )
    n: int | None = Field(default=None, description="Only 1: the service gives one answer.")
    tools: list[Any] | None = Field(default=None, description="Not supported: refused (400).")
    functions: list[Any] | None = Field(default=None, description="Not supported: refused (400).")
    response_format: dict[str, Any] | None = Field(
        default=None, description='Only `{"type": "text"}`: the answer is prose with citations.'
    )
    temperature: float | None = Field(default=None, description=IGNORED)
    top_p: float | None = Field(default=None, description=IGNORED)
    max_tokens: int | None = Field(default=None, description=IGNORED)
    max_completion_tokens: int | None = Field(default=None, description=IGNORED)
    user: str | None = Field(default=None, description="Accepted and ignored.")


class ModelObject(BaseModel):
    id: str = Field(description="The collection's name: pass it as `model`.")
    object: Literal["model"] = Field(default="model", description="Always `model`.")
    created: int = Field(description="When the collection was created (Unix seconds).")
    owned_by: str = Field(default=OWNER, description=f"Always `{OWNER}`.")


class ModelList(BaseModel):
    object: Literal["list"] = Field(default="list", description="Always `list`.")
    data: list[ModelObject] = Field(description="The collections the key may query, by name.")


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = Field(default="assistant", description="Always `assistant`.")
    content: str = Field(
        description="The answer, its [n] markers and the cited quotes; or, when the documents "
        "do not answer, a sentence saying so."
    )


class Choice(BaseModel):
    index: int = Field(default=0, description="Always 0: one answer.")
    message: AssistantMessage = Field(description="The answer.")
    finish_reason: Literal["stop"] = Field(default="stop", description="Always `stop`.")


class PromptTokensDetails(BaseModel):
    cached_tokens: int = Field(description="Prompt tokens the generator took from its cache.")


class CompletionUsage(BaseModel):
    prompt_tokens: int = Field(description="Prompt tokens of every reasoning step together.")
    completion_tokens: int = Field(description="Tokens the generator produced, all steps.")
    total_tokens: int = Field(description="Their sum.")
    prompt_tokens_details: PromptTokensDetails = Field(description="Of the prompt tokens.")


RAG_FIELD_HELP = (
    "The native POST /v1/query response for this answer: citations (verbatim quotes with "
    "offsets), evidence, relevance, supported, answerability, hits, timings."
)


class ChatCompletion(BaseModel):
    id: str = Field(description="`chatcmpl-` and a random id.")
    object: Literal["chat.completion"] = Field(
        default="chat.completion", description="Always `chat.completion`."
    )
    created: int = Field(description="When the answer was made (Unix seconds).")
    model: str = Field(description="The collection that answered.")
    choices: list[Choice] = Field(description="One choice.")
    usage: CompletionUsage = Field(description="What the answer cost when it was computed.")
    rag: QueryResponse = Field(description=RAG_FIELD_HELP)


class Delta(BaseModel):
    role: Literal["assistant"] | None = Field(default=None, description="In the first chunk.")
    content: str | None = Field(default=None, description="Text to append to the answer.")


class ChunkChoice(BaseModel):
    index: int = Field(default=0, description="Always 0.")
    delta: Delta = Field(description="What this chunk adds; empty in the last.")
    finish_reason: Literal["stop"] | None = Field(
        default=None, description="`stop` in the last chunk with a choice; null before."
    )


class ChatCompletionChunk(BaseModel):
    id: str = Field(description="The same for every chunk of one answer.")
    object: Literal["chat.completion.chunk"] = Field(
        default="chat.completion.chunk", description="Always `chat.completion.chunk`."
    )
    created: int = Field(description="When the answer started (Unix seconds).")
    model: str = Field(description="The collection that answers.")
    choices: list[ChunkChoice] = Field(description="One; none in the usage chunk.")
    usage: CompletionUsage | None = Field(
        default=None, description="Only in the usage chunk (stream_options.include_usage)."
    )
    rag: QueryResponse | None = Field(
        default=None, description=RAG_FIELD_HELP + " Only in the chunk with `finish_reason`."
    )


class OpenAIErrorBody(BaseModel):
    message: str = Field(description="A sentence a person can act on.")
    type: str = Field(
        description="invalid_request_error (400, 404, 409, 413, 415), authentication_error "
        "(401), permission_error (403), rate_limit_error (429), server_error (5xx)."
    )
    param: str | None = Field(description="The request field at fault, when one is.")
    code: str | None = Field(
        description="The native API's machine code; `model_not_found` for an unknown collection."
    )


class OpenAIErrorResponse(BaseModel):
    """The body of every error under /openai, in OpenAI's shape."""

    model_config = example_config(
        {
            "error": {
                "message": "collection 'docs' does not exist; each model is a collection: "
                "GET /openai/v1/models lists them",
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_found",
            }
        }
    )

    error: OpenAIErrorBody = Field(description="What went wrong.")
