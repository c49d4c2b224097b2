"""What a new user trips on (issue 15): mixed uploads, long names, blank questions, collection
delete, job lists and per-file status, document replace, cached timings, `supported`.

The embedded default (SQLite, in-process worker, real embedder) with a FAKE generator from
tests/integration/fakes.py: what is under test is the HTTP surface, not the model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.settings import IngestSettings, Settings
from tests.integration.conftest import new_collection, search, upload, wait_job
from tests.integration.fakes import NothingRelevant, SchemaFollowingGenerator

GOOD = b"Zanzibar copra exports peaked in the nineteenth century, carried by dhows."
OTHER = b"The Basic Input/Output System starts the computer and loads the boot sector."


@pytest.fixture
def client(make_client: Callable[..., TestClient], tmp_path: Path) -> TestClient:
    settings = Settings(data_dir=tmp_path, ingest=IngestSettings(max_file_bytes=10_000))
    return make_client(settings, SchemaFollowingGenerator())


def test_one_bad_file_does_not_reject_the_upload(client: TestClient) -> None:
    name = new_collection(client)
    accepted = upload(
        client,
        name,
        [
            ("good.md", GOOD),
            ("photo.png", b"\x89PNG\r\n\x1a\n\x00\x00binary"),
            ("empty.txt", b"  \n"),
            ("big.txt", b"x" * 10_001),
        ],
    )
    assert [d["filename"] for d in accepted["documents"]] == ["good.md"]
    refused = {e["filename"]: e["code"] for e in accepted["errors"]}
    assert refused == {
        "photo.png": "unsupported_media_type",
        "empty.txt": "empty_document",
        "big.txt": "file_too_large",
    }
    job = wait_job(client, accepted["job_id"])
    assert job["status"] == "succeeded"
    files = {f["filename"]: f for f in job["files"]}
    assert files["good.md"]["status"] == "ready"
    assert files["good.md"]["document_id"] == accepted["documents"][0]["document_id"]
    assert files["photo.png"]["status"] == "refused" and files["photo.png"]["error"]
    assert search(client, name, "copra from Zanzibar")["hits"][0]["filename"] == "good.md"


def test_upload_with_nothing_acceptable_is_a_request_error(client: TestClient) -> None:
    name = new_collection(client)
    response = client.post(
        f"/admin/v1/collections/{name}/documents",
        files=[("files", ("a.png", b"\x89PNG\r\n")), ("files", ("b.png", b"\x89PNG\r\n"))],
    )
    assert response.status_code == 415
    assert "a.png" in response.json()["error"]["message"]
    assert "b.png" in response.json()["error"]["message"]
    empty = client.post(
        f"/admin/v1/collections/{name}/documents", files=[("files", ("e.txt", b""))]
    )
    assert empty.status_code == 422
    assert empty.json()["error"]["code"] == "empty_document"
    assert client.get(f"/v1/collections/{name}/documents").json()["documents"] == []


def test_long_filename_keeps_its_extension_and_full_name(client: TestClient) -> None:
    name = new_collection(client)
    long_name = "x" * 300 + ".md"
    accepted = upload(client, name, [(long_name, GOOD)])
    stored = accepted["documents"][0]["filename"]
    assert len(stored) == 255 and stored.endswith(".md")
    wait_job(client, accepted["job_id"])
    document = client.get(f"/v1/collections/{name}/documents").json()["documents"][0]
    assert document["status"] == "ready"
    assert document["media_type"] == "text/markdown"
    assert document["original_filename"] == long_name


@pytest.mark.parametrize("blank", ["   ", "\n\t "])
def test_whitespace_only_question_or_query_is_422(client: TestClient, blank: str) -> None:
    name = new_collection(client)
    response = client.post("/v1/query", json={"collection": name, "question": blank})
    assert response.status_code == 422
    assert "question" in response.json()["error"]["message"]
    response = client.post("/v1/search", json={"collection": name, "query": blank})
    assert response.status_code == 422


def test_unknown_fields_and_bad_json_get_readable_422s(client: TestClient) -> None:
    name = new_collection(client)
    response = client.post("/v1/query", json={"collection": name, "question": "x", "topk": 3})
    assert response.status_code == 422
    assert "unknown field 'topk'" in response.json()["error"]["message"]
    broken = client.post(
        "/v1/search",
        content=b'{"collection": "docs", "query": }',
        headers={"Content-Type": "application/json"},
    )
    assert broken.status_code == 422
    assert broken.json()["error"]["message"].startswith("request body is not valid JSON")
    assert "at character" in broken.json()["error"]["message"]


def test_unknown_route_says_no_such_route(client: TestClient) -> None:
    response = client.delete("/admin/v1/nothing/here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "route_not_found"
    assert "no such route" in response.json()["error"]["message"]


def test_deleting_a_collection_removes_everything_it_held(client: TestClient) -> None:
    name = new_collection(client)
    accepted = upload(client, name, [("good.md", GOOD), ("other.md", OTHER)])
    wait_job(client, accepted["job_id"])
    assert search(client, name, "copra")["hits"]
    first = client.post("/v1/query", json={"collection": name, "question": "What was exported?"})
    assert first.status_code == 200
    services = client.app.state.services  # type: ignore[attr-defined]
    collection_id = next(iter(services.indexes.loaded()))[0]
    snapshots = services.settings.index_dir / collection_id
    services.indexes.save_snapshots()
    assert snapshots.exists()
    hooked: list[str] = []
    services.indexes.on_collection_deleted(hooked.append)

    response = client.delete(f"/admin/v1/collections/{name}")
    assert response.status_code == 204, response.text
    assert client.get(f"/v1/collections/{name}").status_code == 404
    assert client.delete(f"/admin/v1/collections/{name}").status_code == 404
    assert hooked == [collection_id]
    assert not snapshots.exists()
    assert all(key[0] != collection_id for key in services.indexes.loaded())
    with services.db.session() as session:
        from sqlalchemy import func, select

        from core.models import Chunk, Document, Embedding, Job

        for model in (Document, Chunk, Embedding, Job):
            assert session.scalar(select(func.count()).select_from(model)) == 0, model

    # The same name again: an empty collection, and no answer cached for the old one.
    client.post("/admin/v1/collections", json={"name": name})
    assert search(client, name, "copra")["hits"] == []
    again = client.post("/v1/query", json={"collection": name, "question": "What was exported?"})
    assert again.status_code == 200
    assert again.json()["cached"] is False


def test_job_list_filters_and_pages(client: TestClient) -> None:
    name = new_collection(client)
    other = new_collection(client)
    ids = [upload(client, name, [(f"f{i}.md", GOOD + bytes([65 + i]))])["job_id"] for i in range(5)]
    ids_other = [upload(client, other, [("o.md", OTHER)])["job_id"]]
    for job_id in ids + ids_other:
        wait_job(client, job_id)

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"collection": name, "limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/admin/v1/jobs", params=params).json()
        seen += [job["job_id"] for job in page["jobs"]]
        assert all(job["collection"] == name for job in page["jobs"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(ids)), "newest first, each job once"
    succeeded = client.get("/admin/v1/jobs", params={"status": "succeeded"}).json()["jobs"]
    assert len(succeeded) == 6
    assert client.get("/admin/v1/jobs", params={"status": "failed"}).json()["jobs"] == []
    assert client.get("/admin/v1/jobs", params={"cursor": "junk!"}).status_code == 422
    assert client.get("/admin/v1/jobs", params={"collection": "nope"}).status_code == 404
    # Not a collection name (a NUL byte, found by the fuzz test): a 422, never the database.
    assert client.get("/admin/v1/jobs", params={"collection": "d\x00c"}).status_code == 422


def test_document_replace_swaps_the_content_under_the_same_id(client: TestClient) -> None:
    name = new_collection(client)
    accepted = upload(client, name, [("notes.md", GOOD)])
    wait_job(client, accepted["job_id"])
    document_id = accepted["documents"][0]["document_id"]

    response = client.put(
        f"/admin/v1/collections/{name}/documents/{document_id}",
        files=[("file", ("notes.md", OTHER))],
    )
    assert response.status_code == 202, response.text
    replaced = response.json()
    assert replaced["replaces"] == document_id
    assert replaced["documents"] == [
        {"document_id": document_id, "filename": "notes.md", "status": "queued", "replaces": []}
    ]
    wait_job(client, replaced["job_id"])
    hits = search(client, name, "boot sector of the computer")["hits"]
    assert {h["document_id"] for h in hits} == {document_id}
    assert all("copra" not in h["text"] for h in search(client, name, "copra exports")["hits"])
    text = client.get(f"/v1/collections/{name}/documents/{document_id}").json()["text"]
    assert "Basic Input/Output" in text

    same = client.put(
        f"/admin/v1/collections/{name}/documents/{document_id}",
        files=[("file", ("notes.md", OTHER))],
    ).json()
    assert same["documents"][0]["status"] == "duplicate"
    missing = client.put(
        f"/admin/v1/collections/{name}/documents/nope", files=[("file", ("n.md", GOOD))]
    )
    assert missing.status_code == 404


def test_cached_answer_reports_its_own_time(client: TestClient) -> None:
    name = new_collection(client)
    wait_job(client, upload(client, name, [("good.md", GOOD)])["job_id"])
    body = {"collection": name, "question": "What did Zanzibar export?"}
    first = client.post("/v1/query", json=body).json()
    assert first["cached"] is False
    hit = client.post("/v1/query", json=body).json()
    assert hit["cached"] is True
    assert set(hit["timings_ms"]) == {"cache", "total"}
    assert hit["timings_ms"]["total"] < 1000
    assert hit["original_timings_ms"] == first["timings_ms"]


def test_supported_is_false_when_nothing_is_relevant(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = make_client(Settings(data_dir=tmp_path), NothingRelevant())
    name = new_collection(client)
    wait_job(client, upload(client, name, [("good.md", GOOD)])["job_id"])
    answer = client.post("/v1/query", json={"collection": name, "question": "Exports?"}).json()
    assert answer["citations"] == []
    assert answer["supported"] is False


def test_docs_pages_load_their_assets_locally(client: TestClient) -> None:
    for page, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = client.get(page).text
        assert f"/docs/assets/{asset}" in html
        assert "cdn." not in html and "fonts.googleapis" not in html
        served = client.get(f"/docs/assets/{asset}")
        assert served.status_code == 200 and len(served.content) > 100_000
    assert client.get("/docs/assets/swagger-ui.css").status_code == 200
    refused = client.get("/docs/assets/apps.py")
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "not_found"
