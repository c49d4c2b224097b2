"""The id of the request being served: on every log line, and carried into the tasks it enqueues.

The API sets it per request (from the client's X-Request-ID or a new one); Celery signal handlers
(workers/request_ids.py) put it into each published task's headers and set it again in the worker
while that task runs, so one id follows an upload from the HTTP request to the worker's log lines.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

HEADER = "X-Request-ID"
# The Celery message header that carries it.
TASK_HEADER = "rag_request_id"

request_id: ContextVar[str | None] = ContextVar("rag_request_id", default=None)

# A client-chosen id goes into logs verbatim, so only plain tokens are accepted (no newlines or
# quotes to forge log lines); anything else is replaced by a fresh id.
_ACCEPTED = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


def accept_or_new(candidate: str | None) -> str:
    """The client's id when it is a plain token of at most 128 characters, else a new one."""
    if candidate and _ACCEPTED.fullmatch(candidate):
        return candidate
    return uuid.uuid4().hex
