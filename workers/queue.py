"""Enqueue background work: the queue protocol, and sending tasks through the broker.

In deployment tasks go through the broker (CeleryQueue); the embedded default runs them on
threads of the API process instead (workers/embedded.py, which also chooses between the two).
Nothing is held only in memory: the database records every queued document and unfinished
migration, and `requeue_unfinished` re-enqueues them after a restart.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from core import repository
from core.db import Database
from core.errors import RagError
from core.settings import Settings
from workers.task_names import INGEST_DOCUMENTS, INGEST_TASKS, MIGRATION_PLAN

log = logging.getLogger(__name__)


class TaskQueue(Protocol):
    def enqueue(self, task_name: str, args: list[Any]) -> None: ...
    def enqueue_many(self, task_name: str, calls: list[list[Any]]) -> None: ...
    def enqueue_documents(self, document_ids: list[str]) -> None: ...
    def check(self) -> str:
        """ "ok", "embedded …" or "down" (for readiness)."""
        ...

    def close(self) -> None: ...

    def depth(self) -> int | None:
        """Tasks waiting to run (for /metrics); None when it cannot be read."""
        ...


class CeleryQueue:
    """Sends tasks by name through the configured broker; imports no task code."""

    def __init__(self, settings: Settings) -> None:
        from workers.celery_app import make_celery

        self._app = make_celery(settings)
        self._expires = settings.broker.task_expires_s
        self._per_task = settings.ingest.documents_per_task

    def enqueue(self, task_name: str, args: list[Any]) -> None:
        self.enqueue_many(task_name, [args])

    def enqueue_many(self, task_name: str, calls: list[list[Any]]) -> None:
        """Raises RagError("broker_unavailable") when the broker cannot take the tasks."""
        # Migration batches may wait behind many others; only ingestion tasks expire.
        expires = self._expires if task_name in INGEST_TASKS else None
        try:
            with self._app.producer_or_acquire() as producer:
                for args in calls:
                    self._app.send_task(task_name, args=args, expires=expires, producer=producer)
        except (KombuError, RedisError, OSError) as exc:
            log.warning("cannot send %s tasks: %s", task_name, exc.__class__.__name__)
            raise RagError(
                "broker_unavailable", "the task queue is unavailable; retry the request later"
            ) from exc

    def enqueue_documents(self, document_ids: list[str]) -> None:
        """Raises RagError("broker_unavailable") when the broker cannot take the tasks."""
        self.enqueue_many(INGEST_DOCUMENTS, document_batches(document_ids, self._per_task))

    def check(self) -> str:
        try:
            with self._app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
        except Exception:
            return "down"
        return "ok"

    def close(self) -> None:
        self._app.close()

    def depth(self) -> int | None:
        """LLEN of the queue's list in the broker Redis (Celery's Redis transport keeps a
        queue as a list named after it)."""
        try:
            with self._app.connection_for_read() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
                client = conn.default_channel.client
                return int(client.llen(self._app.conf.task_default_queue))
        except Exception:
            return None


def document_batches(document_ids: list[str], per_task: int) -> list[list[Any]]:
    """The ingestion tasks' arguments: the documents in order, `per_task` to a task."""
    size = max(1, per_task)
    return [[document_ids[i : i + size]] for i in range(0, len(document_ids), size)]


def requeue_unfinished(db: Database, queue: TaskQueue) -> int:
    """Re-enqueue documents still queued or processing, upload by upload (so the embedded
    worker takes the uploads in turn, as it did before), and resume unfinished migrations."""
    with db.session() as session:
        uploads = repository.unfinished_documents(session)
        migrations = repository.active_migrations(session)
    for ids in uploads:
        queue.enqueue_documents(ids)
    count = sum(len(ids) for ids in uploads)
    if count:
        log.info("re-enqueued %d unfinished documents of %d uploads", count, len(uploads))
    resume_migrations(queue, [job_id for job_id, _, _ in migrations])
    return count


def resume_migrations(queue: TaskQueue, job_ids: list[str]) -> None:
    """Plan unfinished migrations again: only chunks still lacking a vector are re-planned."""
    for job_id in job_ids:
        queue.enqueue(MIGRATION_PLAN, [job_id])
        log.info("resumed embedder migration %s", job_id)
