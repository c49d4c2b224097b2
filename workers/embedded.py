"""The embedded default's in-process worker, and the choice between it and the broker.

The embedded queue runs the very same Celery tasks (`Task.apply`) on background threads of the
API process: one for ingestion, one for embedder migrations, so a long migration does not hold
up new uploads. It hands each task the context it was built with (the API's database and
already-loaded embedder; follow-up tasks come back to this queue), so nothing is installed in a
module global and two API instances in one process each run their own tasks.

Ingestion is fair between collections: the tasks of an upload (`ingest.documents_per_task`
documents each) wait with the other uploads to its collection, first in, first out, and the
thread takes one task of each collection with work waiting in turn (`FairQueue`). A one-file
upload to a collection waits for the task running now and one task of each other collection,
not for all of a 40-file job elsewhere; a client's uploads to one collection finish in order.
A queued job's `ahead` (GET /admin/v1/jobs/{id}) counts the uploads served before it.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from core import repository
from core.db import Database
from core.settings import Settings
from retrieval.embedders import EmbedderPool
from workers.context import WorkerContext, handing
from workers.queue import CeleryQueue, TaskQueue, document_batches
from workers.task_names import INGEST_DOCUMENTS, INGEST_TASKS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Call:
    """A task to run, with the context (request id) of whoever enqueued it."""

    task_name: str
    args: list[Any]
    context: contextvars.Context


class FairQueue:
    """Tasks in groups by key, taken round-robin: one task of each group in turn, first in,
    first out within a group. A new group joins the end of the round, so its first task waits
    for the running one and one task of each other group; tasks put under a key that has a
    group already join that group, at its end. One consumer thread takes tasks (and gives each
    back with `done()`); any thread may `put`."""

    def __init__(self) -> None:
        # Every group with a task waiting, and the running task's group (maybe empty).
        self._groups: dict[str, deque[Call]] = {}
        # The keys of the groups waiting for their turn, in turn order; the running task's group
        # goes back at the end once it is done, so a group added meanwhile goes before it.
        self._round: deque[str] = deque()
        self._current: str | None = None
        self._running = 0
        self._closed = False
        self._changed = threading.Condition()

    def put(self, key: str, calls: list[Call]) -> None:
        """Add tasks to `key`'s group; nothing when `calls` is empty. Raises RuntimeError once
        closed."""
        if not calls:
            return
        with self._changed:
            if self._closed:
                raise RuntimeError("the embedded worker is shut down")
            group = self._groups.get(key)
            if group is None:
                self._groups[key] = deque(calls)
                self._round.append(key)
            else:
                group.extend(calls)
            self._changed.notify_all()

    def take(self) -> Call | None:
        """The next task, waiting for one; None once closed (waiting tasks are dropped: the
        database still records their documents, re-enqueued at the next start)."""
        with self._changed:
            while not self._round and not self._closed:
                self._changed.wait()
            if self._closed:
                return None
            key = self._round.popleft()
            self._current = key
            self._running += 1
            return self._groups[key].popleft()

    def done(self) -> None:
        with self._changed:
            self._running -= 1
            key, self._current = self._current, None
            if key is not None and not self._closed:
                if self._groups[key]:
                    self._round.append(key)
                else:
                    del self._groups[key]
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._groups.clear()
            self._round.clear()
            self._current = None
            self._changed.notify_all()

    def depth(self) -> int:
        """Tasks waiting or running."""
        with self._changed:
            return self._running + sum(len(g) for g in self._groups.values())


class EmbeddedQueue:
    def __init__(self, settings: Settings, db: Database, embedders: EmbedderPool) -> None:
        self._per_task = settings.ingest.documents_per_task
        self._context = WorkerContext(settings, db, embedders, self)
        self._ingest = FairQueue()
        # Started with the first ingestion task, as an executor starts its threads.
        self._ingest_thread: threading.Thread | None = None
        self._starting = threading.Lock()
        self._migrations = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-migrate")
        self._pending: set[Future[None]] = set()

    def enqueue(self, task_name: str, args: list[Any]) -> None:
        self.enqueue_many(task_name, [args])

    def enqueue_many(self, task_name: str, calls: list[list[Any]]) -> None:
        """Ingestion tasks (of one upload: documents of one collection) go to the ingestion
        thread, where collections take turns; migration tasks in order to the migration
        thread."""
        # A copy of the caller's context carries its request id into the worker thread.
        context = contextvars.copy_context()
        if task_name in INGEST_TASKS and calls:
            key = self._collection_of(calls[0][0])
            self._ingest.put(key, [Call(task_name, args, context) for args in calls])
            self._start_ingest_thread()
            return
        for args in calls:
            future = self._migrations.submit(context.run, self._run, task_name, args)
            self._pending.add(future)
            future.add_done_callback(self._pending.discard)

    def enqueue_documents(self, document_ids: list[str]) -> None:
        """One upload's documents, in tasks of `documents_per_task` documents, at the end of
        its collection's queue."""
        self.enqueue_many(INGEST_DOCUMENTS, document_batches(document_ids, self._per_task))

    def _collection_of(self, documents: str | list[str]) -> str:
        """The collection of a task's documents ("" when they are gone: any key will do)."""
        document_id = documents[0] if isinstance(documents, list) else documents
        with self._context.db.session() as session:
            return repository.document_collection(session, document_id) or ""

    def _start_ingest_thread(self) -> None:
        with self._starting:
            if self._ingest_thread is None:
                self._ingest_thread = threading.Thread(
                    target=self._work, args=(self._ingest,), name="rag-ingest", daemon=True
                )
                self._ingest_thread.start()

    def _work(self, queue: FairQueue) -> None:
        while (call := queue.take()) is not None:
            try:
                call.context.run(self._run, call.task_name, call.args)
            except Exception:  # the thread must outlive any task
                log.exception("task %s%s raised", call.task_name, call.args)
            finally:
                queue.done()

    def _run(self, task_name: str, args: list[Any]) -> None:
        # Imported on the first task, not with this module: importing the Celery app builds it
        # from the environment's settings.
        import workers.tasks.ingest
        import workers.tasks.migration  # noqa: F401  (registers the tasks)
        from workers.celery_app import celery_app

        with handing(self._context):
            result = celery_app.tasks[task_name].apply(args=args)
        if result.failed():
            log.error("task %s%s failed: %s", task_name, args, result.result)

    def check(self) -> str:
        return "embedded (in-process worker)"

    def close(self) -> None:
        # Queued work stays recorded in the database and is picked up at the next start.
        self._ingest.close()
        with self._starting:
            thread = self._ingest_thread
        if thread is not None:
            thread.join()
        self._migrations.shutdown(wait=True, cancel_futures=True)

    def idle(self) -> bool:
        return self._ingest.depth() == 0 and not self._pending

    def depth(self) -> int:
        """Tasks queued on the worker threads, the running ones included (an ingestion task
        holds up to ingest.documents_per_task documents)."""
        return self._ingest.depth() + len(self._pending)


def make_queue(settings: Settings, db: Database, embedders: EmbedderPool) -> TaskQueue:
    """The broker's queue in deployment; in the embedded default, worker threads of this
    process that run the tasks with `db` and `embedders`."""
    if settings.embedded_worker:
        return EmbeddedQueue(settings, db, embedders)
    return CeleryQueue(settings)
