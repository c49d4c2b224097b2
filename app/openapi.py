"""The OpenAPI document and the pages that show it (/docs, /redoc), served without a CDN.

FastAPI's defaults describe errors as `HTTPValidationError`, load Swagger UI and ReDoc from a
CDN (blank pages offline) and know nothing of the bearer keys. Here the document is finished
once, after the routes are built: every operation documents the one error body
(`{"error": {"code", "message"}}`; OpenAI's shape under /openai) for the statuses it can
answer, the bearer scheme gives /docs its Authorize button, and the viewers' scripts come
from the `drf-spectacular-sidecar` wheel (plain static builds of Swagger UI and ReDoc; its
Django app is never imported).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse

from app.openai_errors import is_openai_path
from app.openai_schemas import OpenAIErrorResponse
from app.schemas import ErrorResponse
from core.errors import RagError

ASSETS_PATH = "/docs/assets"
_STATUS_TEXT = {
    400: "Bad request.",
    401: "No API key, or an unknown or revoked one.",
    403: "The key lacks the role this route needs (admin).",
    404: "The collection, document or job does not exist.",
    409: "Conflict: the name is taken, a migration is running, or the adapter is for another "
    "base model.",
    413: "Upload too large (a file, or too many files in one request).",
    415: "No file in the upload has a supported type.",
    422: "Validation failed: the message names each field and what is wrong with it.",
    429: "Rate limited; retry after the Retry-After header's seconds.",
    502: "The generator's reply broke the step's schema even after a repair attempt.",
    503: "A dependency (database, broker, index, generator) is unavailable; retry later.",
}
# The OpenAI-compatible surface (/openai/...) says some of it in OpenAI's terms.
_OPENAI_STATUS_TEXT = {
    400: "Invalid request, or a field the service cannot honour (n > 1, tools, functions, a "
    "JSON response_format): OpenAI's invalid_request_error.",
    404: "No such model: the collection does not exist (`model_not_found`).",
}
# Path parameters that appear across routes, described once.
_PARAMETERS = {
    "name": ("Collection name.", "docs"),
    "document_id": ("Document id (from an upload or the document list).", "9a8b7c6d5e4f4031"),
    "job_id": ("Job id (from an upload or a migration).", "4f1c2a9e0b7d4c3e"),
    "embedder": ("Embedder id (GET /v1/embedders).", "all-MiniLM-L6-v2"),
}
# Files the viewers load, from the sidecar wheel's static folder (an allow-list: never a path
# from the request).
_ASSETS = {
    "swagger-ui-bundle.js": "swagger-ui-dist/swagger-ui-bundle.js",
    "swagger-ui.css": "swagger-ui-dist/swagger-ui.css",
    "favicon-32x32.png": "swagger-ui-dist/favicon-32x32.png",
    "redoc.standalone.js": "redoc/bundles/redoc.standalone.js",
}
_MULTIPART_EXAMPLE = {"files": ["guide.md", "report.docx"]}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the error body for each of `statuses`."""
    return {s: {"model": ErrorResponse, "description": _STATUS_TEXT[s]} for s in statuses}


def openai_error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route under /openai: OpenAI's error body for `statuses` and 401 (so
    the schema always holds that body)."""
    return {
        s: {"model": OpenAIErrorResponse, "description": _status_text("/openai", s)}
        for s in sorted({401, *statuses})
    }


def _status_text(path: str, status: int) -> str:
    if is_openai_path(path) and status in _OPENAI_STATUS_TEXT:
        return _OPENAI_STATUS_TEXT[status]
    return _STATUS_TEXT[status]


def assets_dir() -> Path | None:
    """The sidecar wheel's static folder, or None when it is not installed."""
    spec = importlib.util.find_spec("drf_spectacular_sidecar")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "static" / "drf_spectacular_sidecar"
    return folder if folder.is_dir() else None


def install_docs(app: FastAPI) -> None:
    """/docs (Swagger UI), /redoc and their assets, all local; the finished OpenAPI document."""
    title = app.title
    folder = assets_dir()

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{title} — API",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{title} — API",
            redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
            with_google_fonts=False,
        )

    @app.get(ASSETS_PATH + "/{filename}", include_in_schema=False)
    def asset(filename: str) -> FileResponse:
        relative = _ASSETS.get(filename)
        if relative is None or folder is None:
            raise RagError("not_found", f"no documentation asset {filename!r}")
        return FileResponse(folder / relative, headers={"Cache-Control": "max-age=86400"})

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = finish(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def finish(schema: dict[str, Any]) -> dict[str, Any]:
    """Bearer security, the error body on every operation, parameter descriptions, examples
    for multipart bodies; FastAPI's validation-error schemas removed."""
    components = schema.setdefault("components", {})
    components["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`rag keys create`). Not needed while no key exists.",
        }
    }
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            _finish_operation(path, method, operation)
    return schema


def _finish_operation(path: str, method: str, operation: dict[str, Any]) -> None:
    if path == "/healthz":
        operation["security"] = []
    else:
        operation["security"] = [{"bearer": []}]
    statuses = _statuses(path, method, operation)
    responses = operation.setdefault("responses", {})
    body = "ErrorResponse"
    if is_openai_path(path):
        body = "OpenAIErrorResponse"
        responses.pop("422", None)  # FastAPI's validation error: these routes answer 400
    for status in statuses:
        responses[str(status)] = {
            "description": _status_text(path, status),
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
        }
    for parameter in operation.get("parameters", []):
        known = _PARAMETERS.get(parameter.get("name", ""))
        if known and parameter.get("in") == "path":
            parameter.setdefault("description", known[0])
            parameter.setdefault("example", known[1])
    content = operation.get("requestBody", {}).get("content", {})
    if "multipart/form-data" in content:
        content["multipart/form-data"].setdefault("example", _MULTIPART_EXAMPLE)


def _statuses(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    """The error statuses an operation can answer, beyond those its route declares."""
    if path == "/healthz":
        return []
    statuses = {401, 429}
    if path != "/metrics":
        statuses.add(503)  # every other route reads the database
    if path.startswith("/admin/"):
        statuses.add(403)
    if "{" in path:
        statuses.add(404)
    if operation.get("parameters") or "requestBody" in operation:
        statuses.add(422)
    if method in ("post", "put") and "requestBody" in operation:
        statuses.add(400)
    declared = {int(s) for s in operation.get("responses", {}) if s.isdigit() and int(s) >= 400}
    statuses |= declared
    if is_openai_path(path) and 422 in statuses:
        # OpenAI answers an invalid request with 400; so does the surface (app/openai_errors.py).
        statuses = (statuses - {422}) | {400}
    return sorted(statuses)
