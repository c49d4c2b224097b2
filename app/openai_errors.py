"""Errors of the OpenAI-compatible surface (/openai/...) in OpenAI's shape.

OpenAI clients read `{"error": {"message", "type", "param", "code"}}` and pick their exception
class by the HTTP status, so every path under `/openai` answers in that shape, whichever layer
refuses the request (the auth middleware, the body limit, validation, a route). Every other path
keeps the native `{"error": {"code", "message"}}` (`error_content` chooses by path).

`code` is the native API's machine code (docs/api.md), except an unknown collection, which is
`model_not_found` as OpenAI names it (the model is the collection). A request the surface cannot
take answers 400, as OpenAI does, where the native API answers 422.
"""

from __future__ import annotations

from typing import Any

from core.errors import RagError

OPENAI_PREFIX = "/openai"

_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
}
# Native codes OpenAI knows under another name, and the request field each is about.
_CODES = {"collection_not_found": "model_not_found"}
_PARAMS = {
    "collection_not_found": "model",
    "adapter_not_found": "rag.adapter",
    "adapter_base_mismatch": "rag.adapter",
}


class RequestFieldError(RagError):
    """A request the OpenAI-compatible surface cannot take, naming the field (OpenAI's
    `param`): an unsupported parameter (`n` > 1, `tools`) or messages without a question."""

    def __init__(self, code: str, message: str, param: str) -> None:
        super().__init__(code, message)
        self.param = param


def is_openai_path(path: str) -> bool:
    return path == OPENAI_PREFIX or path.startswith(OPENAI_PREFIX + "/")


def openai_error(
    status: int, code: str, message: str, param: str | None = None
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of an error in OpenAI's shape; `status` is the native one."""
    if status == 422:
        status = 400
    if status >= 500:
        kind = "server_error"
    else:
        kind = _TYPES.get(status, "invalid_request_error")
    if code == "collection_not_found":
        message += "; each model is a collection: GET /openai/v1/models lists them"
    body = {
        "message": message,
        "type": kind,
        "param": param if param is not None else _PARAMS.get(code),
        "code": _CODES.get(code, code),
    }
    return status, {"error": body}


def error_content(
    path: str, status: int, code: str, message: str, param: str | None = None
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of an error answering `path`: OpenAI's shape under /openai, the
    native `{"error": {"code", "message"}}` everywhere else."""
    if is_openai_path(path):
        return openai_error(status, code, message, param)
    return status, {"error": {"code": code, "message": message}}
