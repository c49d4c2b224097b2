"""Collections."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.deps import ServicesDep
from app.openapi import error_responses
from app.schemas import (
    CollectionCreate,
    CollectionList,
    CollectionOut,
    CollectionUpdate,
    IndexRebuilt,
)
from core import repository
from core.models import Collection, DocumentStatus
from retrieval.embedders import get_spec

router = APIRouter(tags=["collections"])


def collection_out(services: ServicesDep, collection: Collection) -> CollectionOut:
    with services.db.session() as session:
        documents, chunks = repository.collection_counts(session, collection.id)
        by_status = repository.document_status_counts(session, collection.id)
    return CollectionOut(
        name=collection.name,
        embedder=collection.embedder,
        documents=documents,
        documents_queued=by_status.get(DocumentStatus.QUEUED, 0),
        documents_processing=by_status.get(DocumentStatus.PROCESSING, 0),
        documents_failed=by_status.get(DocumentStatus.FAILED, 0),
        chunks=chunks,
        index_version=collection.index_version,
        created_at=collection.created_at,
        previous_embedder=collection.previous_embedder,
        retrieval=collection.retrieval or services.settings.retrieval.default,
        retrieval_setting=collection.retrieval,
    )


@router.post(
    "/admin/v1/collections",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409),
)
def create_collection(body: CollectionCreate, services: ServicesDep) -> CollectionOut:
    """Create a collection, embedded with the default embedder unless one is named."""
    embedder = body.embedder or services.embedders.default_id()
    get_spec(embedder, services.settings.embedder)  # 422 for an unknown embedder
    with services.db.session() as session:
        collection = repository.create_collection(session, body.name, embedder, body.retrieval)
    return collection_out(services, collection)


@router.patch("/admin/v1/collections/{name}")
def update_collection(name: str, body: CollectionUpdate, services: ServicesDep) -> CollectionOut:
    """Change a collection's settings (its retrieval mode)."""
    with services.db.session() as session:
        collection = repository.set_retrieval(session, name, body.retrieval)
    return collection_out(services, collection)


@router.get("/v1/collections")
def list_collections(services: ServicesDep) -> CollectionList:
    """All collections."""
    with services.db.session() as session:
        collections = list(repository.list_collections(session))
    return CollectionList(collections=[collection_out(services, c) for c in collections])


@router.get("/v1/collections/{name}")
def get_collection(name: str, services: ServicesDep) -> CollectionOut:
    """One collection with its counts and index version."""
    with services.db.session() as session:
        collection = repository.get_collection(session, name)
    return collection_out(services, collection)


@router.delete(
    "/admin/v1/collections/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(409),
)
def delete_collection(name: str, services: ServicesDep) -> Response:
    """Delete a collection with its documents, vectors, index snapshots and cached answers."""
    with services.db.session() as session:
        collection_id = repository.delete_collection(session, name)
    # The rows are gone; now what was derived from them (FAISS, snapshots, BM25 via the hook).
    # Cached answers are keyed by the collection's id, so none can be served again, not even
    # to a new collection of the same name.
    services.indexes.collection_deleted(collection_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/admin/v1/collections/{name}/index/rebuild")
def rebuild_index(name: str, services: ServicesDep) -> IndexRebuilt:
    """Rebuild this process's indexes of a collection (FAISS and BM25) from the database."""
    with services.db.session() as session:
        collection = repository.get_collection(session, name)
    index = services.indexes.rebuild(collection.id, collection.embedder)
    lexical = services.lexical.rebuild(collection.id)
    return IndexRebuilt(
        collection=name,
        embedder=collection.embedder,
        vectors=0 if index is None else len(index),
        index_version=collection.index_version,
        lexical_chunks=len(lexical),
    )
