"""Embedder-migration tasks: thin wrappers over retrieval.embedder_migration.

plan -> one batch task per id range (any number of workers share them) -> finalize once the
planned ranges are done. Every step is safe to run again; resuming a job is planning it again.
"""

from __future__ import annotations

from typing import Any

from celery import Task

from core.errors import RagError
from retrieval import embedder_migration
from workers.celery_app import celery_app
from workers.context import current_context
from workers.retry import RETRY
from workers.task_names import MIGRATION_BATCH, MIGRATION_FINALIZE, MIGRATION_PLAN


class MigrationTask(Task):  # type: ignore[misc]
    """A migration step that gave up (retries exhausted, or a bug) fails its job, so the job
    never stays "running" with nothing left to move it on; the old index keeps serving."""

    def on_failure(  # noqa: PLR0913
        self,
        exc: BaseException,
        task_id: str,  # noqa: ARG002  (Celery's signature)
        args: Any,
        kwargs: Any,
        einfo: Any,  # noqa: ARG002
    ) -> None:
        job_id = args[0] if args else kwargs.get("job_id")
        if job_id:
            message = f"{self.name} failed: {type(exc).__name__}: {exc}"
            embedder_migration.fail(current_context().db, job_id, message)


def _enqueue(task_name: str, calls: list[list[Any]]) -> None:
    """Enqueue follow-up tasks; a broker that cannot take them is a transient error (retried)."""
    try:
        current_context().queue.enqueue_many(task_name, calls)
    except RagError as exc:
        if exc.code != "broker_unavailable":
            raise
        raise ConnectionError(exc.message) from exc


# The tasks' retry policy, on MigrationTask: a step that gives up fails its job.
MIGRATION_RETRY: dict[str, Any] = {**RETRY, "base": MigrationTask}


@celery_app.task(name=MIGRATION_PLAN, **MIGRATION_RETRY)
def plan_migration(job_id: str) -> dict[str, Any]:
    """Cut the chunks still lacking a target vector into batches and enqueue them."""
    context = current_context()
    planned = embedder_migration.plan(context.db, job_id, context.settings.embedder.migration_batch)
    if planned is None:
        return {"job_id": job_id, "batches": 0}
    if planned.ranges:
        _enqueue(MIGRATION_BATCH, [[job_id, lo, hi] for lo, hi in planned.ranges])
    else:
        _enqueue(MIGRATION_FINALIZE, [[job_id]])
    return {"job_id": job_id, "batches": len(planned.ranges)}


@celery_app.task(name=MIGRATION_BATCH, **MIGRATION_RETRY)
def migrate_batch(job_id: str, lo: int, hi: int) -> dict[str, Any]:
    """Embed one id range with the target embedder; the last batch enqueues finalize."""
    context = current_context()
    if embedder_migration.run_batch(context.db, context.embedders, job_id, lo, hi):
        _enqueue(MIGRATION_FINALIZE, [[job_id]])
    return {"job_id": job_id, "range": [lo, hi]}


@celery_app.task(name=MIGRATION_FINALIZE, **MIGRATION_RETRY)
def finalize_migration(job_id: str) -> dict[str, Any]:
    """Catch up with late uploads, verify the new index and switch the collection to it."""
    context = current_context()
    status = embedder_migration.finalize(
        context.db,
        context.embedders,
        context.settings.index,
        job_id,
        context.settings.embedder.migration_batch,
    )
    return {"job_id": job_id, "status": status}
