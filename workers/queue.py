"""Enqueue ingestion work: through the broker in deployment, or onto an in-process thread.

The embedded queue runs the very same Celery task (`Task.apply`), one document at a time, on a
single background thread of the API process. Nothing is held only in memory: the database
records every queued document, and `requeue_unfinished` re-enqueues them after a restart.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from core import repository
from core.db import Database
from core.errors import RagError
from core.settings import Settings
from workers.task_names import INGEST_DOCUMENT

log = logging.getLogger(__name__)


class TaskQueue(Protocol):
    def enqueue_documents(self, document_ids: list[str]) -> None: ...
    def check(self) -> str:
        """ "ok", "embedded …" or "down" (for readiness)."""
        ...

    def close(self) -> None: ...


class CeleryQueue:
    """Sends tasks by name through the configured broker; imports no task code."""

    def __init__(self, settings: Settings) -> None:
        from workers.celery_app import make_celery

        self._app = make_celery(settings)
        self._expires = settings.broker.task_expires_s

    def enqueue_documents(self, document_ids: list[str]) -> None:
        """Raises RagError("broker_unavailable") when the broker cannot take the tasks."""
        try:
            for document_id in document_ids:
                self._app.send_task(INGEST_DOCUMENT, args=[document_id], expires=self._expires)
        except (KombuError, RedisError, OSError) as exc:
            log.warning("cannot send ingestion tasks: %s", exc.__class__.__name__)
            raise RagError(
                "broker_unavailable", "the task queue is unavailable; retry the upload later"
            ) from exc

    def check(self) -> str:
        try:
            with self._app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
        except Exception:
            return "down"
        return "ok"

    def close(self) -> None:
        self._app.close()


class EmbeddedQueue:
    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-ingest")
        self._pending: set[Future[None]] = set()

    def enqueue_documents(self, document_ids: list[str]) -> None:
        for document_id in document_ids:
            future = self._executor.submit(self._run, document_id)
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
