"""One exception handler set: every error leaves as {"error": {"code", "message"}}, or in
OpenAI's shape under /openai (app/openai_errors.py)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.openai_errors import RequestFieldError, error_content
from core.errors import RagError

log = logging.getLogger(__name__)

_STARLETTE_CODES = {404: "route_not_found", 405: "method_not_allowed", 413: "file_too_large"}
_PARAMETER_KINDS = {"query": "query parameter", "path": "path parameter", "header": "header"}


def error_response(
    request: Request, status: int, code: str, message: str, param: str | None = None
) -> JSONResponse:
    """The error in the shape the request's path speaks (`param`: the field, OpenAI's shape)."""
    status, content = error_content(request.url.path, status, code, message, param)
    return JSONResponse(content, status_code=status)


def validation_param(error: Any) -> str | None:
    """The request field a validation error is about, dotted ("messages.0.content"); None for
    the body as a whole."""
    loc = [str(part) for part in error.get("loc", ())]
    if error.get("type") == "json_invalid" or len(loc) < 2:
        return None
    return ".".join(loc[1:])


def validation_problem(error: Any) -> str:
    """One validation error as a sentence: "question: must contain more than whitespace",
    "request body is not valid JSON (at character 62)", "unknown field 'foo'"."""
    loc = [str(part) for part in error.get("loc", ())]
    kind = error.get("type", "")
    message = str(error.get("msg", "invalid"))
    if kind == "json_invalid":
        at = f" (at character {loc[1]})" if len(loc) > 1 else ""
        reason = (error.get("ctx") or {}).get("error", "")
        detail = f": {reason}" if reason else ""
        return f"request body is not valid JSON{at}{detail}"
    where = loc[1:] if loc[:1] == ["body"] else loc
    if loc[:1] == ["body"] and not where:
        field = "request body"
    elif loc[:1] and loc[0] in _PARAMETER_KINDS:
        field = f"{_PARAMETER_KINDS[loc[0]]} {'.'.join(loc[1:])}"
    else:
        field = ".".join(where)
    if kind == "extra_forbidden":
        return f"unknown field {field!r}: this request does not take it"
    if kind == "missing":
        return f"{field}: required"
    message = message.removeprefix("Value error, ")
    return f"{field}: {message[:1].lower()}{message[1:]}"


def not_json(request: Request, errors: Sequence[Any]) -> str | None:
    """The problem, when a JSON route was sent another kind of body (a form, plain text): its
    body then reaches validation as bytes, which would read "input should be a valid
    dictionary"."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not media_type or media_type == "application/json" or media_type.endswith("+json"):
        return None
    if not any(tuple(e.get("loc", ())) == ("body",) and e.get("type") != "missing" for e in errors):
        return None
    return f"request body: send JSON with Content-Type: application/json, not {media_type}"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RagError)
    async def _rag_error(request: Request, exc: RagError) -> JSONResponse:
        param = exc.param if isinstance(exc, RequestFieldError) else None
        return error_response(request, exc.http_status, exc.code, exc.message, param)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        wrong_kind = not_json(request, exc.errors())
        if wrong_kind is not None:
            return error_response(request, 422, "validation_error", wrong_kind)
        errors = exc.errors()
        problems = "; ".join(dict.fromkeys(validation_problem(e) for e in errors))
        param = validation_param(errors[0]) if errors else None
        return error_response(
            request, 422, "validation_error", problems or "invalid request", param
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STARLETTE_CODES.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            # The router found no route: say so, so it never reads like a missing collection.
            message = f"no such route: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return error_response(request, exc.status_code, code, message)

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        log.warning("database unavailable: %s", exc.__class__.__name__)
        return error_response(
            request, 503, "database_unavailable", "the database is unavailable; retry later"
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(request, 500, "internal_error", "internal error; see the server log")
