"""API keys, roles and rate limits against real Postgres and Redis, keys made by the real CLI.

Every test here uses a database of its own: once a key exists every route of that database's
API needs one, which would break the other tests sharing the session's database.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session
from starlette.routing import Route

from app.auth import AuthGuard, is_open
from app.rate_limit import RedisRateLimiter
from core import api_keys
from core.api_keys import Principal
from core.settings import AuthSettings, RateLimitSettings, RedisSettings, Settings
from tests.integration.isolated import PrivateRedis, embedded_pg_settings, own_database
from tests.integration.services import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def db_url() -> Iterator[str]:
    with own_database() as url:
        yield url


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return embedded_pg_settings(db_url, tmp_path, auth=AuthSettings(cache_ttl_s=1.0))


def rag(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `rag` command line against the test's database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        RAG_DATABASE__URL=settings.database.url,
        RAG_DATABASE__AUTO_MIGRATE="false",
        RAG_DATA_DIR=str(settings.data_dir),
    )
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def create_key(settings: Settings, role: str, name: str = "") -> str:
    done = rag(settings, "keys", "create", "--role", role, "--name", name or role)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert re.fullmatch(r"rag_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", key), done.stdout
    return key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def every_route(routes: list[Any]) -> Iterator[tuple[str, set[str]]]:
    """(path, methods) of every route, looking inside included routers (FastAPI ≥ 0.16x keeps
    them as router objects in `app.routes` instead of copying their routes)."""
    for route in routes:
        if isinstance(route, Route):
            yield route.path, set(route.methods or {"GET"})
        elif hasattr(route, "effective_route_contexts"):
            for context in route.effective_route_contexts():
                methods = getattr(context.original_route, "methods", None) or {"GET"}
                yield context.path, set(methods)
        else:
            raise AssertionError(f"unknown route type {type(route)}: extend the walk")


def concrete(path: str) -> str:
    """A route path with each {parameter} filled in."""
    return re.sub(r"\{[^}]+\}", "x", path)


def test_cli_keys_are_stored_hashed_and_revocation_takes_effect_quickly(
    settings: Settings, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(settings)
    # No key exists yet: the (loopback-only) open mode.
    assert client.get("/v1/collections").status_code == 200

    key = create_key(settings, "query", "reader")
    key_id, secret = key.split("_")[1], key.split("_", 2)[2]
    listing = rag(settings, "keys", "list")
    assert listing.returncode == 0 and key_id in listing.stdout and "query" in listing.stdout
    assert secret not in listing.stdout

    # Only a SHA-256 of the secret is stored; the key appears nowhere in the table.
    engine = create_engine(settings.database.url)
    with engine.connect() as conn:
        rows = [tuple(map(str, r)) for r in conn.execute(text("SELECT * FROM api_keys"))]
    engine.dispose()
    assert len(rows) == 1
    assert hashlib.sha256(secret.encode()).hexdigest() in rows[0]
    assert not any(secret in value or key in value for value in rows[0])

    # The "keys exist" answer is cached for cache_ttl_s (1s here), then the API closes.
    time.sleep(1.2)
    assert client.get("/v1/collections").status_code == 401
    assert client.get("/v1/collections", headers=bearer(key)).status_code == 200

    revoked = rag(settings, "keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    deadline = time.monotonic() + 5
    while client.get("/v1/collections", headers=bearer(key)).status_code == 200:
        assert time.monotonic() < deadline, "a revoked key still works after 5s"
        time.sleep(0.2)
    response = client.get("/v1/collections", headers=bearer(key))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    # Revoking the last key leaves the service closed, not open to everyone.
    assert client.get("/v1/collections").status_code == 401
    assert "revoked" in rag(settings, "keys", "list").stdout
    assert rag(settings, "keys", "revoke", "000000000000").returncode == 1


def test_every_route_but_healthz_needs_a_key_and_admin_routes_need_admin(
    settings: Settings, make_client: Callable[..., TestClient]
) -> None:
    query_key = create_key(settings, "query")
    admin_key = create_key(settings, "admin")
    client = make_client(settings)
    app = client.app

    checked = 0
    walked = list(every_route(app.routes))  # type: ignore[attr-defined]
    assert {"/healthz", "/openapi.json", "/docs", "/admin/v1/collections", "/v1/me"} <= {
        p for p, _ in walked
    }
    for route_path, methods in walked:
        path = concrete(route_path)
        for method in sorted(methods - {"HEAD"}):
            if route_path == "/healthz":
                assert client.request(method, path).status_code == 200
                continue
            if is_open(path):
                # The web interface's static files: the page loads, then asks for a key.
                assert client.request(method, path).status_code in (200, 404), path
                continue
            for headers in ({}, bearer("rag_000000000000_" + "A" * 43), {"Authorization": "x"}):
                response = client.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.json()["error"]["code"] == "unauthorized"
                assert response.headers["www-authenticate"].startswith("Bearer")
            as_query = client.request(method, path, headers=bearer(query_key))
            as_admin = client.request(method, path, headers=bearer(admin_key))
            if route_path.startswith("/admin/"):
                assert as_query.status_code == 403, (method, path, as_query.text)
                assert as_query.json()["error"]["code"] == "forbidden"
            else:
                assert as_query.status_code not in (401, 403), (method, path, as_query.text)
            assert as_admin.status_code not in (401, 403), (method, path, as_admin.text)
            checked += 1
    # The walk covered the API, the docs and the schema, not an empty list.
    assert checked >= 15
    # A path that matches no route is refused before routing, too.
    assert client.get("/no/such/path").status_code == 401

    # What the keys can actually do: admin creates, query reads and searches.
    created = client.post(
        "/admin/v1/collections", json={"name": "auth-docs"}, headers=bearer(admin_key)
    )
    assert created.status_code == 201, created.text
    listed = client.get("/v1/collections", headers=bearer(query_key)).json()
    assert [c["name"] for c in listed["collections"]] == ["auth-docs"]
    found = client.post(
        "/v1/search", json={"collection": "auth-docs", "query": "x"}, headers=bearer(query_key)
    )
    assert found.status_code == 200 and found.json()["hits"] == []


def test_rate_limit_is_shared_by_replicas_and_fails_open_without_redis(
    settings: Settings, make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    query_key = create_key(settings, "query")
    admin_key = create_key(settings, "admin")
    redis_server = PrivateRedis(tmp_path)
    try:
        limited = settings.model_copy(
            update={
                "redis": RedisSettings(url=redis_server.url()),
                "rate_limit": RateLimitSettings(query_per_minute=3, admin_per_minute=100),
            }
        )
        first = make_client(limited)
        second = make_client(limited.model_copy(update={"data_dir": tmp_path / "second"}))
        statuses = [
            first.get("/v1/collections", headers=bearer(query_key)).status_code,
            second.get("/v1/collections", headers=bearer(query_key)).status_code,
            first.get("/v1/collections", headers=bearer(query_key)).status_code,
        ]
        assert statuses == [200, 200, 200]
        refused = second.get("/v1/collections", headers=bearer(query_key))
        assert refused.status_code == 429, "the count is shared through Redis"
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        # Another key has its own budget.
        assert first.get("/v1/collections", headers=bearer(admin_key)).status_code == 200

        redis_server.kill()
        # Fail open: the limiter's store is down, requests still go through and are counted.
        assert first.get("/v1/collections", headers=bearer(query_key)).status_code == 200
        guard: AuthGuard = first.app.state.auth  # type: ignore[attr-defined]
        assert isinstance(guard.limiter, RedisRateLimiter)
        assert guard.limiter.failed_open >= 1
    finally:
        redis_server.kill()

    # Without Redis (the embedded default) the limit holds in process.
    local = make_client(
        settings.model_copy(
            update={
                "data_dir": tmp_path / "local",
                "rate_limit": RateLimitSettings(query_per_minute=2),
            }
        )
    )
    codes = [local.get("/v1/collections", headers=bearer(query_key)).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_auth_checks_use_the_cache_not_the_database_per_request(
    settings: Settings, make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = create_key(settings, "query")
    client = make_client(settings.model_copy(update={"auth": AuthSettings(cache_ttl_s=60)}))
    assert client.get("/v1/collections", headers=bearer(key)).status_code == 200
    lookups: list[str] = []
    real = api_keys.authenticate

    def counting(session: Session, token: str) -> Principal | None:
        lookups.append(token)
        return real(session, token)

    monkeypatch.setattr(api_keys, "authenticate", counting)
    for _ in range(20):
        assert client.get("/v1/collections", headers=bearer(key)).status_code == 200
    assert lookups == [], "the key was looked up once, then served from the cache"
    # An unknown key is looked up (once) and refused.
    wrong = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert client.get("/v1/collections", headers=bearer(wrong)).status_code == 401
    assert len(lookups) == 1


def test_serve_refuses_a_public_address_without_keys(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)  # the embedded default: SQLite, no keys
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env["RAG_DATA_DIR"] = str(settings.data_dir)
    argv = [sys.executable, "-m", "app.cli", "serve", "--host", "0.0.0.0"]  # noqa: S104
    process = subprocess.Popen(
        [*argv, "--port", str(free_port())],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, stderr = process.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail("`rag serve --host 0.0.0.0` started without any API key")
    assert process.returncode == 2
    assert "refusing to serve on 0.0.0.0 without API keys" in stderr
    assert "rag keys create" in stderr


def test_cached_decisions_are_made_without_a_thread(
    settings: Settings, make_client: Callable[..., TestClient]
) -> None:
    """What the caches decide is answered on the event loop (check_in_memory); the rest goes to
    the blocking check. Both must agree."""
    key = create_key(settings, "query")
    client = make_client(settings.model_copy(update={"auth": AuthSettings(cache_ttl_s=60)}))
    guard: AuthGuard = client.app.state.auth  # type: ignore[attr-defined]
    assert guard.check_in_memory("/healthz", None) is not None, "open paths need nothing"
    assert client.get("/v1/collections", headers=bearer(key)).status_code == 200
    cached = guard.check_in_memory("/v1/collections", f"Bearer {key}")
    assert cached is not None and cached.error is None and cached.principal is not None
    assert cached == guard.check("/v1/collections", f"Bearer {key}")
    refused = guard.check_in_memory("/admin/v1/jobs", f"Bearer {key}")
    assert refused is not None and refused.error is not None
    assert refused.error.code == "forbidden"
    missing = guard.check_in_memory("/v1/collections", None)
    assert missing is not None and missing.error is not None
    assert missing.error.code == "unauthorized" == guard.check("/v1/collections", None).error.code
    unknown = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert guard.check_in_memory("/v1/collections", f"Bearer {unknown}") is None, "not looked up"
    assert client.get("/v1/collections", headers=bearer(unknown)).status_code == 401
    looked_up = guard.check_in_memory("/v1/collections", f"Bearer {unknown}")
    assert looked_up is not None and looked_up.error is not None
    assert looked_up.error.code == "unauthorized"
