"""Hybrid retrieval: BM25 kept in step with the database (uploads, deletes, an embedder
migration, a rebuild, snapshots), on Postgres with a Celery worker and on the embedded SQLite
default; the retrieval mode per collection and per request."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from core import repository
from core.settings import RedisSettings, Settings
from retrieval.embedders import DEFAULT_EMBEDDER, MINILM_INT8
from tests.integration.conftest import WorkerProcess, new_collection, services_of, upload, wait_job
from tests.integration.fakes import NothingRelevant
from tests.integration.test_query import CACHE_REDIS, parse_sse

# A document whose only distinctive content is an identifier: the kind of query (a ticket
# number, a part number, an acronym) that embeddings place nowhere in particular.
TICKET = "incident-report.md"
TICKET_ID = "QX7734"
TICKET_TEXT = (
    "# Incident report\n\nThe nightly backup job failed twice this week. After the storage "
    f"controller firmware was updated the job ran again. Reference: {TICKET_ID}.\n"
)
# Tickets whose numbers look like it: to the embedder they are all the same kind of token, and
# the short ones sit closer to the bare number than the report does, so dense ranks it 9th.
LOOKALIKES = [
    (
        f"ticket-{n}.md",
        f"# Ticket {n}\n\nTicket {n} was closed; see the log of ticket {n}.\n".encode(),
    )
    for n in ("QX7735", "QX7743", "QX7374", "QX7724", "QX7733", "QX7744", "QX7034", "QX1734")
]
OTHER = "incident-followup.md"
OTHER_ID = "ZR5521"
OTHER_TEXT = (
    "# Follow-up\n\nThe replacement disks arrived and the array was rebuilt overnight. "
    f"Reference: {OTHER_ID}.\n"
)


def corpus_files(corpus: Path, count: int) -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in sorted(corpus.iterdir())[:count]]


def ingest(client: TestClient, files: list[tuple[str, bytes]], **settings: Any) -> str:
    # From the torch model, so that a migration to its int8 export has somewhere to go.
    name = new_collection(client, "h", DEFAULT_EMBEDDER)
    if settings:
        response = client.patch(f"/admin/v1/collections/{name}", json=settings)
        assert response.status_code == 200, response.text
    job = wait_job(client, upload(client, name, files)["job_id"])
    assert job["status"] == "succeeded", job
    return name


def search(client: TestClient, name: str, query: str, **extra: Any) -> dict[str, Any]:
    response = client.post(
        "/v1/search", json={"collection": name, "query": query, "top_k": 5, **extra}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def found(client: TestClient, name: str, query: str, retrieval: str) -> list[str]:
    body = search(client, name, query, retrieval=retrieval)
    assert body["retrieval"] == retrieval
    return [h["filename"] for h in body["hits"]]


def collection_id(client: TestClient, name: str) -> str:
    with services_of(client).db.session() as session:
        return repository.get_collection(session, name).id


def lexical_ids(client: TestClient, name: str) -> set[int]:
    """Chunk ids in this API's BM25 index of the collection, caught up to its version."""
    info = client.get(f"/v1/collections/{name}").json()
    index = services_of(client).lexical.get(collection_id(client, name), info["index_version"])
    return set(index.ids().tolist())


def chunk_ids_in_db(client: TestClient, name: str) -> set[int]:
    with services_of(client).db.session() as session:
        return set(repository.chunk_ids(session, collection_id(client, name)).tolist())


def document_id(client: TestClient, name: str, filename: str) -> str:
    documents = client.get(f"/v1/collections/{name}/documents").json()["documents"]
    return next(d["document_id"] for d in documents if d["filename"] == filename)


def test_hybrid_finds_an_identifier_that_dense_misses(api: TestClient, corpus: Path) -> None:
    name = ingest(api, [*corpus_files(corpus, 10), *LOOKALIKES, (TICKET, TICKET_TEXT.encode())])
    assert TICKET not in found(api, name, TICKET_ID, "dense"), "the premise: dense misses it"
    assert found(api, name, TICKET_ID, "lexical")[0] == TICKET
    assert TICKET in found(api, name, TICKET_ID, "hybrid")[:2]
    # A natural-language question still works in hybrid.
    assert found(api, name, "What is 56 kbps?", "hybrid")[0] == "foldoc-56-kbps-324.md"


def test_bm25_follows_uploads_deletes_and_a_rebuild(
    pg_settings: Settings,
    worker: WorkerProcess,
    make_client: Callable[..., TestClient],
    tmp_path: Path,
    corpus: Path,
) -> None:
    api = make_client(pg_settings.model_copy(update={"data_dir": tmp_path / "a"}))
    name = ingest(api, [*corpus_files(corpus, 10), (TICKET, TICKET_TEXT.encode())])
    assert found(api, name, TICKET_ID, "lexical") == [TICKET]
    assert found(api, name, OTHER_ID, "lexical") == []

    # An upload through another replica: this one catches up on its next search.
    other = make_client(pg_settings.model_copy(update={"data_dir": tmp_path / "b"}))
    wait_job(other, upload(other, name, [(OTHER, OTHER_TEXT.encode())])["job_id"])
    assert found(api, name, OTHER_ID, "lexical") == [OTHER]
    assert found(api, name, OTHER_ID, "hybrid")[0] == OTHER
    assert lexical_ids(api, name) == chunk_ids_in_db(api, name)

    # A delete through the other replica: gone from this one's BM25 index, not just filtered.
    response = other.delete(
        f"/admin/v1/collections/{name}/documents/{document_id(api, name, TICKET)}"
    )
    assert response.status_code == 204, response.text
    assert found(api, name, TICKET_ID, "lexical") == []
    assert TICKET not in found(api, name, TICKET_ID, "hybrid")
    assert lexical_ids(api, name) == chunk_ids_in_db(api, name)

    rebuilt = api.post(f"/admin/v1/collections/{name}/index/rebuild").json()
    assert rebuilt["lexical_chunks"] == len(chunk_ids_in_db(api, name)) == rebuilt["vectors"]
    assert services_of(api).lexical.origin(collection_id(api, name)) == "database"
    assert found(api, name, OTHER_ID, "lexical") == [OTHER]


def test_bm25_survives_an_embedder_migration_without_a_rebuild(
    api: TestClient, corpus: Path
) -> None:
    name = ingest(api, [*corpus_files(corpus, 12), (TICKET, TICKET_TEXT.encode())])
    assert found(api, name, TICKET_ID, "hybrid")[:2].count(TICKET) == 1
    before = services_of(api).lexical.get(collection_id(api, name), 0)

    response = api.post(
        f"/admin/v1/collections/{name}/embedder-migrations", json={"embedder": MINILM_INT8}
    )
    assert response.status_code == 202, response.text
    assert wait_job(api, response.json()["job_id"])["status"] == "succeeded"

    body = search(api, name, TICKET_ID, retrieval="hybrid")
    assert body["embedder"] == MINILM_INT8
    assert TICKET in [h["filename"] for h in body["hits"]][:2]
    # The switch bumped the version; BM25 caught up with an empty diff, the same index object.
    after = services_of(api).lexical.get(collection_id(api, name), body["index_version"])
    assert after is before
    assert lexical_ids(api, name) == chunk_ids_in_db(api, name)


def test_bm25_snapshot_is_reloaded_and_a_bad_one_rebuilt(
    pg_settings: Settings,
    worker: WorkerProcess,
    make_client: Callable[..., TestClient],
    tmp_path: Path,
    corpus: Path,
) -> None:
    settings = pg_settings.model_copy(update={"data_dir": tmp_path})
    first = make_client(settings)
    name = ingest(first, [*corpus_files(corpus, 5), (TICKET, TICKET_TEXT.encode())])
    assert found(first, name, TICKET_ID, "lexical") == [TICKET]
    cid = collection_id(first, name)
    first.__exit__(None, None, None)  # shutdown writes the snapshots
    snapshot = services_of(first).lexical.snapshot_path(cid)
    assert snapshot.exists()

    # While this API is down, another replica takes an upload.
    other = make_client(pg_settings.model_copy(update={"data_dir": tmp_path / "other"}))
    wait_job(other, upload(other, name, [(OTHER, OTHER_TEXT.encode())])["job_id"])

    second = make_client(settings)
    assert found(second, name, OTHER_ID, "lexical") == [OTHER]
    assert services_of(second).lexical.origin(cid) == "snapshot"
    second.__exit__(None, None, None)

    snapshot.write_bytes(snapshot.read_bytes()[:-200])
    third = make_client(settings)
    assert found(third, name, TICKET_ID, "lexical") == [TICKET]
    assert services_of(third).lexical.origin(cid) == "database"


def test_retrieval_mode_per_collection_and_per_request(api: TestClient, corpus: Path) -> None:
    name = ingest(api, [*corpus_files(corpus, 5), (TICKET, TICKET_TEXT.encode())])
    default = services_of(api).settings.retrieval.default
    info = api.get(f"/v1/collections/{name}").json()
    assert (info["retrieval"], info["retrieval_setting"]) == (default, None)
    assert search(api, name, TICKET_ID)["retrieval"] == default

    response = api.patch(f"/admin/v1/collections/{name}", json={"retrieval": "dense"})
    assert response.status_code == 200, response.text
    assert response.json()["retrieval"] == "dense"
    # The change bumps the version, so answers cached under the old mode are not served.
    assert response.json()["index_version"] == info["index_version"] + 1
    assert search(api, name, TICKET_ID)["retrieval"] == "dense"
    assert search(api, name, TICKET_ID, retrieval="lexical")["retrieval"] == "lexical"

    bad = api.post("/v1/search", json={"collection": name, "query": "x", "retrieval": "sparse"})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"]
    bad = api.patch(f"/admin/v1/collections/{name}", json={"retrieval": "fuzzy"})
    assert bad.status_code == 422
    assert api.get(f"/v1/collections/{name}").json()["retrieval"] == "dense"

    created = api.post(
        "/admin/v1/collections", json={"name": f"{name}-lex", "retrieval": "lexical"}
    )
    assert created.status_code == 201, created.text
    assert created.json()["retrieval_setting"] == "lexical"


def test_query_takes_the_retrieval_mode(
    pg_settings: Settings,
    worker: WorkerProcess,
    make_client: Callable[..., TestClient],
    tmp_path: Path,
    corpus: Path,
) -> None:
    settings = pg_settings.model_copy(
        update={"data_dir": tmp_path, "redis": RedisSettings(url=CACHE_REDIS)}
    )
    api = make_client(settings, generator=NothingRelevant())
    name = ingest(api, [*corpus_files(corpus, 5), (TICKET, TICKET_TEXT.encode())])

    def retrieval_event(retrieval: str) -> dict[str, Any]:
        body = {"collection": name, "question": TICKET_ID, "stream": True, "retrieval": retrieval}
        with api.stream("POST", "/v1/query", json=body) as response:
            assert response.status_code == 200
            events = parse_sse(response.read().decode())
        assert events[0][0] == "retrieval"
        return events[0][1]

    lexical = retrieval_event("lexical")
    assert lexical["retrieval"] == "lexical"
    assert [h["filename"] for h in lexical["hits"]] == [TICKET]
    # Not the lexical answer from the cache: the mode is part of the cache key.
    dense = retrieval_event("dense")
    assert dense["retrieval"] == "dense"
    assert len(dense["hits"]) == 5
    assert json.dumps(dense) != json.dumps(lexical)


def test_embedded_sqlite_keeps_bm25_in_step(
    make_client: Callable[..., TestClient], tmp_path: Path, corpus: Path
) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.database_url.startswith("sqlite")
    api = make_client(settings)
    name = ingest(api, [*corpus_files(corpus, 10), *LOOKALIKES, (TICKET, TICKET_TEXT.encode())])
    assert TICKET not in found(api, name, TICKET_ID, "dense")
    assert TICKET in found(api, name, TICKET_ID, "hybrid")[:2]

    wait_job(api, upload(api, name, [(OTHER, OTHER_TEXT.encode())])["job_id"])
    assert found(api, name, OTHER_ID, "lexical") == [OTHER]
    response = api.delete(
        f"/admin/v1/collections/{name}/documents/{document_id(api, name, TICKET)}"
    )
    assert response.status_code == 204, response.text
    assert found(api, name, TICKET_ID, "lexical") == []
    assert lexical_ids(api, name) == chunk_ids_in_db(api, name)

    response = api.post(
        f"/admin/v1/collections/{name}/embedder-migrations", json={"embedder": MINILM_INT8}
    )
    assert response.status_code == 202, response.text
    assert wait_job(api, response.json()["job_id"])["status"] == "succeeded"
    body = search(api, name, OTHER_ID, retrieval="hybrid")
    assert body["embedder"] == MINILM_INT8 and body["hits"][0]["filename"] == OTHER

    rebuilt = api.post(f"/admin/v1/collections/{name}/index/rebuild").json()
    assert rebuilt["lexical_chunks"] == len(chunk_ids_in_db(api, name))
    api.__exit__(None, None, None)

    # A restart loads the snapshot instead of re-tokenizing every chunk.
    again = make_client(settings)
    assert found(again, name, OTHER_ID, "lexical") == [OTHER]
    cid = collection_id(again, name)
    assert services_of(again).lexical.origin(cid) == "snapshot"

    # Deleting the collection drops its BM25 index and snapshot with the FAISS ones.
    snapshot = services_of(again).lexical.snapshot_path(cid)
    assert snapshot.exists()
    assert again.delete(f"/admin/v1/collections/{name}").status_code == 204
    assert not snapshot.exists()
    assert cid not in services_of(again).lexical.loaded()
