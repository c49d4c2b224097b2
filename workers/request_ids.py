"""Carry the request id from the API into Celery tasks and their log lines.

Publishing side (API process): before_task_publish copies the current id into the message
headers. Worker side: task_prerun sets the contextvar for the task's run, task_postrun restores
it. The embedded worker thread gets the id through a copied context instead (workers/queue.py);
its Task.apply publishes nothing, so task_prerun then finds no header and leaves the id alone.
Connected when workers.celery_app is imported, which both sides do.
"""

from __future__ import annotations

from contextvars import Token
from typing import Any

from celery.signals import before_task_publish, task_postrun, task_prerun

from core.request_context import TASK_HEADER, request_id

_tokens: dict[str, Token[str | None]] = {}


@before_task_publish.connect
def _add_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    rid = request_id.get()
    if rid and headers is not None:
        headers[TASK_HEADER] = rid


def _sent_request_id(task: Any) -> str | None:
    # Celery exposes custom message headers as attributes of task.request (protocol 2), some
    # versions also under task.request.headers.
    request = getattr(task, "request", None)
    value = getattr(request, TASK_HEADER, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(TASK_HEADER)
    return str(value) if value else None


@task_prerun.connect
def _set_request_id(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    rid = _sent_request_id(task)
    if rid and task_id:
        _tokens[task_id] = request_id.set(rid)


@task_postrun.connect
def _reset_request_id(task_id: str | None = None, **_: Any) -> None:
    token = _tokens.pop(task_id or "", None)
    if token is not None:
        request_id.reset(token)
