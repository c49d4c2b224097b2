"""Small things a new user runs into: HEAD on the page, one length cap for questions and
searches, a form-encoded body told to send JSON, a question asked again in other words of case
or punctuation served from the cache, `rag ask --mode`, `rag ingest` of a missing folder.

The embedded default with the FAKE SchemaFollowingGenerator (tests/integration/fakes.py): what
is under test is the HTTP and command-line surface, not the model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.schemas import QUERY_MAX_CHARS
from core.settings import Settings
from retrieval.embedders import EmbedderPool
from tests.integration.conftest import run, upload, wait_job
from tests.integration.fakes import SchemaFollowingGenerator
from tests.integration.services import free_port

DOCUMENT = b"Zanzibar exported copra, cloves and ivory in the nineteenth century."


@pytest.fixture
def client(embedders: EmbedderPool, tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(Settings(data_dir=tmp_path), embedders, SchemaFollowingGenerator())
    with TestClient(app) as client:
        assert client.post("/admin/v1/collections", json={"name": "docs"}).status_code == 201
        wait_job(client, upload(client, "docs", [("zanzibar.md", DOCUMENT)])["job_id"])
        yield client


def test_head_on_the_page_is_answered_like_get(client: TestClient) -> None:
    for path in ("/ui/", "/ui/main.js"):
        head, get = client.head(path), client.get(path)
        assert head.status_code == 200, path
        assert head.headers["content-type"] == get.headers["content-type"]
        assert head.headers["content-security-policy"] == get.headers["content-security-policy"]
    assert client.head("/", follow_redirects=False).status_code == 307
    assert client.head("/ui/missing.js").status_code == 404


def test_questions_and_searches_share_one_length_cap(client: TestClient) -> None:
    assert QUERY_MAX_CHARS == 2000
    at_cap = ("copra " * QUERY_MAX_CHARS)[:QUERY_MAX_CHARS]
    over = "x" * (QUERY_MAX_CHARS + 1)
    searched = client.post("/v1/search", json={"collection": "docs", "query": at_cap})
    assert searched.status_code == 200, searched.text
    asked = client.post("/v1/query", json={"collection": "docs", "question": at_cap})
    assert asked.status_code == 200, asked.text
    for path, field in (("/v1/search", "query"), ("/v1/query", "question")):
        refused = client.post(path, json={"collection": "docs", field: over})
        assert refused.status_code == 422
        assert f"at most {QUERY_MAX_CHARS} characters" in refused.json()["error"]["message"]


def test_a_form_encoded_body_is_told_to_send_json(client: TestClient) -> None:
    for path, field in (("/v1/search", "query"), ("/v1/query", "question")):
        form = client.post(path, data={"collection": "docs", field: "copra"})
        assert form.status_code == 422
        assert form.json()["error"] == {
            "code": "validation_error",
            "message": "request body: send JSON with Content-Type: application/json, not "
            "application/x-www-form-urlencoded",
        }
    text = client.post(
        "/admin/v1/collections", content=b'{"name": "x"}', headers={"content-type": "text/plain"}
    )
    assert text.status_code == 422
    assert "send JSON" in text.json()["error"]["message"]
    # JSON that is no object keeps its own message.
    listed = client.post("/v1/search", json=["docs", "copra"])
    assert listed.status_code == 422 and "send JSON" not in listed.json()["error"]["message"]


def test_the_same_question_in_other_case_or_punctuation_is_a_cache_hit(
    client: TestClient,
) -> None:
    first = client.post(
        "/v1/query", json={"collection": "docs", "question": "What did Zanzibar export?"}
    )
    assert first.status_code == 200 and first.json()["cached"] is False
    for again in ("what did zanzibar export", "  WHAT did Zanzibar   export ?! "):
        hit = client.post("/v1/query", json={"collection": "docs", "question": again})
        assert hit.json()["cached"] is True, again
        assert hit.json()["answer"] == first.json()["answer"]


def test_ask_takes_a_mode(server: str, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "zanzibar.md").write_bytes(DOCUMENT)
    assert run("ingest", str(folder), "--collection", "docs", "--url", server)[0] == 0
    code, out, err = run(
        "ask", "What did Zanzibar export?", "--collection", "docs", "--url", server,
        "--mode", "single_pass", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert '"mode": "single_pass"' in out
    code, _, err = run("ask", "x", "--collection", "docs", "--url", server, "--mode", "fast")
    assert code == 2 and "'fast' is not one of" in err


def test_ingest_of_a_missing_folder_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = run("ingest", str(missing), "--collection", "docs", "--url", url)
    assert code == 1
    assert err.strip() == f"no such directory: {missing}"
