"""How the API serves the web interface: open static files with a strict CSP, the caller's role,
and no way to reach a file outside app/static."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.ui import ASSETS
from app.main import create_app
from core import api_keys
from core.db import Database
from core.migrate import upgrade
from core.settings import Settings
from retrieval.embedders import EmbedderPool
from retrieval.parsing import SUPPORTED_MEDIA_TYPES
from tests.integration.fakes import SchemaFollowingGenerator


@pytest.fixture
def client(embedders: EmbedderPool, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(
        create_app(Settings(data_dir=tmp_path), embedders, SchemaFollowingGenerator())
    ) as client:
        yield client


def test_page_is_served_with_a_strict_content_security_policy(client: TestClient) -> None:
    root = client.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/ui/"
    page = client.get("/ui/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    # No inline script or style in the page: every script and stylesheet is a file of ours.
    html = page.text
    assert '<script type="module" src="main.js"></script>' in html
    assert "<style" not in html and " style=" not in html and "javascript:" not in html
    module = client.get("/ui/main.js")
    assert module.headers["content-type"].startswith("text/javascript")
    assert client.get("/ui/style.css").headers["content-type"].startswith("text/css")


def test_only_packaged_files_are_served(client: TestClient) -> None:
    assert {"index.html", "main.js", "api.js", "style.css"} <= set(ASSETS)
    for path in ("/ui/missing.js", "/ui/../main.py", "/ui/%2e%2e/api/ui.py", "/ui/static"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] in ("asset_not_found", "route_not_found")
    # No file reads innerHTML/outerHTML or document.write: text only ever goes in as text.
    for name, (content, _) in ASSETS.items():
        if name.endswith(".js"):
            source = content.decode()
            for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
                assert sink not in source, (name, sink)


def test_open_mode_reports_admin_without_keys(client: TestClient) -> None:
    assert client.get("/v1/me").json() == {"role": "admin", "keys_required": False, "key_id": None}


def test_with_keys_the_page_is_open_and_v1_me_reports_the_role(
    embedders: EmbedderPool, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path)
    upgrade(settings)
    db = Database(settings)
    with db.session() as session:
        query_row, query_key = api_keys.create_api_key(session, "query", "reader")
        _, admin_key = api_keys.create_api_key(session, "admin", "ops")
        query_id = query_row.id
    db.dispose()
    app = create_app(settings, embedders, SchemaFollowingGenerator())
    with TestClient(app) as client:
        assert client.get("/ui/").status_code == 200
        assert client.get("/ui/api.js").status_code == 200
        assert client.get("/v1/me").status_code == 401
        assert client.get("/v1/collections").status_code == 401
        me = client.get("/v1/me", headers={"Authorization": f"Bearer {query_key}"}).json()
        assert me == {"role": "query", "keys_required": True, "key_id": query_id}
        admin = client.get("/v1/me", headers={"Authorization": f"Bearer {admin_key}"}).json()
        assert admin["role"] == "admin" and admin["keys_required"] is True
        # The static files are open, the API under them is not.
        assert client.get("/uiadmin").status_code == 401


def test_file_types_are_the_parsers_and_collections_count_documents_by_status(
    client: TestClient,
) -> None:
    """What the page's first run reads: the accepted types (its drop zone lists them) and each
    collection's documents by status (its Ask tab says what is still being ingested)."""
    types = client.get("/v1/file-types").json()["file_types"]
    assert [t["extension"] for t in types] == list(SUPPORTED_MEDIA_TYPES)
    assert {"extension": "md", "media_type": "text/markdown"} in types

    assert client.post("/admin/v1/collections", json={"name": "first"}).status_code == 201
    fresh = client.get("/v1/collections/first").json()
    assert (fresh["documents"], fresh["documents_queued"], fresh["documents_failed"]) == (0, 0, 0)
    files = [("notes.md", b"# Notes\n\nThe port is 4711.\n"), ("bad.pdf", b"%PDF-1.4 junk")]
    response = client.post(
        "/admin/v1/collections/first/documents",
        files=[("files", (name, data)) for name, data in files],
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    deadline = time.monotonic() + 120
    while client.get(f"/admin/v1/jobs/{job_id}").json()["finished_at"] is None:
        assert time.monotonic() < deadline, "the ingest job did not finish"
        time.sleep(0.1)
    counts = client.get("/v1/collections").json()["collections"][0]
    assert counts["documents"] == 1 and counts["documents_failed"] == 1
    assert counts["documents_queued"] == counts["documents_processing"] == 0
