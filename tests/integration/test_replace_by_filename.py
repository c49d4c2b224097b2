"""An edited file uploaded again replaces its document (issue 36): the new version is ingested
and the old one leaves in the transaction that makes the new one searchable; `on_existing=keep`
keeps both; a file named as text that is not text is refused beside the good ones.

Against real services: Postgres, Redis and a Celery worker process (the `api` fixture).
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from fastapi.testclient import TestClient

from core import repository
from core.repository import UploadedFile
from tests.integration.conftest import new_collection, search, services_of, upload, wait_job

OLD = b"# Notes\n\nThe staging server listens on port 4711 for the deployment hooks.\n"
NEW = b"# Notes\n\nThe staging server listens on port 9090 for the deployment hooks.\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06" + bytes(64)


def documents(client: TestClient, collection: str) -> list[dict[str, Any]]:
    body: dict[str, Any] = client.get(f"/v1/collections/{collection}/documents").json()
    return list(body["documents"])


def ingested(client: TestClient, collection: str, files: list[tuple[str, bytes]]) -> str:
    """Upload and wait; the first document's id."""
    accepted = upload(client, collection, files)
    assert wait_job(client, accepted["job_id"])["status"] == "succeeded"
    return str(accepted["documents"][0]["document_id"])


def test_an_edited_file_replaces_its_document(api: TestClient) -> None:
    name = new_collection(api)
    old_id = ingested(api, name, [("notes.md", OLD)])

    accepted = upload(api, name, [("notes.md", NEW)])
    [entry] = accepted["documents"]
    assert entry["status"] == "queued"
    assert entry["replaces"] == [old_id]
    assert entry["document_id"] != old_id
    assert wait_job(api, accepted["job_id"])["status"] == "succeeded"

    [document] = documents(api, name)
    assert document["document_id"] == entry["document_id"]
    assert document["status"] == "ready"
    hits = search(api, name, "which port does the staging server listen on")["hits"]
    assert {h["document_id"] for h in hits} == {entry["document_id"]}
    assert all("4711" not in h["text"] for h in hits)
    assert api.get(f"/v1/collections/{name}/documents/{old_id}").status_code == 404
    assert api.get(f"/v1/collections/{name}").json()["documents"] == 1


def test_an_unchanged_file_stays_a_duplicate(api: TestClient) -> None:
    name = new_collection(api)
    old_id = ingested(api, name, [("notes.md", OLD)])
    again = upload(api, name, [("notes.md", OLD)])
    assert again["documents"] == [
        {"document_id": old_id, "filename": "notes.md", "status": "duplicate", "replaces": []}
    ]
    assert [d["document_id"] for d in documents(api, name)] == [old_id]


def test_keeping_both_versions_is_an_explicit_choice(api: TestClient) -> None:
    name = new_collection(api)
    old_id = ingested(api, name, [("notes.md", OLD)])
    response = api.post(
        f"/admin/v1/collections/{name}/documents",
        files=[("files", ("notes.md", NEW))],
        data={"on_existing": "keep"},
    )
    assert response.status_code == 202, response.text
    kept = response.json()
    assert kept["documents"][0]["replaces"] == []
    wait_job(api, kept["job_id"])
    ids = {d["document_id"] for d in documents(api, name)}
    assert ids == {old_id, kept["documents"][0]["document_id"]}

    # Both versions are then replaced by the next upload of that name.
    third = upload(api, name, [("notes.md", b"The staging server moved to port 8443.")])
    assert set(third["documents"][0]["replaces"]) == ids
    wait_job(api, third["job_id"])
    assert [d["document_id"] for d in documents(api, name)] == [
        third["documents"][0]["document_id"]
    ]

    wrong = api.post(
        f"/admin/v1/collections/{name}/documents",
        files=[("files", ("notes.md", NEW))],
        data={"on_existing": "both"},
    )
    assert wrong.status_code == 422


def test_a_new_version_that_fails_leaves_the_old_one_searchable(api: TestClient) -> None:
    name = new_collection(api)
    old_id = ingested(api, name, [("ports.json", b'{"staging": {"port": 4711}}')])
    broken = upload(api, name, [("ports.json", b'{"staging": {"port": 9090')])
    assert broken["documents"][0]["replaces"] == [old_id]
    job = wait_job(api, broken["job_id"])
    assert job["files"][0]["status"] == "failed"
    statuses = {d["document_id"]: d["status"] for d in documents(api, name)}
    assert statuses == {old_id: "ready", broken["documents"][0]["document_id"]: "failed"}
    hits = search(api, name, "staging port")["hits"]
    assert {h["document_id"] for h in hits} == {old_id}

    # The next good version replaces both the old one and the failed one.
    fixed = upload(api, name, [("ports.json", b'{"staging": {"port": 9090}}')])
    assert set(fixed["documents"][0]["replaces"]) == set(statuses)
    wait_job(api, fixed["job_id"])
    assert [d["document_id"] for d in documents(api, name)] == [
        fixed["documents"][0]["document_id"]
    ]


def test_the_same_name_twice_in_one_upload_keeps_the_last(api: TestClient) -> None:
    name = new_collection(api)
    accepted = upload(api, name, [("notes.md", OLD), ("notes.md", NEW)])
    first, second = accepted["documents"]
    assert first["replaces"] == [] and second["replaces"] == [first["document_id"]]
    job = wait_job(api, accepted["job_id"])
    # The job still finishes although one of its documents was replaced by the other.
    assert job["status"] == "succeeded", job
    [document] = documents(api, name)
    assert document["document_id"] == second["document_id"]
    statuses = {f["document_id"]: f["status"] for f in job["files"]}
    assert statuses == {first["document_id"]: "deleted", second["document_id"]: "ready"}


def test_searches_during_a_replacement_see_one_version_never_both_or_neither(
    api: TestClient,
) -> None:
    name = new_collection(api)
    old_id = ingested(api, name, [("notes.md", OLD * 40)])
    seen: list[set[str]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            hits = search(api, name, "staging server port", top_k=50)["hits"]
            seen.append({h["document_id"] for h in hits})

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        accepted = upload(api, name, [("notes.md", NEW * 40)])
        wait_job(api, accepted["job_id"])
        new_id = accepted["documents"][0]["document_id"]
        seen_after = search(api, name, "staging server port", top_k=50)["hits"]
    finally:
        done.set()
        watcher.join()
    assert {h["document_id"] for h in seen_after} == {new_id}
    assert seen, "the watcher ran no search"
    assert all(ids in ({old_id}, {new_id}) for ids in seen), [s for s in seen if len(s) != 1]


def test_a_binary_file_named_as_text_is_refused_beside_good_files(api: TestClient) -> None:
    name = new_collection(api)
    accepted = upload(
        api,
        name,
        [
            ("good.md", OLD),
            ("fake.txt", PNG),
            ("blob.json", bytes(range(256)) * 4),
            ("utf16.txt", "Port 4711 is in UTF-16, which is text.\n".encode("utf-16")),
        ],
    )
    assert [d["filename"] for d in accepted["documents"]] == ["good.md", "utf16.txt"]
    refused = {e["filename"]: e for e in accepted["errors"]}
    assert set(refused) == {"fake.txt", "blob.json"}
    assert refused["fake.txt"]["code"] == "unsupported_media_type"
    assert "not text" in refused["fake.txt"]["message"]
    assert "PNG image" in refused["fake.txt"]["message"]
    assert "binary data" in refused["blob.json"]["message"]
    job = wait_job(api, accepted["job_id"])
    assert job["status"] == "succeeded"
    files = {f["filename"]: f["status"] for f in job["files"]}
    assert files == {
        "good.md": "ready",
        "utf16.txt": "ready",
        "fake.txt": "refused",
        "blob.json": "refused",
    }
    utf16_id = accepted["documents"][1]["document_id"]
    text = api.get(f"/v1/collections/{name}/documents/{utf16_id}").json()["text"]
    assert text == "Port 4711 is in UTF-16, which is text."

    alone = api.post(
        f"/admin/v1/collections/{name}/documents", files=[("files", ("fake.txt", PNG))]
    )
    assert alone.status_code == 415
    assert alone.json()["error"]["code"] == "unsupported_media_type"
    assert "PNG image" in alone.json()["error"]["message"]


def test_deleting_a_queued_document_lets_its_job_finish(api: TestClient) -> None:
    name = new_collection(api)
    services = services_of(api)
    files = [
        UploadedFile(filename, "text/markdown", hashlib.sha256(data).hexdigest(), data)
        for filename, data in (("notes.md", OLD), ("other.md", NEW))
    ]
    # Recorded but not yet sent to the worker: both documents stay queued.
    with services.db.session() as session:
        collection = repository.get_collection(session, name)
        job, outcomes = repository.create_ingest_job(session, collection, files, [])
        job_id, (first, second) = job.id, [o.document_id for o in outcomes]
    assert api.delete(f"/admin/v1/collections/{name}/documents/{first}").status_code == 204
    services.queue.enqueue_documents([second])
    job_out = wait_job(api, job_id)
    assert job_out["status"] == "succeeded"
    assert job_out["progress"] == {"done": 1, "total": 1}
    assert {f["document_id"]: f["status"] for f in job_out["files"]} == {
        first: "deleted",
        second: "ready",
    }
