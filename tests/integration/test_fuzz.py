"""Schemathesis fuzzes every operation of the app's own OpenAPI schema over real HTTP (uvicorn
in a thread, real Postgres, an admin key): no generated request may get a 5xx.

Bounded: EXAMPLES per operation (about a minute in all on two busy cores).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from app.main import create_app
from core import api_keys
from core.db import Database
from core.settings import RateLimitSettings
from retrieval.embedders import EmbedderPool
from tests.integration.fakes import SchemaFollowingGenerator
from tests.integration.isolated import ServerThread, embedded_pg_settings, own_database

EXAMPLES = 50


@pytest.fixture
def server(embedders: EmbedderPool, tmp_path: Path) -> Iterator[tuple[ServerThread, str]]:
    with own_database() as url:
        # No rate limit: hundreds of fuzzed calls a minute would otherwise end in 429s and
        # never reach the routes.
        unlimited = RateLimitSettings(admin_per_minute=0, query_per_minute=0)
        app_settings = embedded_pg_settings(url, tmp_path, rate_limit=unlimited)
        db = Database(app_settings)
        with db.session() as session:
            _, key = api_keys.create_api_key(session, "admin", "fuzz")
            seed(session)
        db.dispose()
        server = ServerThread(create_app(app_settings, embedders, SchemaFollowingGenerator()))
        try:
            yield server, key
        finally:
            server.close()


def seed(session: Session) -> None:
    """The collection that half the cases aim at (documents are uploaded once it serves)."""
    from core import repository

    repository.create_collection(session, "docs", "all-MiniLM-L6-v2")


def test_fuzzed_requests_never_get_a_5xx(server: tuple[ServerThread, str]) -> None:
    thread, key = server
    import httpx

    headers = {"Authorization": f"Bearer {key}"}
    upload = httpx.post(
        f"{thread.url}/admin/v1/collections/docs/documents",
        headers=headers,
        files=[("files", ("bios.txt", b"BIOS stands for Basic Input/Output System. It boots."))],
    )
    assert upload.status_code == 202, upload.text
    job_id = upload.json()["job_id"]
    deadline = time.monotonic() + 120
    while httpx.get(f"{thread.url}/admin/v1/jobs/{job_id}", headers=headers).json()[
        "status"
    ] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    raw = httpx.get(f"{thread.url}/openapi.json", headers=headers).json()
    schema = schemathesis.openapi.from_dict(raw)
    failures: list[str] = []
    statuses: list[int] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(), pin=st.booleans())
        def run(case: Any, pin: bool) -> None:
            if pin:
                # Half the cases aim at the seeded collection, so that fuzzed fields reach the
                # code behind the lookup (search, the reasoning steps) and not only a 404.
                if isinstance(case.body, dict) and "collection" in case.body:
                    case.body["collection"] = "docs"
                # Not the collection delete: it would take the seeded collection away from
                # every operation fuzzed after it.
                deletes_collection = case.method.upper() == "DELETE" and case.path.endswith(
                    "/collections/{name}"
                )
                if "name" in (case.path_parameters or {}) and not deletes_collection:
                    case.path_parameters["name"] = "docs"
            response = case.call(base_url=thread.url, headers=headers, timeout=60)
            statuses.append(response.status_code)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:200]}\n  {case.as_curl_command()}"
                )

        run()
    assert operations >= 12, "every operation of the schema was fuzzed"
    assert failures == [], "\n".join(failures[:10])
    assert 429 not in statuses and statuses.count(401) == 0, "every call was let through"
    assert sum(1 for s in statuses if s < 300) > 50, "many fuzzed calls succeeded, not only 4xx"
