"""The OpenAPI document describes the API honestly: every operation has examples for what it
takes and documents the real error body for the statuses it answers; /docs and /redoc load
their assets from the service itself (tests/integration/test_new_user.py)."""

from __future__ import annotations

from typing import Any

import pytest

from app.main import create_app
from core.settings import Settings


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # Building the document needs no lifespan (no database, no model).
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("data")))
    return app.openapi()


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def test_every_request_body_and_parameter_has_an_example(schema: dict[str, Any]) -> None:
    missing = []
    for path, method, operation in operations(schema):
        for media, content in operation.get("requestBody", {}).get("content", {}).items():
            body = resolve(schema, content.get("schema", {}))
            if not (content.get("example") or content.get("examples") or body.get("examples")):
                missing.append(f"{method.upper()} {path} body ({media})")
        for parameter in operation.get("parameters", []):
            examples = parameter.get("examples") or parameter.get("schema", {}).get("examples")
            has = parameter.get("example") is not None or examples is not None
            if not has or not parameter.get("description"):
                missing.append(f"{method.upper()} {path} parameter {parameter['name']}")
    assert missing == []


def test_every_operation_documents_the_error_body(schema: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    problems = []
    for path, method, operation in operations(schema):
        errors = {int(s): r for s, r in operation["responses"].items() if int(s) >= 400}
        if path != "/healthz" and not {401, 429} <= set(errors):
            problems.append(f"{method.upper()} {path}: no 401/429")
        if path.startswith("/admin/") and 403 not in errors:
            problems.append(f"{method.upper()} {path}: no 403")
        if "{" in path and 404 not in errors:
            problems.append(f"{method.upper()} {path}: no 404")
        # The OpenAI-compatible surface answers invalid requests with 400, in OpenAI's shape.
        openai = path.startswith("/openai/")
        invalid = 400 if openai else 422
        if (operation.get("parameters") or "requestBody" in operation) and invalid not in errors:
            problems.append(f"{method.upper()} {path}: no {invalid}")
        if openai and 422 in errors:
            problems.append(f"{method.upper()} {path}: 422")
        body = "/OpenAIErrorResponse" if openai else "/ErrorResponse"
        for status, response in errors.items():
            ref = response["content"]["application/json"]["schema"]["$ref"]
            if not ref.endswith(body):
                problems.append(f"{method.upper()} {path} {status}: {ref}")
    assert problems == []
    error = schema["components"]["schemas"]["ErrorResponse"]
    assert resolve(schema, error["properties"]["error"])["required"] == ["code", "message"]
    openai_error = schema["components"]["schemas"]["OpenAIErrorResponse"]
    assert resolve(schema, openai_error["properties"]["error"])["required"] == [
        "message",
        "type",
        "param",
        "code",
    ]


def test_all_documented_statuses_appear_somewhere(schema: dict[str, Any]) -> None:
    seen = {int(s) for _, _, op in operations(schema) for s in op["responses"] if int(s) >= 400}
    assert {400, 401, 403, 404, 409, 413, 415, 422, 429, 502, 503} <= seen


def test_every_field_has_a_description(schema: dict[str, Any]) -> None:
    undocumented = [
        f"{name}.{field}"
        for name, model in schema["components"]["schemas"].items()
        if not name.startswith("Body_")
        for field, spec in model.get("properties", {}).items()
        if not spec.get("description")
    ]
    assert undocumented == []


def test_bearer_scheme_and_sse_events_are_described(schema: dict[str, Any]) -> None:
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    query = schema["paths"]["/v1/query"]["post"]
    assert query["security"] == [{"bearer": []}]
    assert schema["paths"]["/healthz"]["get"]["security"] == []
    stream = query["responses"]["200"]["content"]["text/event-stream"]
    for event in (
        "retrieval",
        "relevance",
        "evidence",
        "answer_delta",
        "answer_reset",
        "analysis",
        "answer",
        "done",
        "error",
    ):
        assert f"`{event}`" in stream["schema"]["description"]
    assert stream["example"].startswith("event: retrieval")


def test_the_openai_compatible_routes_and_their_stream_are_described(
    schema: dict[str, Any],
) -> None:
    paths = schema["paths"]
    assert {"/openai/v1/models", "/openai/v1/models/{model}", "/openai/v1/chat/completions"} <= set(
        paths
    )
    chat = paths["/openai/v1/chat/completions"]["post"]
    assert chat["security"] == [{"bearer": []}]
    for status in ("400", "401", "404", "429", "502", "503"):
        assert status in chat["responses"], status
    body = resolve(schema, chat["requestBody"]["content"]["application/json"]["schema"])
    assert {"model", "messages", "stream", "rag", "n", "tools"} <= set(body["properties"])
    completion = resolve(schema, chat["responses"]["200"]["content"]["application/json"]["schema"])
    assert resolve(schema, completion["properties"]["rag"])["title"] == "QueryResponse"
    stream = chat["responses"]["200"]["content"]["text/event-stream"]
    assert "[DONE]" in stream["schema"]["description"]
    assert stream["example"].endswith("data: [DONE]\n\n")
