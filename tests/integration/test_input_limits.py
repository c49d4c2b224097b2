"""Request limits at the HTTP edge: each over-limit input is a clean 4xx with the error shape.

Covered elsewhere, in test_ingestion.py: a file over the size limit
(test_oversized_file_is_rejected_with_413), a hostile filename kept as metadata only
(test_unsafe_filename_is_kept_as_metadata_only), unsupported types
(test_unsupported_type_is_rejected_with_415).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.settings import IngestSettings
from tests.integration.conftest import new_collection
from tests.integration.isolated import embedded_pg_settings, own_database


@pytest.fixture
def client(make_client: Callable[..., TestClient], tmp_path: Path) -> Iterator[TestClient]:
    with own_database() as url:
        settings = embedded_pg_settings(
            url,
            tmp_path,
            ingest=IngestSettings(
                max_files_per_request=3, max_file_bytes=2000, max_request_bytes=5000
            ),
        )
        yield make_client(settings)


def error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    message: str = body["error"]["message"]
    return message


def test_over_limit_requests_get_clean_errors(client: TestClient) -> None:
    name = new_collection(client)
    files = [("files", (f"f{i}.txt", f"text number {i}".encode())) for i in range(4)]
    message = error(
        client.post(f"/admin/v1/collections/{name}/documents", files=files), 413, "file_too_large"
    )
    assert "limit is 3" in message
    # Three files of 1900 bytes each pass the per-file and count limits, not the whole-request
    # one, and are refused before the body is read.
    big = [("files", (f"f{i}.txt", b"y" * 1900)) for i in range(3)]
    message = error(
        client.post(f"/admin/v1/collections/{name}/documents", files=big), 413, "file_too_large"
    )
    assert "limit is 5000" in message
    assert client.get(f"/v1/collections/{name}/documents").json()["documents"] == []
    assert client.get(f"/v1/collections/{name}/documents").json()["documents"] == []

    for body in (
        {"collection": name, "question": "x" * 2001},
        {"collection": name, "question": ""},
        {"collection": name, "question": "ok", "top_k": 0},
        {"collection": name, "question": "ok", "top_k": 21},
        {"collection": "../etc", "question": "ok"},
        {"collection": name, "question": "ok", "adapter": "a" * 129},
    ):
        error(client.post("/v1/query", json=body), 422, "validation_error")
    for body in (
        {"collection": name, "query": "x" * 4001},
        {"collection": name, "query": "ok", "top_k": 101},
        {"collection": name, "query": "ok", "top_k": -1},
        {"collection": "bad name!", "query": "ok"},
    ):
        error(client.post("/v1/search", json=body), 422, "validation_error")
    for bad in ("", "-starts-with-dash", "has space", "x" * 65, "new\nline", "ünïcode"):
        error(client.post("/admin/v1/collections", json={"name": bad}), 422, "validation_error")
    # Malformed JSON is a 422 with the error shape too, not a 500.
    malformed = client.post(
        "/v1/search", content=b"{not json", headers={"content-type": "application/json"}
    )
    error(malformed, 422, "validation_error")


def test_bad_adapter_path_is_a_client_error_not_a_503(client: TestClient, tmp_path: Path) -> None:
    """The real embedded generator: a missing file or a file that is not a LoRA GGUF is 400."""
    missing = {"name": "tuned", "path": str(tmp_path / "missing.gguf")}
    error(client.post("/admin/v1/adapters", json=missing), 400, "bad_request")
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_bytes(b"this is not a GGUF file at all")
    response = client.post("/admin/v1/adapters", json={"name": "tuned", "path": str(not_gguf)})
    error(response, 400, "bad_request")
    assert client.get("/v1/adapters").json() == {"adapters": []}
