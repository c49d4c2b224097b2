"""Refuse request bodies larger than `ingest.max_request_bytes` before reading them.

Per-file and per-request-count limits are checked while an upload is read, but the multipart
parser spools every part to disk first, so without this one request could write up to
max_file_bytes x max_files_per_request (50 GB by default) of temporary files. Checked on the
declared Content-Length, which every ordinary client sends for uploads; a chunked body without
one is still bounded file by file.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from app.openai_errors import error_content


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            services = getattr(scope["app"].state, "services", None)
            limit = services.settings.ingest.max_request_bytes if services is not None else 0
            declared = _content_length(scope)
            if limit and declared is not None and declared > limit:
                message = f"the request body is {declared} bytes; the limit is {limit}"
                status, content = error_content(scope["path"], 413, "file_too_large", message)
                body = json.dumps(content)
                await send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body.encode()})
                return
        await self.app(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
