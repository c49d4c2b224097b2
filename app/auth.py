"""Authentication, roles and rate limits for every HTTP request.

An ASGI middleware rather than per-router dependencies, so that every route — including ones
other routers add later, `/metrics`, `/docs` and `/openapi.json`, and paths that match no
route — is covered without anyone remembering to opt in. Only `/healthz` is open, because a
load balancer or orchestrator probes it without credentials and it reveals nothing, and the web
interface's static files (`/`, `/ui/...`), which hold no data: the page asks for a key and sends
it with every API call.

Rules (../shared/API.md, "Auth"):
- no key was ever created: every route is open (the local embedded default; `rag serve`
  refuses a non-loopback address in that state, see `bind_refusal`). Revoked keys count: revoking
  the last key leaves the service closed, not open;
- otherwise `Authorization: Bearer <key>` is required: missing or invalid → 401;
  `/admin/...` needs an admin key, a query key there → 403; admin keys may call everything;
- each key gets `rate_limit.<role>_per_minute` requests per minute → 429 with `Retry-After`.

Key lookups are cached in process for `auth.cache_ttl_s` seconds (default 5): a request then
costs no database round trip, and a revoked key stops working at most that long after
`rag keys revoke`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Literal

import anyio
from sqlalchemy.exc import DBAPIError
from starlette.types import ASGIApp, Receive, Scope, Send

from app.openai_errors import error_content
from app.rate_limit import RateLimiter, make_rate_limiter
from core import api_keys
from core.api_keys import Principal
from core.db import Database
from core.errors import RagError
from core.models import ApiKeyRole
from core.settings import Settings

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz"})
# The web interface's static files (app/api/ui.py) hold no data: the page loads without a key,
# asks for one, and sends it with every API call it makes.
UI_PATHS = frozenset({"/", "/ui"})
UI_PREFIX = "/ui/"
ADMIN_PREFIX = "/admin"
_CACHE_ENTRIES = 10_000


def is_open(path: str) -> bool:
    """Paths served to anyone, keys or not: the liveness probe and the web interface's files."""
    return path in OPEN_PATHS or path in UI_PATHS or path.startswith(UI_PREFIX)


def required_role(path: str) -> str:
    """Routes are grouped by prefix, so a router added under /admin is admin-only by default."""
    if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
        return ApiKeyRole.ADMIN
    return ApiKeyRole.QUERY


@dataclass(frozen=True)
class Verdict:
    """What the guard decided: a principal (None in open mode) or an error plus headers."""

    principal: Principal | None = None
    error: RagError | None = None
    retry_after_s: int = 0


class AuthGuard:
    """Checks keys (cached briefly) and rate limits; built once in the lifespan."""

    def __init__(self, db: Database, settings: Settings, limiter: RateLimiter) -> None:
        self._db = db
        self._ttl = settings.auth.cache_ttl_s
        self._limits = {
            ApiKeyRole.ADMIN: settings.rate_limit.admin_per_minute,
            ApiKeyRole.QUERY: settings.rate_limit.query_per_minute,
        }
        self.limiter = limiter
        self._lock = threading.Lock()
        self._keys_exist: tuple[float, bool] | None = None
        # sha256 of the presented header value -> (when looked up, principal or None).
        self._lookups: dict[str, tuple[float, Principal | None]] = {}

    @classmethod
    def start(cls, settings: Settings, db: Database) -> AuthGuard:
        guard = cls(db, settings, make_rate_limiter(settings.redis.url))
        try:
            if not guard.keys_exist():
                log.warning(
                    "no API keys exist: every route is open. Create one with "
                    "`rag keys create --role admin`; `rag serve` allows running without keys "
                    "only on 127.0.0.1 (or with RAG_AUTH__ALLOW_UNAUTHENTICATED=true)"
                )
        except DBAPIError:
            log.warning("cannot read API keys yet; the database is unavailable")
        return guard

    def close(self) -> None:
        self.limiter.close()

    def keys_exist(self, blocking: bool = True) -> bool | None:
        """Whether any key exists; None when that needs a database read and `blocking` is off."""
        now = time.monotonic()
        cached = self._keys_exist
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        if not blocking:
            return None
        with self._db.session() as session:
            exist = api_keys.key_count(session) > 0
        self._keys_exist = (now, exist)
        return exist

    def principal(self, token: str, blocking: bool = True) -> Principal | None | Literal[False]:
        """The key's principal, None for an invalid or revoked key; False when that needs a
        database read and `blocking` is off."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            cached = self._lookups.get(digest)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        if not blocking:
            return False
        with self._db.session() as session:
            principal = api_keys.authenticate(session, token)
        with self._lock:
            if len(self._lookups) >= _CACHE_ENTRIES:
                self._lookups.clear()  # bounded under a flood of invalid keys
            self._lookups[digest] = (now, principal)
        return principal

    def check(self, path: str, authorization: str | None) -> Verdict:
        """Decide one request (blocking: may query the database and Redis)."""
        verdict = self._decide(path, authorization, blocking=True)
        # A blocking decision always ends in a verdict; None would be a bug: fail closed.
        return verdict or Verdict(error=RagError("unauthorized", "the API key was not checked"))

    def check_in_memory(self, path: str, authorization: str | None) -> Verdict | None:
        """The verdict when this process's caches decide it (an open path, open mode, or a key
        looked up within the cache TTL under an in-process or no rate limit), so the request
        needs no trip to a thread; None when the database or Redis must be asked."""
        return self._decide(path, authorization, blocking=False)

    def _decide(self, path: str, authorization: str | None, blocking: bool) -> Verdict | None:
        if is_open(path):
            return Verdict()
        exist = self.keys_exist(blocking)
        if exist is None:
            return None
        if not exist:
            return Verdict()
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Verdict(
                error=RagError(
                    "unauthorized", "an API key is required: `Authorization: Bearer <key>`"
                )
            )
        principal = self.principal(token.strip(), blocking)
        if principal is False:
            return None
        if principal is None:
            return Verdict(error=RagError("unauthorized", "the API key is invalid or revoked"))
        role = required_role(path)
        if not principal.may(role):
            return Verdict(
                error=RagError(
                    "forbidden",
                    f"this route needs the {role} role; this key has the {principal.role} role",
                )
            )
        limit = self._limits.get(principal.role, 0)
        if limit > 0:
            if not blocking and not self.limiter.in_process:
                return None
            decision = self.limiter.hit(f"key:{principal.key_id}", limit)
            if not decision.allowed:
                return Verdict(
                    error=RagError(
                        "rate_limited",
                        f"more than {limit} requests per minute for this key; "
                        f"retry in {decision.retry_after_s}s",
                    ),
                    retry_after_s=decision.retry_after_s,
                )
        return Verdict(principal=principal)


class AuthMiddleware:
    """Runs `AuthGuard.check` before any route; renders refusals as the one error shape."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        guard: AuthGuard | None = getattr(scope["app"].state, "auth", None)
        if guard is None:
            # Fail closed: the lifespan has not built the guard (still starting, or failed).
            verdict = Verdict(error=RagError("database_unavailable", "the service is starting"))
        else:
            header = _header(scope, b"authorization")
            try:
                # Most requests are decided from the caches; only the rest pay a thread hop.
                cached = guard.check_in_memory(scope["path"], header)
                verdict = (
                    cached
                    if cached is not None
                    else await anyio.to_thread.run_sync(guard.check, scope["path"], header)
                )
            except DBAPIError as exc:
                log.warning("cannot check the API key: %s", exc.__class__.__name__)
                verdict = Verdict(
                    error=RagError(
                        "database_unavailable", "the database is unavailable; retry later"
                    )
                )
        if verdict.error is None:
            # Routes read who is calling from request.state (GET /v1/me); None in open mode.
            scope.setdefault("state", {})["principal"] = verdict.principal
            await self.app(scope, receive, send)
            return
        await _refuse(send, scope["path"], verdict.error, verdict.retry_after_s)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def _refuse(send: Send, path: str, error: RagError, retry_after_s: int) -> None:
    # OpenAI's error shape under /openai, the native one elsewhere.
    status, content = error_content(path, error.http_status, error.code, error.message)
    body = json.dumps(content).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if error.code == "unauthorized":
        headers.append((b"www-authenticate", b'Bearer realm="rag"'))
    if retry_after_s:
        headers.append((b"retry-after", str(retry_after_s).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_refusal(host: str, keys_exist: bool, settings: Settings) -> str | None:
    """Why `rag serve` must not start on `host`, or None when it may."""
    if keys_exist or is_loopback(host) or settings.auth.allow_unauthenticated:
        return None
    return (
        f"refusing to serve on {host} without API keys: anyone who can reach it could upload, "
        "delete and query. Create a key first (`rag keys create --role admin`), bind to "
        "127.0.0.1, or set RAG_AUTH__ALLOW_UNAUTHENTICATED=true if something in front of the "
        "service authenticates."
    )
