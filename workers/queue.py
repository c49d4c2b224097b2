"""Enqueue ingestion work: through the broker in deployment, or onto an in-process thread.

The embedded queue runs the very same Celery task (`Task.apply`), one document at a time, on a
single background thread of the API process. Nothing is held only in memory: the database
records every queued document, and `requeue_unfinished` re-enqueues them after a restart.
"""

from __future__ import annotations

import contextvars
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from core import repository
from core.db import Database
from core.settings import Settings
from workers.task_names import INGEST_DOCUMENT

log = logging.getLogger(__name__)


class TaskQueue(Protocol):
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

    def enqueue_documents(self, document_ids: list[str]) -> None:
        for document_id in document_ids:
            self._app.send_task(INGEST_DOCUMENT, args=[document_id], expires=self._expires)

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
    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-ingest")
        self._pending: set[Future[None]] = set()

    def enqueue_documents(self, document_ids: list[str]) -> None:
        for document_id in document_ids:
            # A copy of the caller's context carries its request id into the worker thread.
            context = contextvars.copy_context()
            future = self._executor.submit(context.run, self._run, document_id)
            self._pending.add(future)
            future.add_done_callback(self._pending.discard)

    @staticmethod
    def _run(document_id: str) -> None:
        from workers.tasks.ingest import ingest_document

        result = ingest_document.apply(args=[document_id])
        if result.failed():
            log.error("ingesting document %s failed: %s", document_id, result.result)

    def check(self) -> str:
        return "embedded (in-process worker)"

    def close(self) -> None:
        # Queued documents stay queued in the database and are picked up at the next start.
        self._executor.shutdown(wait=True, cancel_futures=True)

    def idle(self) -> bool:
        return not self._pending

    def depth(self) -> int:
        """Documents queued on the worker thread, the running one included."""
        return len(self._pending)


def make_queue(settings: Settings) -> TaskQueue:
    return EmbeddedQueue() if settings.embedded_worker else CeleryQueue(settings)


def requeue_unfinished(db: Database, queue: TaskQueue) -> int:
    """Re-enqueue documents the database still lists as queued or processing."""
    with db.session() as session:
        ids = repository.unfinished_documents(session)
    if ids:
        queue.enqueue_documents(ids)
        log.info("re-enqueued %d unfinished documents", len(ids))
    return len(ids)
