"""Enqueue background work: through the broker in deployment, or onto in-process threads.

The embedded queue runs the very same Celery tasks (`Task.apply`) on background threads of the
API process: one for ingestion, one for embedder migrations, so a long migration does not hold
up new uploads. Nothing is held only in memory: the database records every queued document
and unfinished migration, and `requeue_unfinished` re-enqueues them after a restart.
"""

from __future__ import annotations

import contextvars
import logging
from concurrent.futures import Future, ThreadPoolExecutor
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


class EmbeddedQueue:
    def __init__(self, documents_per_task: int = 1) -> None:
        self._per_task = documents_per_task
        self._ingest = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-ingest")
        self._migrations = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-migrate")
        self._pending: set[Future[None]] = set()

    def enqueue(self, task_name: str, args: list[Any]) -> None:
        executor = self._ingest if task_name in INGEST_TASKS else self._migrations
        # A copy of the caller's context carries its request id into the worker thread.
        context = contextvars.copy_context()
        future = executor.submit(context.run, self._run, task_name, args)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    def enqueue_many(self, task_name: str, calls: list[list[Any]]) -> None:
        for args in calls:
            self.enqueue(task_name, args)

    def enqueue_documents(self, document_ids: list[str]) -> None:
        self.enqueue_many(INGEST_DOCUMENTS, document_batches(document_ids, self._per_task))

    @staticmethod
    def _run(task_name: str, args: list[Any]) -> None:
        import workers.tasks.ingest
        import workers.tasks.migration  # noqa: F401  (registers the tasks)
        from workers.celery_app import celery_app

        result = celery_app.tasks[task_name].apply(args=args)
        if result.failed():
            log.error("task %s%s failed: %s", task_name, args, result.result)

    def check(self) -> str:
        return "embedded (in-process worker)"

    def close(self) -> None:
        # Queued work stays recorded in the database and is picked up at the next start.
        self._ingest.shutdown(wait=True, cancel_futures=True)
        self._migrations.shutdown(wait=True, cancel_futures=True)

    def idle(self) -> bool:
        return not self._pending

    def depth(self) -> int:
        """Tasks queued on the worker thread, the running one included (an ingestion task
        holds up to ingest.documents_per_task documents)."""
        return len(self._pending)


def make_queue(settings: Settings) -> TaskQueue:
    if settings.embedded_worker:
        return EmbeddedQueue(settings.ingest.documents_per_task)
    return CeleryQueue(settings)


def document_batches(document_ids: list[str], per_task: int) -> list[list[Any]]:
    """The ingestion tasks' arguments: the documents in order, `per_task` to a task."""
    size = max(1, per_task)
    return [[document_ids[i : i + size]] for i in range(0, len(document_ids), size)]


def requeue_unfinished(db: Database, queue: TaskQueue) -> int:
    """Re-enqueue documents still queued or processing, and resume unfinished migrations."""
    with db.session() as session:
        ids = repository.unfinished_documents(session)
        migrations = repository.active_migrations(session)
    if ids:
        queue.enqueue_documents(ids)
        log.info("re-enqueued %d unfinished documents", len(ids))
    resume_migrations(queue, [job_id for job_id, _, _ in migrations])
    return len(ids)


def resume_migrations(queue: TaskQueue, job_ids: list[str]) -> None:
    """Plan unfinished migrations again: only chunks still lacking a vector are re-planned."""
    for job_id in job_ids:
        queue.enqueue(MIGRATION_PLAN, [job_id])
        log.info("resumed embedder migration %s", job_id)
