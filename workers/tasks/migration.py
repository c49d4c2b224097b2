"""Embedder-migration tasks: thin wrappers over retrieval.embedder_migration.

plan -> one batch task per id range (any number of workers share them) -> finalize once the
planned ranges are done. Every step is safe to run again; resuming a job is planning it again.
"""

from __future__ import annotations

from typing import Any

from retrieval import embedder_migration
from workers.celery_app import celery_app
from workers.context import get_context
from workers.task_names import MIGRATION_BATCH, MIGRATION_FINALIZE, MIGRATION_PLAN
from workers.tasks.ingest import TRANSIENT_ERRORS

RETRY: dict[str, Any] = {
    "acks_late": True,
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 2,
    "retry_backoff_max": 120,
    "retry_jitter": True,
    "max_retries": 8,
}


@celery_app.task(name=MIGRATION_PLAN, **RETRY)
def plan_migration(job_id: str) -> dict[str, Any]:
    """Cut the chunks still lacking a target vector into batches and enqueue them."""
    context = get_context()
    planned = embedder_migration.plan(context.db, job_id, context.settings.embedder.migration_batch)
    if planned is None:
        return {"job_id": job_id, "batches": 0}
    if planned.ranges:
        context.queue.enqueue_many(MIGRATION_BATCH, [[job_id, lo, hi] for lo, hi in planned.ranges])
    else:
        context.queue.enqueue(MIGRATION_FINALIZE, [job_id])
    return {"job_id": job_id, "batches": len(planned.ranges)}


@celery_app.task(name=MIGRATION_BATCH, **RETRY)
def migrate_batch(job_id: str, lo: int, hi: int) -> dict[str, Any]:
    """Embed one id range with the target embedder; the last batch enqueues finalize."""
    context = get_context()
    if embedder_migration.run_batch(context.db, context.embedders, job_id, lo, hi):
        context.queue.enqueue(MIGRATION_FINALIZE, [job_id])
    return {"job_id": job_id, "range": [lo, hi]}


@celery_app.task(name=MIGRATION_FINALIZE, **RETRY)
def finalize_migration(job_id: str) -> dict[str, Any]:
    """Catch up with late uploads, verify the new index and switch the collection to it."""
    context = get_context()
    status = embedder_migration.finalize(
        context.db,
        context.embedders,
        context.settings.index,
        job_id,
        context.settings.embedder.migration_batch,
    )
    return {"job_id": job_id, "status": status}
