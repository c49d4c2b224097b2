"""Embedders and embedder migrations."""

from __future__ import annotations

from fastapi import APIRouter, status

from app.deps import ServicesDep
from app.schemas import EmbedderList, EmbedderOut, EmbeddingsPruned, JobAccepted, MigrationCreate
from app.services import Services
from core import repository
from core.errors import RagError
from retrieval.embedders import get_spec
from workers.task_names import MIGRATION_PLAN

router = APIRouter(tags=["embedders"])


@router.get("/v1/embedders")
def list_embedders(services: ServicesDep) -> EmbedderList:
    """The embedders this deployment can load (offline)."""
    specs = services.embedders.specs().values()
    return EmbedderList(
        embedders=[EmbedderOut(id=s.id, dim=s.dim, backend=s.backend) for s in specs]
    )


@router.post(
    "/admin/v1/collections/{name}/embedder-migrations", status_code=status.HTTP_202_ACCEPTED
)
def start_migration(name: str, body: MigrationCreate, services: ServicesDep) -> JobAccepted:
    """Re-embed the collection with another embedder in the background, then switch to it."""
    get_spec(body.embedder, services.settings.embedder)  # 422 for an unknown embedder
    with services.db.session() as session:
        job = repository.create_migration_job(session, name, body.embedder)
    return _enqueue(services, job.id)


@router.post(
    "/admin/v1/collections/{name}/embedder-migrations/rollback",
    status_code=status.HTTP_202_ACCEPTED,
)
def rollback_migration(name: str, services: ServicesDep) -> JobAccepted:
    """Switch back to the previous embedder; only chunks added since are embedded again."""
    with services.db.session() as session:
        collection = repository.get_collection(session, name)
        previous = collection.previous_embedder
        if previous is None:
            raise RagError(
                "no_previous_embedder",
                f"collection {name!r} has no previous embedder to go back to",
            )
        job = repository.create_migration_job(session, name, previous, rollback=True)
    return _enqueue(services, job.id)


def _enqueue(services: Services, job_id: str) -> JobAccepted:
    """Start the job's first task; if the broker cannot take it, cancel the job (so a retry is
    not refused as "already running") and answer 503."""
    try:
        services.queue.enqueue(MIGRATION_PLAN, [job_id])
    except RagError:
        with services.db.session() as session:
            repository.cancel_job(session, job_id)
        raise
    return JobAccepted(job_id=job_id)


@router.delete("/admin/v1/collections/{name}/embeddings/{embedder}")
def prune_embeddings(name: str, embedder: str, services: ServicesDep) -> EmbeddingsPruned:
    """Delete the vectors of an embedder the collection no longer serves (ends rollback)."""
    with services.db.session() as session:
        collection_id, deleted = repository.prune_embeddings(session, name, embedder)
    services.indexes.drop(collection_id, embedder)
    return EmbeddingsPruned(collection=name, embedder=embedder, deleted=deleted)
