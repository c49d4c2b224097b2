"""Metrics, request ids and JSON logs, without I/O."""

from __future__ import annotations

import json
import logging
import sys
from types import SimpleNamespace
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from app.api.metrics import ServiceCollector
from app.middleware import RequestContextMiddleware
from core.log_config import JsonFormatter, RequestIdFilter, logging_config
from core.metrics import render
from core.request_context import TASK_HEADER, accept_or_new, request_id
from core.settings import LogSettings
from generation.query_service import record_metrics
from generation.reasoning.results import Usage
from workers import request_ids


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def small_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(RequestContextMiddleware)

    @app.get("/items/{item_id}")
    def item(item_id: str) -> dict[str, str | None]:
        # Sync routes run in a worker thread: the id must reach it.
        return {"item": item_id, "request_id": request_id.get()}

    return app


def test_response_carries_the_clients_request_id() -> None:
    with TestClient(small_app()) as client:
        response = client.get("/items/1", headers={"X-Request-ID": "req-123"})
    assert response.headers["X-Request-ID"] == "req-123"
    assert response.json()["request_id"] == "req-123"


def test_a_request_without_an_id_gets_a_new_one_per_request() -> None:
    with TestClient(small_app()) as client:
        first = client.get("/items/1").headers["X-Request-ID"]
        second = client.get("/items/1").headers["X-Request-ID"]
    assert first and second and first != second


def test_a_forged_request_id_is_replaced() -> None:
    assert accept_or_new('x"\n{"level": "ERROR"}') != 'x"\n{"level": "ERROR"}'
    assert accept_or_new("a" * 200) != "a" * 200
    assert accept_or_new("3f2a-9c:node/1") == "3f2a-9c:node/1"


def test_latency_is_recorded_under_the_route_template_not_the_path() -> None:
    name = "rag_http_request_duration_seconds_count"
    template = {"method": "GET", "route": "/items/{item_id}", "status": "200"}
    before = sample(name, **template)
    with TestClient(small_app()) as client:
        client.get("/items/41")
        client.get("/items/42")
        client.get("/nowhere")
    assert sample(name, **template) == before + 2
    assert sample(name, method="GET", route="/items/42", status="200") == 0
    assert sample(name, method="GET", route="unmatched", status="404") >= 1


def test_query_metrics_record_each_step_and_the_tokens() -> None:
    before_steps = {
        s: sample("rag_query_step_duration_seconds_count", step=s)
        for s in ("retrieve", "relevance", "evidence", "analysis")
    }
    before_prompt = sample("rag_generator_tokens_total", kind="prompt")
    before_completion = sample("rag_generator_tokens_total", kind="completion")
    record_metrics(
        {"retrieve": 12.5, "relevance": 800, "evidence": 300, "analysis": 400},
        Usage(prompt_tokens=1200, completion_tokens=90, cached_prompt_tokens=0),
    )
    for step, count in before_steps.items():
        assert sample("rag_query_step_duration_seconds_count", step=step) == count + 1
    assert sample("rag_generator_tokens_total", kind="prompt") == before_prompt + 1200
    assert sample("rag_generator_tokens_total", kind="completion") == before_completion + 90


def test_metrics_text_has_queue_depth_and_index_sizes() -> None:
    services: Any = SimpleNamespace(
        queue=SimpleNamespace(depth=lambda: 7),
        indexes=SimpleNamespace(loaded=lambda: {("c1", "all-MiniLM-L6-v2"): 1234}),
    )
    text = render(ServiceCollector(services)).decode()
    assert "rag_queue_depth 7.0" in text
    assert 'rag_index_vectors{collection_id="c1",embedder="all-MiniLM-L6-v2"} 1234.0' in text
    assert "# TYPE rag_http_request_duration_seconds histogram" in text


def test_an_unreadable_queue_depth_is_left_out_rather_than_zero() -> None:
    services: Any = SimpleNamespace(
        queue=SimpleNamespace(depth=lambda: None), indexes=SimpleNamespace(loaded=dict)
    )
    text = render(ServiceCollector(services)).decode()
    assert "# TYPE rag_queue_depth gauge" in text
    assert not [line for line in text.splitlines() if line.startswith("rag_queue_depth")]


def make_record(message: str, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("rag.test", logging.INFO, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_log_line_carries_the_request_id_and_extras() -> None:
    token = request_id.set("req-9")
    try:
        record = make_record("ingested %s", document_id="d1")
        record.args = ("d1",)
        RequestIdFilter().filter(record)
        line = JsonFormatter().format(record)
    finally:
        request_id.reset(token)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "ingested d1"
    assert entry["request_id"] == "req-9"
    assert entry["document_id"] == "d1"
    assert entry["level"] == "INFO" and entry["logger"] == "rag.test"


def test_json_log_line_keeps_the_exception_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = make_record("failed")
        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in entry["exception"]
    assert "request_id" not in entry


def test_uvicorn_and_celery_logs_go_through_the_json_handler() -> None:
    config = logging_config(LogSettings(format="json", level="debug"))
    assert config["root"]["level"] == "DEBUG"
    assert config["formatters"]["default"]["()"].endswith("JsonFormatter")
    for name in ("uvicorn.access", "uvicorn.error", "celery"):
        assert config["loggers"][name] == {"handlers": [], "propagate": True}


def test_request_id_travels_in_task_headers_and_back_into_the_worker() -> None:
    headers: dict[str, Any] = {}
    token = request_id.set("req-77")
    try:
        request_ids._add_request_id(headers=headers)
    finally:
        request_id.reset(token)
    assert headers[TASK_HEADER] == "req-77"

    # Worker side: Celery exposes the header on task.request.
    task = SimpleNamespace(request=SimpleNamespace(**headers))
    request_ids._set_request_id(task_id="t1", task=task)
    assert request_id.get() == "req-77"
    request_ids._reset_request_id(task_id="t1")
    assert request_id.get() is None


def test_a_task_without_the_header_keeps_the_callers_id() -> None:
    """The embedded worker thread runs Task.apply (no message): its copied context stays."""
    token = request_id.set("req-embedded")
    try:
        task = SimpleNamespace(request=SimpleNamespace(headers=None))
        request_ids._set_request_id(task_id="t2", task=task)
        assert request_id.get() == "req-embedded"
        request_ids._reset_request_id(task_id="t2")
        assert request_id.get() == "req-embedded"
    finally:
        request_id.reset(token)
