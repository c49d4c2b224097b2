"""Jobs (admin)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from app.deps import ServicesDep
from app.openapi import error_responses
from app.schemas import COLLECTION_NAME, JobFile, JobList, JobOut, Progress
from app.services import Services
from core import repository
from core.errors import RagError
from core.models import Collection, Job

router = APIRouter(tags=["jobs"])

JobStatusName = Literal["queued", "running", "succeeded", "failed", "cancelled"]


@router.get("/admin/v1/jobs", responses=error_responses(404))
def list_jobs(
    services: ServicesDep,
    collection: Annotated[
        str | None,
        # The collection-name rule: anything else names no collection (and a NUL byte must
        # not reach the database as a query value).
        Query(
            pattern=COLLECTION_NAME, description="Only this collection's jobs.", examples=["docs"]
        ),
    ] = None,
    status: Annotated[
        JobStatusName | None, Query(description="Only jobs in this status.", examples=["failed"])
    ] = None,
    kind: Annotated[
        Literal["ingest", "embedder_migration"] | None,
        Query(description="Only jobs of this kind.", examples=["ingest"]),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Jobs per page.", examples=[50])] = 50,
    cursor: Annotated[
        str | None,
        Query(max_length=200, description="`next_cursor` of the previous page.", examples=[""]),
    ] = None,
) -> JobList:
    """Jobs newest first, filtered by collection, status and kind; pages with `cursor`."""
    with services.db.session() as session:
        collection_id = None
        if collection is not None:
            collection_id = repository.get_collection(session, collection).id
        jobs, next_cursor = repository.list_jobs(
            session,
            collection_id=collection_id,
            status=status,
            kind=kind,
            limit=limit,
            cursor=cursor or None,
        )
        return JobList(
            jobs=[job_out(services, session, job) for job in jobs], next_cursor=next_cursor
        )


@router.get("/admin/v1/jobs/{job_id}")
def get_job(job_id: str, services: ServicesDep) -> JobOut:
    """A job's status, progress, per-file status and errors; a queued job, the jobs ahead."""
    with services.db.session() as session:
        return job_out(services, session, repository.get_job(session, job_id))


@router.post("/admin/v1/jobs/{job_id}/cancel", responses=error_responses(409))
def cancel_job(job_id: str, services: ServicesDep) -> JobOut:
    """Cancel a running embedder migration; the collection keeps its current index."""
    with services.db.session() as session:
        job = repository.get_job(session, job_id)
        if job.kind != repository.MIGRATION:
            raise RagError("conflict", "only embedder migrations can be cancelled")
        return job_out(services, session, repository.cancel_job(session, job_id))


def job_out(services: Services, session: Session, job: Job) -> JobOut:
    collection = session.get(Collection, job.collection_id)
    files = repository.job_files(session, job)
    return JobOut(
        job_id=job.id,
        kind=job.kind,
        status=job.status,
        collection=collection.name if collection else None,
        progress=Progress(done=job.done, total=job.total),
        # The embedded worker serves collections in turn; a broker's queue is first in, first out.
        ahead=repository.jobs_ahead(
            session, job, collections_take_turns=services.settings.embedded_worker
        ),
        errors=repository.job_errors(session, job),
        files=None if files is None else [JobFile(**f) for f in files],
        created_at=job.created_at,
        finished_at=job.finished_at,
    )
