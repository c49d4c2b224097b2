"""ASGI middleware: a request id on every request, and latency by route template."""

from __future__ import annotations

import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.metrics import HTTP_REQUEST_SECONDS
from core.request_context import HEADER, accept_or_new, request_id


class RequestContextMiddleware:
    """Sets the request id (the client's X-Request-ID, or a new one) for logs and enqueued tasks,
    returns it in the X-Request-ID response header, and records the latency under the route's
    template (`/v1/collections/{name}`), so ids in paths do not explode the label set.

    Pure ASGI rather than BaseHTTPMiddleware: the latency of a streamed answer runs to its last
    event, and the contextvar is set in the task that runs the endpoint.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = HEADER.lower().encode()
        sent = next((v.decode("latin-1") for k, v in scope["headers"] if k == header), None)
        rid = accept_or_new(sent)
        token = request_id.set(rid)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # FastAPI stores the matched route in the scope; unmatched paths share one label.
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            HTTP_REQUEST_SECONDS.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - started
            )
            request_id.reset(token)
