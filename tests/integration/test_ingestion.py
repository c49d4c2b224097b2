"""Upload → Celery worker → Postgres → FAISS → search, against real services."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from core.settings import IngestSettings, Settings
from tests.documents import minimal_pdf
from tests.integration.conftest import new_collection, search, upload, wait_job

BIOS = "foldoc-basic-input-output-system-20.md"
SMTP = "foldoc-simple-mail-transfer-protocol-245.md"
AGP = "foldoc-accelerated-graphics-port-662.md"


def corpus_files(corpus: Path, *names: str) -> list[tuple[str, bytes]]:
    return [(name, (corpus / name).read_bytes()) for name in names]


def test_upload_then_search_finds_the_right_chunk(api: TestClient, corpus: Path) -> None:
    name = new_collection(api)
    accepted = upload(api, name, corpus_files(corpus, BIOS, SMTP, AGP))
    assert [d["status"] for d in accepted["documents"]] == ["queued"] * 3

    job = wait_job(api, accepted["job_id"])
    assert job["status"] == "succeeded", job
    assert job["progress"] == {"done": 3, "total": 3}
    assert job["errors"] == []

    hits = search(api, name, "What does SMTP stand for?")["hits"]
    assert hits[0]["filename"] == SMTP
    document = api.get(f"/v1/collections/{name}/documents/{hits[0]['document_id']}").json()
    # Offsets cut the hit back out of the document's extracted text, verbatim.
    assert document["text"][hits[0]["start"] : hits[0]["end"]] == hits[0]["text"]

    info = api.get(f"/v1/collections/{name}").json()
    assert info["documents"] == 3
    assert info["chunks"] >= 3
    assert info["index_version"] >= 3


def test_duplicate_upload_is_not_reembedded(api: TestClient, corpus: Path) -> None:
    name = new_collection(api)
    first = upload(api, name, corpus_files(corpus, BIOS))
    wait_job(api, first["job_id"])
    chunks_before = api.get(f"/v1/collections/{name}").json()["chunks"]

    second = upload(api, name, corpus_files(corpus, BIOS))
    assert second["documents"][0]["status"] == "duplicate"
    assert second["documents"][0]["document_id"] == first["documents"][0]["document_id"]
    job = wait_job(api, second["job_id"])
    assert job["status"] == "succeeded"
    assert job["progress"]["total"] == 0
    assert api.get(f"/v1/collections/{name}").json()["chunks"] == chunks_before


def test_same_file_twice_in_one_upload_is_stored_once(api: TestClient, corpus: Path) -> None:
    name = new_collection(api)
    accepted = upload(api, name, corpus_files(corpus, AGP, AGP))
    assert [d["status"] for d in accepted["documents"]] == ["queued", "duplicate"]
    wait_job(api, accepted["job_id"])
    assert len(api.get(f"/v1/collections/{name}/documents").json()["documents"]) == 1


def test_corrupt_pdf_fails_alone(api: TestClient, corpus: Path) -> None:
    name = new_collection(api)
    good_pdf = minimal_pdf("Zanzibar copra exports peaked in the nineteenth century")
    corrupt = good_pdf[: len(good_pdf) // 2]
    accepted = upload(
        api,
        name,
        [
            *corpus_files(corpus, BIOS),
            ("report.pdf", good_pdf),
            ("broken.pdf", corrupt),
            ("empty.txt", b""),
        ],
    )
    job = wait_job(api, accepted["job_id"])
    assert job["status"] == "succeeded"
    failed = {e["filename"]: e["message"] for e in job["errors"]}
    assert set(failed) == {"broken.pdf", "empty.txt"}
    assert "PDF" in failed["broken.pdf"]
    assert "empty" in failed["empty.txt"]

    statuses = {
        d["filename"]: d["status"]
        for d in api.get(f"/v1/collections/{name}/documents").json()["documents"]
    }
    assert statuses == {BIOS: "ready", "report.pdf": "ready", "broken.pdf": "failed"}
    assert search(api, name, "copra exports from Zanzibar")["hits"][0]["filename"] == "report.pdf"


def test_unsupported_type_is_rejected_with_415(api: TestClient) -> None:
    name = new_collection(api)
    response = api.post(
        f"/admin/v1/collections/{name}/documents",
        files=[("files", ("photo.png", b"\x89PNG\r\n\x1a\n\x00\x00binary"))],
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert api.get(f"/v1/collections/{name}/documents").json()["documents"] == []


def test_oversized_file_is_rejected_with_413(
    pg_settings: Settings, make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    small = pg_settings.model_copy(
        update={"data_dir": tmp_path, "ingest": IngestSettings(max_file_bytes=100)}
    )
    client = make_client(small)
    name = new_collection(client)
    response = client.post(
        f"/admin/v1/collections/{name}/documents", files=[("files", ("big.txt", b"x" * 101))]
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"


def test_unsafe_filename_is_kept_as_metadata_only(api: TestClient) -> None:
    name = new_collection(api)
    hostile = "../../etc/passwd; rm -rf ~.txt"
    accepted = upload(api, name, [(hostile, b"Plain words about nothing in particular.")])
    wait_job(api, accepted["job_id"])
    documents = api.get(f"/v1/collections/{name}/documents").json()["documents"]
    assert documents[0]["filename"] == hostile
    assert documents[0]["status"] == "ready"


def test_unknown_collection_is_404(api: TestClient) -> None:
    response = api.post("/v1/search", json={"collection": "nope-none", "query": "x"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "collection_not_found"
    assert api.get("/admin/v1/jobs/doesnotexist").status_code == 404


def test_deleted_document_never_appears_in_results(api: TestClient, corpus: Path) -> None:
    name = new_collection(api)
    accepted = upload(api, name, corpus_files(corpus, BIOS, SMTP))
    wait_job(api, accepted["job_id"])
    smtp_id = next(d["document_id"] for d in accepted["documents"] if d["filename"] == SMTP)
    assert search(api, name, "mail transfer protocol")["hits"][0]["filename"] == SMTP
    version = api.get(f"/v1/collections/{name}").json()["index_version"]

    assert api.delete(f"/admin/v1/collections/{name}/documents/{smtp_id}").status_code == 204

    info = api.get(f"/v1/collections/{name}").json()
    assert info["index_version"] > version
    hits = search(api, name, "mail transfer protocol", top_k=10)["hits"]
    assert hits, "the other document still answers"
    assert all(h["document_id"] != smtp_id for h in hits)
    assert api.delete(f"/admin/v1/collections/{name}/documents/{smtp_id}").status_code == 404


def test_index_rebuilt_from_database_equals_live_index(api: TestClient, corpus: Path) -> None:
    name = new_collection(api)
    files = sorted(p.name for p in corpus.glob("*.md"))[:40]
    accepted = upload(api, name, corpus_files(corpus, *files))
    wait_job(api, accepted["job_id"])
    queries = ["operating system", "network protocol", "programming language", "memory"]
    live = [search(api, name, q, top_k=8)["hits"] for q in queries]

    rebuilt = api.post(f"/admin/v1/collections/{name}/index/rebuild").json()
    assert rebuilt["vectors"] == api.get(f"/v1/collections/{name}").json()["chunks"]
    after = [search(api, name, q, top_k=8)["hits"] for q in queries]
    assert [[h["chunk_id"] for h in hits] for hits in after] == [
        [h["chunk_id"] for h in hits] for hits in live
    ]
