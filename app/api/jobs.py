"""Jobs (admin)."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import ServicesDep
from app.schemas import JobOut, Progress
from core import repository
from core.models import Collection

router = APIRouter(tags=["jobs"])


@router.get("/admin/v1/jobs/{job_id}")
def get_job(job_id: str, services: ServicesDep) -> JobOut:
    """A job's status, progress and per-file errors."""
    with services.db.session() as session:
        job = repository.get_job(session, job_id)
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
