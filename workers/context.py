"""What a task runs with (settings, database, embedders, a queue for follow-up tasks), and how
it gets it.

Whoever runs a task hands it a context: the embedded queue (workers/embedded.py) hands each task
it runs the API process's own, so the in-process worker shares the API's database and
already-loaded embedder. A Celery worker process is handed none and builds its own, once: each
prefork child right after the fork (worker_process_init), never at import time. The worker's
start-up hooks live here, and the task modules import this one, so a worker that imports its
tasks (Celery's `include`) connects them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from celery.signals import worker_process_init, worker_ready

from core import repository
from core.db import Database
from core.settings import Settings, get_settings
from retrieval.embedders import EmbedderPool
from workers.queue import CeleryQueue, TaskQueue, resume_migrations


@dataclass(frozen=True)
class WorkerContext:
    settings: Settings
    db: Database
    embedders: EmbedderPool
    # Where tasks enqueue follow-up tasks: the broker in a worker, the API's threads embedded.
    queue: TaskQueue


# The context handed to the running task: set around each run by handing(), per thread.
_handed: ContextVar[WorkerContext | None] = ContextVar("worker_context", default=None)

# A worker process's own context, built on first use after the fork.
_own: WorkerContext | None = None
_own_lock = threading.Lock()


@contextmanager
def handing(context: WorkerContext) -> Iterator[None]:
    """Tasks run inside the block (and their retries) get `context` from current_context()."""
    token = _handed.set(context)
    try:
        yield
    finally:
        _handed.reset(token)


def current_context() -> WorkerContext:
    """The context handed to the running task, else this worker process's own (built once)."""
    handed = _handed.get()
    return handed if handed is not None else _process_context()


def _process_context() -> WorkerContext:
    """A Celery worker process's own context: its follow-up tasks go through the broker."""
    global _own
    if _own is None:
        with _own_lock:
            if _own is None:
                settings = get_settings()
                _own = WorkerContext(
                    settings,
                    Database(settings),
                    EmbedderPool(settings.embedder),
                    CeleryQueue(settings),
                )
    return _own


@worker_process_init.connect
def _warm_up(**_: Any) -> None:
    """Load the model in each worker child after the fork, before the first task arrives."""
    context = _process_context()
    context.embedders.get(context.embedders.default_id())


@worker_ready.connect
def _resume_migrations(**_: Any) -> None:
    """Resume embedder migrations whose tasks a killed worker may have taken with it.

    Redis gives a dead worker's unacknowledged tasks back only after the visibility timeout;
    planning again re-enqueues just the batches whose chunks still lack a vector.
    """
    settings = get_settings()
    db = Database(settings)
    queue = CeleryQueue(settings)
    try:
        with db.session() as session:
            jobs = [job_id for job_id, _, _ in repository.active_migrations(session)]
        resume_migrations(queue, jobs)
    finally:
        queue.close()
        db.dispose()
