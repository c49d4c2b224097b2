"""Jobs (admin)."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.orm import Session

from app.deps import ServicesDep
from app.schemas import JobOut, Progress
from core import repository
from core.errors import RagError
from core.models import Collection, Job

router = APIRouter(tags=["jobs"])


@router.get("/admin/v1/jobs/{job_id}")
def get_job(job_id: str, services: ServicesDep) -> JobOut:
    """A job's status, progress and per-file errors."""
    with services.db.session() as session:
        return job_out(session, repository.get_job(session, job_id))


@router.post("/admin/v1/jobs/{job_id}/cancel")
def cancel_job(job_id: str, services: ServicesDep) -> JobOut:
    """Cancel a running embedder migration; the collection keeps its current index."""
    with services.db.session() as session:
        job = repository.get_job(session, job_id)
        if job.kind != repository.MIGRATION:
            raise RagError("conflict", "only embedder migrations can be cancelled")
        return job_out(session, repository.cancel_job(session, job_id))


def job_out(session: Session, job: Job) -> JobOut:
    collection = session.get(Collection, job.collection_id)
    return JobOut(
        job_id=job.id,
        kind=job.kind,
        status=job.status,
        collection=collection.name if collection else None,
        progress=Progress(done=job.done, total=job.total),
        errors=repository.job_errors(session, job),
        created_at=job.created_at,
        finished_at=job.finished_at,
    )
